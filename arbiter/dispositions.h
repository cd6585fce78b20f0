/* `sigvisor signals`: what each control signal would do, now, to every process of every
 * worker's tree, read from /proc/PID/status (SigBlk, SigIgn, SigCgt) by the command
 * itself, never by the arbiter: the arbiter only says which workers there are, through
 * the control socket as for `sigvisor status --json`.
 *
 * The founding story: gunicorn with preload_app imports the application in the master,
 * whose import-time signal(SIGUSR2, handler) each worker inherits at fork and then
 * resets in its own signal set-up: the first `kill -USR2 <worker>` kills it, and nothing
 * showed it before it fired. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* What a signal does to a process. DISP_BLOCKED is or'ed with what it does once
 * unblocked: a blocked signal waits, pending, whatever its disposition. */
enum disposition {
	DISP_HANDLER,
	DISP_IGNORED,
	DISP_DEFAULT_KILLS,
	DISP_DEFAULT_IGNORED,
	DISP_DEFAULT_STOPS,
	DISP_BLOCKED = 8,
};

/* One process's masks, as /proc/PID/status shows them: bit sig-1 stands for sig.
 * SigIgn and SigCgt are the process's; SigBlk is the main thread's (a process-directed
 * signal blocked there goes to another thread that does not block it). */
struct sigmasks {
	uint64_t blk, ign, cgt;
};

/* What sig (1 to 64) does to a process with masks m. Pure. */
int disposition_of(const struct sigmasks *m, int sig);
/* "handler", "ignored", "default: kills", "default: ignored", "default: stops", or
 * "blocked (then: ...)" with one of those. */
const char *disposition_name(int d);

/* From the text of /proc/PID/status: the masks, the parent, the state letter and the
 * name (comm, at most len-1 bytes). 0, or -EINVAL when a line is missing. */
int dispositions_parse_status(const char *text, struct sigmasks *m, pid_t *ret_ppid,
			      char *ret_state, char *comm, size_t len);

/* `sigvisor signals [--json] [--control PATH] [--timeout S]` */
int signals_main(int argc, char **argv);
