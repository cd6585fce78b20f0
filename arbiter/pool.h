/* The worker pool: carries out the lifecycle table's actions, reaps workers through their
 * pidfds (and any other child through waitid), reads their sd_notify sockets, and keeps
 * the pool at its target size with backoff after failures.
 *
 * Middle layer: it knows the loop, the notify sockets and the lifecycle table below it,
 * and nothing above. What only the arbiter can decide (starting a process with the
 * sockets it holds, giving up, aborting a reload, retiring listeners, a child that is
 * not a worker) goes up through struct pool_hooks; what the arbiter's mode means for
 * the pool comes down as pool->trial and pool->draining. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "boot_gate.h"
#include "lifecycle.h"
#include "heap.h"
#include "heartbeat.h"
#include "sources.h"
#include "upstate.h"
#include "notify.h"
#include "options.h"

/* Boot failures: a worker that dies unasked before it was ready, or within
 * BOOT_WINDOW_MS of becoming ready (of its start, for one that counts as ready once
 * started), failed to boot: a READY=1 followed at once by an exit is a crash loop all
 * the same. BOOT_FAILURE_LIMIT of them in a row, each within BOOT_FAILURE_RESET_MS of
 * the previous, make the arbiter give up with status 3. Between them the respawn
 * waits 100 ms, doubling up to BACKOFF_MAX_MS; a failed start (fork, fds) retries
 * with the same backoff. */
#define BOOT_WINDOW_MS	      1000
#define BOOT_FAILURE_LIMIT    5
#define BOOT_FAILURE_RESET_MS 30000
#define BACKOFF_FIRST_MS      100
#define BACKOFF_MAX_MS	      5000
/* The sweep of all children after a worker's SIGCHLD (pool_child_exited), and how many
 * reaped workers' pids are remembered for their SIGCHLD (one loop batch of events). */
#define POOL_REAP_SWEEP_MS 100
#define POOL_REAPED_RECENT 64

/* How long a worker's socket stays watched after its READY=1, unless its next message
 * comes first: at most one more wake-up, for the message that ends it. */
#define NOTIFY_LINGER_MS 1000
/* Workers started per turn of the loop, at most (pool_reconcile). */
#define SPAWN_BATCH 16
/* ... and for this long at most, so that signals, control and /healthz are answered
 * within tens of ms while thousands start. */
#define SPAWN_BATCH_MS 5

/* The pool's indexes (issue 29): what the pool asks of its workers per event, answered
 * without a pass over all of them, so a TTIN, a start, an exit or a deadline costs the
 * same at 16 workers as at 4,096, and a generation costs a pass, not a pass per worker.
 *
 * - slot ids of the current generation held by an active worker: a bitmap with one
 *   summary bit per 64 ids for "full" and one for "any", so the lowest free id and the
 *   highest held one take two word scans of at most 1/4096 of the ids each;
 * - the count of workers in each state, of the current generation and of older ones;
 * - pid -> worker (open addressing, linear probing), for CHLD and serving.h's verdicts;
 * - deadlines in a binary heap (struct worker's heap_pos), earliest first;
 * - the active workers of older generations by id, the next to retire last.
 *
 * A new generation (or adopted workers after an upgrade) makes them stale: they are
 * rebuilt from p->workers once, at the next use, which costs a pass per generation.
 *
 * Its functions: pool_internal.h; pool_slots.c. */
struct pool_slots {
	bool stale;   /* rebuild before the next use */
	unsigned gen; /* the current generation they were built for */
	uint64_t *taken, *full, *any;
	size_t words;			     /* of taken; full and any have (words + 63) / 64 */
	struct worker **by_id;		     /* words * 64 entries */
	unsigned count[WORKER_STATE_MAX][2]; /* [state][1: current generation] */
	struct worker **pids;		     /* pid_cap entries (a power of two), NULL: empty */
	size_t pid_cap, pid_n;
	struct heap deadlines; /* of workers, by deadline_ms (heap_pos: their place) */
	struct worker **old;   /* active workers of older generations, by id */
	size_t old_n;
	/* Worker records and index words visited: what test_pool_scale.c counts per
	 * event. Never reset; only differences mean anything. */
	uint64_t steps;
};

