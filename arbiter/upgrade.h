/* USR2: upgrade the binary in place, keeping the PID (so it works as PID 1).
 *
 *  1. Run the binary at the path we were started from (resolved at startup, so a file
 *     replaced on disk is what runs) with --check and our arguments; it must exit 0
 *     within --ready-timeout. Otherwise the upgrade is refused and nothing changes.
 *  2. Write our state (listening sockets, control and notify sockets, accepted control
 *     connections with what they have read and not yet sent, every live worker's
 *     pidfd, id, generation and state, counters) to a memfd, clear
 *     close-on-exec on the fds it names, and execve that binary in this process.
 *     Signals stay blocked across execve, so any that arrive meanwhile wait in the
 *     kernel for the new image's signalfd. If execve fails, we carry on as before.
 *  3. The new image finds SIGVISOR_UPGRADE_FD, adopts all of that (the workers become
 *     the old generation) and reloads exactly as on HUP: a new generation starts and
 *     the old one is retired worker by worker once the new one is ready. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "loop.h"

struct upgrade {
	struct source check; /* SOURCE_UPGRADE_CHECK: the --check child's pidfd */
	pid_t check_pid;
	uint64_t check_deadline_ms;
	bool exec_wanted;	    /* the check passed: exec once no reload is running */
	uint64_t drain_deadline_ms; /* exec by then even if metrics connections are open */
	bool pending;		    /* USR2 during a reload: start when it is over */
	unsigned long upgrades, refused;
	/* what the new image learns of the workers' notify sockets */
	bool have_notify;
	unsigned notify_cookie, notify_seq;
	/* the --metrics listener handed over, and the address it was opened for (-1: none) */
	int metrics_fd;
	char *metrics_spec;
};

struct arbiter;

/* USR2 */
void upgrade_start(struct arbiter *a);
/* The --check child exited (its pidfd is readable), or SIGCHLD named its pid. */
void upgrade_check_done(struct arbiter *a);
/* The check's deadline passed. */
void upgrade_check_timeout(struct arbiter *a, uint64_t now);
/* After each loop iteration: exec if the check passed and nothing is in the way. */
void upgrade_maybe_exec(struct arbiter *a);

/* In the new image: the memfd named by SIGVISOR_UPGRADE_FD, or -1. Unsets the
 * variable so workers do not inherit it. */
int upgrade_inherited_fd(void);
/* Adopt listeners, control and notify sockets (before setup opens its own). */
int upgrade_adopt_sockets(struct arbiter *a, int fd, char *err, size_t errlen);
/* Adopt the workers and counters, then start the new generation. */
int upgrade_adopt_workers(struct arbiter *a, int fd);

/* The absolute path we were started from, found at startup. */
int upgrade_resolve_self(const char *argv0, char **ret_path);
