/* Socket activation of sigvisor itself: started by systemd (or systemd-socket-activate)
 * with LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES, sigvisor serves on the sockets it was
 * given instead of binding its own.
 *
 * The activated sockets replace the --bind list, at startup and on every HUP (the
 * binds of the command line and the config file are logged as ignored): the .socket
 * unit owns the addresses. They are never frozen when sigvisor stops: systemd keeps
 * its own copy open, and what is queued waits for the next start. A USR2 upgrade
 * hands them over like every listener; SIGVISOR_ACTIVATED in our own environment
 * tells the new image which of the handed-over sockets were activated. */
#pragma once

#include <stddef.h>

#include "listeners.h"
#include "options.h"

struct activation {
	size_t n;
	char *spec[MAX_BINDS]; /* the address as a --bind spec, from getsockname */
	char *name[MAX_BINDS]; /* from LISTEN_FDNAMES; NULL: named after the address */
};

/* Take the sockets passed to us: ret_fds[i] is the fd of act->spec[i], or -1 when it
 * comes through an upgrade instead. Removes LISTEN_* from our environment either way.
 * Returns the number of sockets (0: not activated) or a negative errno with err set. */
int activation_take(struct activation *act, int *ret_fds, char *err, size_t errlen);

/* Replace s->binds by the activated sockets, logging what is ignored (when: "" at
 * startup, "reload: " on HUP). Returns 0 or -ENOMEM. */
int activation_apply_binds(const struct activation *act, struct settings *s, const char *when);

/* Mark the activated listeners of a set (their names, never frozen nor unlinked). */
int activation_mark(const struct activation *act, struct listener *set, size_t n);

void activation_free(struct activation *act);