struct worker {
	struct source src; /* SOURCE_WORKER; fd is the pidfd */
	unsigned id;
	pid_t pid;
	unsigned generation;
	enum worker_state state;
	uint64_t started_ms;
	uint64_t ready_ms;	  /* 0: not ready yet, or adopted ready across a USR2 */
	uint64_t deadline_ms;	  /* 0: none */
	int stop_signal;	  /* the last stop signal sent, for the log */
	bool watchdog;		  /* it sent WATCHDOG=1: --timeout applies to it */
	bool notify;		  /* ready on READY=1 (else once started) */
	uint64_t last_ping_ms;	  /* arrival of its last WATCHDOG=1 */
	struct source notify_src; /* SOURCE_NOTIFY: its own NOTIFY_SOCKET; fd -1 if none */
	bool notify_watched;
	/* Watched a little after READY=1 too: sd_notify_barrier() (systemd-notify --ready)
	 * sends BARRIER=1 with an fd right after it and waits for that fd to be closed. */
	uint64_t notify_linger_ms;
	char notify_env[128]; /* "NOTIFY_SOCKET=" and a sun_path */
	char status[128];     /* its last STATUS= */
	size_t heap_pos;      /* pool_slots.c: 1 + its place in the deadline heap, 0: none */
	size_t old_pos;	      /* pool_slots.c: 1 + its place among the old generations */
	bool watch_dirty;     /* in pool->watch_dirty: pool_watch_notify looks at it */
	int hb_slot;	      /* its heartbeat slot (heartbeat.h), -1: pings by sd_notify */
};

#define worker_of_notify(s) ((struct worker *)((char *)(s)-offsetof(struct worker, notify_src)))

/* What the pool needs of the settings; the arbiter sets it at start and on each
 * reload (pool_configure). */
struct pool_config {
	uint64_t graceful_timeout_ms;
	uint64_t ready_timeout_ms; /* 0: none */
	uint64_t timeout_ms;	   /* --timeout, the watchdog; 0: none */
	bool wait_notify;	   /* ready on READY=1; else once started */
	bool wait_serving;	   /* else once seen serving (serving.h), or ready_timeout_ms */
	enum notify_access notify_access;
	/* Read the notify sockets for the workers' whole lives, each datagram as it comes:
	 * a program we did not write may send a BARRIER=1 (systemd-notify --status) at
	 * any time, and its sender waits on it. The built-in worker sends none after its
	 * READY=1, so its pings are read only at deadlines, without a wake-up each. */
	bool notify_watch_always;
	/* The built-in worker with --timeout: give each a heartbeat slot (heartbeat.h). */
	bool heartbeat;
	uid_t notify_uid; /* owner of the workers' notify sockets ((uid_t)-1: ours) */
	gid_t notify_gid;
};

/* Upward: each called with ctx. */
struct pool_hooks {
	void *ctx;
	/* Start worker id of generation (its NOTIFY_SOCKET in notify_env, its slot in
	 * pool->hb or -1): spawn_worker() with the sockets the arbiter holds. 0 with pid
	 * and pidfd, or -errno. */
	int (*spawn)(void *ctx, unsigned id, unsigned generation, char *notify_env, int hb_slot,
		     pid_t *ret_pid, int *ret_pidfd);
	/* Give up: BOOT_FAILURE_LIMIT boot failures (status 3), or a worker's own verdict
	 * (exit status 3 or 4). */
	void (*fatal)(void *ctx, int status);
	/* A worker of the generation on trial (pool->trial) failed or never got ready, or
	 * its workers could not be started for --ready-timeout. */
	void (*trial_failed)(void *ctx, const char *why);
	/* The old generation is about to lose its last active worker, or has none. */
	void (*old_retiring)(void *ctx);
	/* A child that is no worker exited (not reaped yet): 1 if the hook reaped it, 0 if
	 * it is not the arbiter's own (an orphan, reaped here), -1 if it is but stays. */
	int (*other_child)(void *ctx, pid_t pid);
};

