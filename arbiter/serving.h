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
struct serving;

/* /proc look: every SERVING_SCAN_MS for the first SERVING_FAST_MS of a worker, then
 * every SERVING_SLOW_MS; with the probe every SERVING_SLOW_MS throughout. */
#define SERVING_SCAN_MS 20
#define SERVING_FAST_MS 2000
#define SERVING_SLOW_MS 250

struct serving_hooks {
	void *ctx;
	/* Worker pid seen serving (how: "accept4 on fd 7 in pid 42 (gunicorn)", "epoll fd
	 * 5 watches fd 3"), or not seen within its fallback time (how NULL). It is no
	 * longer watched when this is called. */
	void (*seen)(void *ctx, pid_t pid, const char *how);
};

struct serving *serving_new(const struct serving_hooks *hooks);
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

/* "eBPF" or "/proc", for status: how workers are being (or would be) watched. */
const char *serving_method(const struct serving *s);

/* One look at /proc for pid's tree: 1 and how if serving, 0 if not, -errno if pid is
 * gone. Exposed for the unit test. */
int serving_scan(const struct serving *s, pid_t pid, char *how, size_t howlen);
