/* The warning at the moment it matters: a process of a worker's tree left with the
 * default action, which kills it, for a signal meant to control it (HUP USR1 USR2 WINCH
 * TTIN TTOU) that its leader handles — gunicorn's preload bug, where an application's
 * import-time USR2 handler lives in the master only and `kill -USR2 <worker>` kills the
 * worker — or that the worker's earlier generation handled. Logged once per worker,
 * generation and signal:
 *
 *   worker 0 (pid 812, generation 1): USR2 would kill it (default action); its parent
 *   pid 800 handles USR2: see sigvisor signals
 *
 * and counted, by signal, for /metrics and status (the last look's numbers).
 *
 * The look reads /proc/PID/status of every process of every ready worker's tree
 * (dispositions_walk), which can wait on the worker (a /proc read waits for an exec in
 * progress, for the mmap lock of a process faulting on a hung mapping): never on the
 * arbiter's loop, always in a child process with a deadline of KILLABLE_LOOK_MS,
 * killed at it, as the readiness look is (serving.h). A look starts as soon as the set
 * of ready workers changed (a generation became ready, a worker was respawned), and
 * if a worker has processes of its own, once more KILLABLE_AGAIN_MS later: a pre-fork
 * master may say READY=1 before its own workers have set their signals up. Never on a
 * timer of its own otherwise: an idle arbiter with lone workers stays asleep. The
 * child's exit is seen through SIGCHLD (killable_reap). Middle layer: it knows /proc
 * and the log, and is told the workers. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dispositions.h"

#define KILLABLE_AGAIN_MS 5000
#define KILLABLE_LOOK_MS  1000
/* A look killed at its deadline is tried again after KILLABLE_RETRY_MS, up to
 * KILLABLE_TRIES times for one change of the workers, then not until the next. */
#define KILLABLE_RETRY_MS 2000
#define KILLABLE_TRIES	  3
/* Look children killed and not gone yet (stuck in the kernel): beyond this many no look
 * starts. */
#define KILLABLE_STUCK 4

/* The signals counted, in this order. */
#define KILLABLE_N_SIGNALS 6
extern const int killable_signals[KILLABLE_N_SIGNALS];

struct killable;

/* arbiter: our pid, as the workers see their parent. */
struct killable *killable_new(pid_t arbiter);
/* Look children are killed, not waited for. Accepts NULL. */
void killable_free(struct killable *k);

/* The ready workers now (called after every batch of events: cheap when nothing
 * changed); a change schedules looks. n 0: none (shutting down). */
void killable_workers(struct killable *k, const struct disp_worker *w, size_t n, uint64_t now);

/* Start a look that is due, kill one past its deadline. */
void killable_run(struct killable *k, uint64_t now);
/* When killable_run() is next due (0: never). */
uint64_t killable_next_deadline(const struct killable *k);

/* SIGCHLD for pid, not a worker: 1 if it was a look child (reaped, its findings
 * taken), 0 if not ours. Accepts NULL. */
int killable_reap(struct killable *k, pid_t pid);

/* Processes the last finished look found killable by killable_signals[i]; whether a look
 * has finished at all. */
unsigned killable_count(const struct killable *k, size_t i);
bool killable_looked(const struct killable *k);
