/* The listening sockets one generation of workers is given: the listeners in the order
 * of their --bind options, their fds (a worker's fds 3...) and their names for
 * LISTEN_FDNAMES. The arbiter holds the current set and, while a reload runs, the set
 * the old generation serves, kept for a rollback (reload.c). Every change of a set
 * (build, replace, restore, close) is here, so the arbiter's files never copy one
 * field by field and one membership test serves them all.
 *
 * A zeroed struct is an empty set. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "listeners.h"
#include "options.h"

struct listener_set {
	struct listener l[MAX_BINDS];
	int fds[MAX_BINDS]; /* l[i].fd, as a spawn_request takes them */
	size_t n;
	char *fdnames; /* LISTEN_FDNAMES: every l[i].fdname, ':'-separated; NULL: none yet */
};

/* Is spec (as given to --bind) one of the set's? */
bool listener_set_has(const struct listener_set *set, const char *spec);

/* fds and fdnames again from the listeners: after one is added, or replaced (a thawed
 * unix socket is a new one). 0 or -ENOMEM (the set is unchanged then). */
int listener_set_refresh(struct listener_set *set);

/* The set a reload opens (to: empty, its fds and fdnames left to listener_set_refresh):
 * for each of binds, a copy of from's socket for that spec (a dup: the accept queue
 * stays, and the two sets close independently), or else a new socket, logged. On
 * failure nothing opened stays open (a unix path from uses is kept), err says why and
 * a negative errno is returned. */
int listener_set_build(struct listener_set *to, const struct listener_set *from, char *const *binds,
		       size_t n_binds, unsigned backlog, char *err, size_t errlen);

/* Close every listener of set, removing a unix socket's path unless keep (NULL: none)
 * has the same spec; the set is empty after. */
void listener_set_close(struct listener_set *set, const struct listener_set *keep);

/* A reload commits: the current set cur is kept in saved (empty before) for a rollback,
 * fresh becomes current (and is empty after). */
void listener_set_replace(struct listener_set *cur, struct listener_set *saved,
			  struct listener_set *fresh);

/* A reload is rolled back: cur's listeners close (a unix path saved uses stays) and the
 * saved set is current again (saved is empty after). */
void listener_set_restore(struct listener_set *cur, struct listener_set *saved);
