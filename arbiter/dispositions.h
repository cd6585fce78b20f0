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
#include <stddef.h>
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

/* A worker, as the arbiter names it. */
struct disp_worker {
	unsigned id, generation;
	pid_t pid;
};

/* A process of a worker's tree, with its masks. */
struct disp_proc {
	pid_t pid, ppid;
	unsigned worker, generation;
	char comm[64];
	struct sigmasks m;
};

struct disp_procs {
	struct disp_proc *r;
	size_t n, cap;
	bool cut; /* SIGNALS_MAX_PROCS reached */
};

/* Append every process of w's tree to rs, w first, then what each forked, breadth
 * first, each from its /proc/PID/status (a zombie, or a process gone meanwhile, left
 * out; w itself only if it is arbiter's child). Reads /proc: never on the arbiter's
 * loop (it may wait on the worker), only in a command or a look child. rs->r is
 * malloc'd. */
void dispositions_walk(struct disp_procs *rs, const struct disp_worker *w, pid_t arbiter);

/* Signals meant to control a process rather than end it (gunicorn's reload, reopen,
 * upgrade, scale): HUP USR1 USR2 WINCH TTIN TTOU. */
bool dispositions_meant_to_control(int sig);

/* Whether sig, meant to control process rs->r[i], would kill it (default action,
 * not blocked) while an ancestor of it in its worker's tree, up to the worker, handles
 * sig: *ret_by is the nearest such ancestor (the leader whose handler it lost). */
bool dispositions_killable(const struct disp_procs *rs, size_t i, int sig, pid_t *ret_by);

/* `sigvisor signals [--json] [--control PATH] [--timeout S]` */
int signals_main(int argc, char **argv);