struct pool {
	struct worker **workers;
	size_t n, cap;
	unsigned target;
	unsigned generation;	 /* the current one: new workers get it */
	unsigned max_generation; /* never reused, even after a failed reload */
	unsigned boot_failures;
	uint64_t last_boot_failure_ms;
	unsigned spawn_failures;	 /* failed starts in a row */
	uint64_t spawn_failing_since_ms; /* the first of them */
	int spawn_error;		 /* the last one's errno */
	uint64_t respawn_at_ms;		 /* 0: spawn as soon as needed */
	uint64_t reap_sweep_ms;		 /* look for exited children not yet reaped (0: none) */
	struct boot_gate boot;		 /* at most so many booting on the CPUs at once */
	/* The pids of the workers reaped last, for their SIGCHLD if it comes after. */
	pid_t reaped_recent[POOL_REAPED_RECENT];
	unsigned reaped_next;
	bool garbage; /* some workers are EXITED and wait to be freed */
	/* The arbiter's mode, as far as the pool cares. */
	bool trial;    /* the current generation is a reload's: a failure aborts it */
	bool draining; /* shutting down: nothing is replaced, every exit was asked for */
	struct pool_config cfg;
	struct pool_hooks hooks;
	struct pool_slots slots; /* indexes: no pass over all workers per event */
	/* Workers whose notify socket may need watching or unwatching: those that changed
	 * state or got a message since, and those lingering after READY=1. */
	struct worker **watch_dirty;
	size_t n_dirty, dirty_cap;
	struct loop *loop;
	struct notify *notify;
	struct serving *serving; /* for wait_serving; NULL: none */
	struct heartbeats hb;	 /* the built-in workers' (fd -1: none yet) */
	bool hb_tried;		 /* heartbeats_init ran (said once if it failed) */
	uint64_t hb_sweep_ms;	 /* the next look at all slots (0: none watched) */
	/* Bumped whenever a worker becomes ready or stops being ready (and on adoption):
	 * who keeps a copy of the ready set looks again only when it moved. Starts at 1. */
	uint64_t ready_epoch;
	unsigned long long blocked_mask; /* the arbiter's SigBlk: a worker not yet exec'd */
	/* counters for status */
	struct upstate_pool_counters counters; /* carried across a USR2 as one value */
};

void pool_init(struct pool *p, unsigned target, struct loop *loop, struct notify *notify,
	       const struct pool_hooks *hooks);
void pool_configure(struct pool *p, const struct pool_config *cfg);
void pool_reconcile(struct pool *p);
void pool_worker_event(struct pool *p, struct worker *w, enum worker_event ev);
void pool_reap_worker(struct pool *p, struct worker *w);
/* Reap every exited child: workers through their pidfd, the arbiter's other children
 * through hooks.other_child, and orphans (PID 1, a subreaper) by pid. waitid(P_ALL)
 * walks every child in the kernel: O(N) a call. */
void pool_reap_children(struct pool *p);
/* A SIGCHLD, which names one child (the signalfd's ssi_pid and ssi_code): more that
 * exited meanwhile merged into it. When it names a worker, whose pidfd wakes the loop
 * for it anyway, the sweep of all children waits up to POOL_REAP_SWEEP_MS, so that a
 * generation of N exiting costs a few sweeps rather than N (O(N^2) in the kernel);
 * anything else (an orphan, a --check, a user's kill -CHLD) is swept at once. */
void pool_child_exited(struct pool *p, pid_t pid, int code, uint64_t now);
void pool_run_deadlines(struct pool *p, uint64_t now);
uint64_t pool_next_deadline(struct pool *p);
void pool_stop_all(struct pool *p, enum worker_event ev);
/* What pool_signal_all did: workers sent the signal, and held back: still starting (not
 * exec'd, or for USR1 booting), or the signal would kill them (USR1 unhandled). */
