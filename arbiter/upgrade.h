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
 *     the old one is retired worker by worker once the new one is ready.
 *
 * The --check is also a handshake: run with SIGVISOR_UPGRADE_CHECK (the addresses we
 * hold, which it must not try to bind), a sigvisor prints the upgrade-state format it
 * reads; anything else (a /bin/true) is refused. And the exec can be undone: every
 * image keeps its own executable open (an O_PATH fd of /proc/self/exe) and hands it
 * over as SIGVISOR_ROLLBACK_FD. A new image whose set-up fails (pidfile, binds,
 * control, metrics, probes, even its options) re-executes that fd with the same
 * state and SIGVISOR_UPGRADE_FAILED saying why; the previous image resumes with its
 * workers and sockets as they were, without a reload. */
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
	/* The --check's stdout (the handshake) and its exec errno, read ends; -1: none */
	int check_out, check_errno;
	/* Our own executable, O_PATH and close-on-exec except across our own exec. */
	int self_fd;
	/* The new image: the previous image's executable, to roll back to (-1: none). */
	int rollback_fd;
	/* The previous image, re-executed after a failed upgrade: why it failed. */
	bool rolled_back;
	char rollback_why[512];
	unsigned long rollbacks; /* upgrades undone after the exec */
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

/* At start-up, before the options are read: open our own executable, and take what
 * an upgrade (or its rollback) handed over: the state memfd in a->upgrade_fd (-1:
 * none), the previous image's executable. Unsets the variables so workers do not
 * inherit them. */
void upgrade_inherit(struct arbiter *a);
/* The new image could not start (why): re-execute the previous image with the state
 * handed over. Returns only if there is nothing to roll back to or the exec failed. */
void upgrade_rollback(struct arbiter *a, const char *why);
/* The new image started: it no longer needs the previous image's executable. */
void upgrade_commit(struct arbiter *a);
/* --check run by an upgrade: is spec one of the addresses the running arbiter holds? */
bool upgrade_check_holds(const char *spec);
/* Is this --check run by an upgrade? */
bool upgrade_checking(void);
/* --check run by an upgrade: say which state format we read (the handshake). */
void upgrade_check_handshake(void);
/* Adopt listeners, control and notify sockets (before setup opens its own). */
int upgrade_adopt_sockets(struct arbiter *a, int fd, char *err, size_t errlen);
/* Adopt the workers and counters (the caller then starts the new generation, or
 * after a rollback resumes). */
int upgrade_adopt_workers(struct arbiter *a, int fd);

/* The absolute path we were started from, found at startup. */
int upgrade_resolve_self(const char *argv0, char **ret_path);
