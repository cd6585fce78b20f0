/* What upgrade.c (the old image's side of a USR2, and the rollback) shares with
 * upgrade_adopt.c (the new image's side): the state's first line, and three helpers. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "arbiter.h"

/* "sigvisor-upgrade N" first, N the version the state is written in (upstate.h). */
#define STATE_MAGIC UPSTATE_MAGIC

/* The state read from its start on a FILE of its own (fd stays open), or NULL. */
FILE *upgrade_open_state(int fd);
/* Hand fd over across execve (on false), or take that back (true). 0 or -errno. */
int upgrade_set_cloexec(int fd, bool on);
/* How upgrade a->upgrade.seq ended, for `sigvisor upgrade` (upstate.h). */
void upgrade_outcome(struct arbiter *a, const char *result, const char *reason, uint64_t reload);