struct pool_signalled {
	unsigned sent, starting, would_kill;
};
/* sig to every active worker, through its pidfd; USR1 only to workers that take it.
 * ret may be NULL. */
void pool_signal_all(struct pool *p, int sig, struct pool_signalled *ret);
/* One worker asked to stop with sig (TERM, INT, QUIT or KILL) by a command: TERM and
 * QUIT as a shutdown sends them, INT likewise as QUIT, KILL at once; the exit is an
 * asked one (not a failure), and pool_reconcile replaces it. */
void pool_stop_worker(struct pool *p, struct worker *w, int sig);
/* Any other signal to one worker through its pidfd: 0 or -errno. */
int pool_send_worker(struct worker *w, int sig);
void pool_gc(struct pool *p);
int pool_adopt(struct pool *p, struct worker *w);

/* pool_state.c: the pool's lines of the upgrade state ("pool ..." and one "worker ..."
 * per live worker), its own to write and to take. */
int pool_state_write(const struct pool *p, FILE *f);
/* Close-on-exec of every live worker's pidfd and notify socket: cleared (on false) for
 * the exec that hands them over, set again if it fails. */
void pool_state_cloexec(const struct pool *p, bool on);
/* One "worker" line (notify_fd -1 and notify_env "-" when it has none): false if it is
 * not one. */
struct pool_worker_line {
	unsigned id, generation;
	int pid, pidfd, state, watchdog, stop_signal, notify, notify_fd;
	unsigned long long started_ms, deadline_ms;
	char notify_env[96];
	int hb_slot; /* -1: none, or a state written before heartbeats */
};
bool pool_worker_line(const char *line, struct pool_worker_line *w);
/* The upstate_part readers (ctx: a struct pool_adopting): the size and generations, and
 * each worker adopted and watched again; and for a rollback, each worker's fds kept
 * across the exec back (ctx unused). */
struct pool_adopting {
	struct pool *pool;
	unsigned adopted;
};
/* How long a watched worker may be silent, since its last WATCHDOG=1 or heartbeat:
 * --timeout and a grace. And: watch w's heartbeat (ready, with a slot) from now. */
uint64_t pool_watchdog_silent_ms(const struct pool *p);
void pool_heartbeat_watch(struct pool *p, struct worker *w, uint64_t now);
void pool_take_pool_line(void *adopting, const char *line, long off);
void pool_take_worker_line(void *adopting, const char *line, long off);
/* "heartbeats FD": the memfd of heartbeat slots, taken before the workers' lines. */
void pool_take_heartbeats_line(void *adopting, const char *line, long off);
void pool_keep_worker_line(void *unused, const char *line, long off);
/* Read the datagrams waiting in one worker's notify socket, or in every worker's. */
void pool_drain_notify(struct pool *p, struct worker *w);
void pool_drain_all_notify(struct pool *p);
/* Watch the notify sockets of booting workers (and of one that just said READY=1), and
 * only those, unless cfg.notify_watch_always: a ping then costs no wake-up (notify.h). */
void pool_watch_notify(struct pool *p);
/* A notify datagram of worker w, parsed (m->status points into the datagram). */
void pool_notify(struct pool *p, struct worker *w, const struct notify_msg *m, uint64_t arrived_ms);
void pool_free(struct pool *p);
/* serving.h's verdict on worker pid: seen serving (how), or not in its time (how NULL). */
void pool_serving(struct pool *p, pid_t pid, const char *how);

bool worker_is_booting(const struct worker *w);
bool worker_is_active(const struct worker *w);
bool worker_is_alive(const struct worker *w);
bool worker_is_ready(const struct worker *w);
/* Workers of the current generation (current) or of older ones for which pred is true,
 * and of all generations: pred must look at the worker's state alone (the worker_is_*
 * above), as the counts are kept per state (pool_slots.c), not counted each time. */
unsigned pool_count_gen(const struct pool *p, bool (*pred)(const struct worker *w), bool current);
unsigned pool_count(const struct pool *p, bool (*pred)(const struct worker *w));
uint64_t backoff_ms(unsigned failures);
