/* Readiness by serving (--ready-mode auto with a COMMAND): a worker that never speaks
 * sd_notify is ready once a process of its tree accepts from one of the listening
 * sockets it was handed, or begins to wait on one — gunicorn's sync worker calls
 * accept4 on it, gthread, uvicorn and node add it to an epoll set. Two ways to see it:
 *
 *  - the eBPF probe sv_serving (bpf.h, BPF_PART_SERVING): a sys_enter hook, attached
 *    only while some worker is watched, reports the first accept/accept4,
 *    EPOLL_CTL_ADD, poll/ppoll or select/pselect6 naming one of the sockets (by
 *    inode: gunicorn dup()s fd 3) from the worker or a descendant;
 *  - without it, a bounded look at /proc every SERVING_SCAN_MS: the epoll interest
 *    lists of the tree's epoll fds (fdinfo `tfd: … ino:`), and threads blocked in
 *    accept, poll or select on a listening socket (task/TID/syscall, the fd sets read
 *    with process_vm_readv). With the probe it still runs, rarely, for a call made
 *    before the probe was attached.
 *
 * The look runs in a child process of its own, never on the arbiter's loop: every part
 * of it can wait on the worker. process_vm_readv sleeps in a page fault the worker
 * never lets finish (userfaultfd, a hung FUSE or NFS mapping); the fdinfo of an epoll fd
 * waits for the epoll's mutex, which a worker faulting in epoll_wait holds, and that
 * sleep is not even killable; task/TID/syscall waits for an exec in progress. The child
 * writes one record per worker to a pipe and exits; its pidfd is in the loop. A look
 * not done within SERVING_LOOK_MS is killed; the worker it was on is looked at again,
 * alone (so that it holds up no other), after 1 s, then 2 s, and after its third
 * timeout not again (the probe, READY=1 or its fallback time decide). At most
 * SERVING_LOOKS look children exist at once (killed ones the kernel still holds
 * included), one of them kept for the look at the others: beyond that no look starts
 * until one ends.
 *
 * READY=1 is for the pool to take (whichever comes first: it calls serving_forget()).
 * A worker seen doing neither within its fallback time is reported as not seen (how
 * NULL): the pool counts it ready then, as before this module (a worker that never
 * serves the sockets, or waits on them through io_uring).
 *
 * Middle layer: it knows the probes and /proc, takes pids and listening fds, and calls
 * back. Nothing here knows the pool or the arbiter. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct bpf_probes;
struct loop;
struct serving;
struct source;

/* /proc look: every SERVING_SCAN_MS for the first SERVING_FAST_MS of a worker, then
 * every SERVING_SLOW_MS; with the probe every SERVING_SLOW_MS throughout. */
#define SERVING_SCAN_MS 20
#define SERVING_FAST_MS 2000
#define SERVING_SLOW_MS 250
/* A look at /proc (the child process) not done by then is killed. */
#define SERVING_LOOK_MS 1000
/* Look children alive at once: the running one and killed ones not yet gone. */
#define SERVING_LOOKS 8

struct serving_hooks {
	void *ctx;
	/* Worker pid seen serving (how: "accept4 on fd 7 in pid 42 (gunicorn)", "epoll fd
	 * 5 watches fd 3"), or not seen within its fallback time (how NULL). It is no
	 * longer watched when this is called. */
	void (*seen)(void *ctx, pid_t pid, const char *how);
};

/* The look children's pidfds go into loop (SOURCE_SERVING_LOOK, serving_on_look). */
struct serving *serving_new(const struct serving_hooks *hooks, struct loop *loop);
void serving_free(struct serving *s);

/* The listening sockets handed to workers (all count alike); replaces the last set. */
void serving_set_sockets(struct serving *s, const int *fds, size_t n);

/* The probes, once loaded (NULL: off, loading or going away). Workers being watched
 * move to the probe, or back to /proc. */
void serving_set_probes(struct serving *s, struct bpf_probes *p);

/* Watch worker pid, just started, for at most fallback_ms. 0 or -ENOMEM. The first
 * watch (and the first after the method changed) logs the method. */
int serving_watch(struct serving *s, pid_t pid, uint64_t now_ms, uint64_t fallback_ms);

/* Stop watching pid (READY=1 came first, it exited). Harmless if not watched. This,
 * serving_watching(), serving_run() and serving_next_deadline() accept s NULL. */
void serving_forget(struct serving *s, pid_t pid);

bool serving_watching(const struct serving *s, pid_t pid);

/* Look at /proc for the workers due, and report those past their fallback. */
void serving_run(struct serving *s, uint64_t now_ms);

/* When serving_run() is next due (0: nothing watched). */
uint64_t serving_next_deadline(const struct serving *s);

/* The pidfd of a look child (a SOURCE_SERVING_LOOK) is readable: it exited. */
void serving_on_look(struct serving *s, struct source *src);

/* SIGCHLD for pid, not a worker: if it is a look child, reap it (1), or -1 if it is
 * ours but could not be reaped; 0 if not ours. Accepts s NULL. */
int serving_reap(struct serving *s, pid_t pid);

/* Looks killed at their deadline since the start, for status. */
uint64_t serving_looks_killed(const struct serving *s);

/* "eBPF" or "/proc", for status: how workers are being (or would be) watched. */
const char *serving_method(const struct serving *s);

/* One look at /proc for pid's tree: 1 and how if serving, 0 if not, -errno if pid is
 * gone. Exposed for the unit test. */
int serving_scan(const struct serving *s, pid_t pid, char *how, size_t howlen);
