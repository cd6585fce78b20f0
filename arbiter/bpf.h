/* The arbiter's side of the eBPF probes (bpf/): load, attach, pin, read the counters,
 * follow the ring buffer of events; and detach and unpin on exit.
 *
 * The arbiter only sees this interface. With the probes off (--bpf off, or auto
 * without the capabilities), every call is a cheap no-op. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

struct bpf_probes;

struct bpf_options {
	int mode;	     /* enum bpf_mode: 0 auto, 1 on, 2 off */
	const char *pin_dir; /* --bpf-pin */
	bool sigaction;	     /* --bpf-sigaction */
	/* The pool size: the event ring is sized for a burst of one signal to every
	 * worker (a shutdown's TERM), at least 64 KiB. */
	unsigned workers;
	/* Called for each ring-buffer event with one readable line, e.g.
	 * "signal TTIN from pid 4242 (kill) to pid 1 (sigvisor): coalesced". */
	void (*on_event)(void *ctx, const char *line);
	void *ctx;
	/* The probes' lines of an upgrade's state (bpf_probes_handover), or NULL: with the
	 * same probes (bpf_probes_identity) they are kept, else detached and unpinned. */
	const char *handover;
};

/* The parts of the probes a user can miss one by one. SIGNALS (the tree and the
 * signal_generate counts) is the probes: without it they are off as a whole. */
enum bpf_part {
	BPF_PART_SIGNALS,
	BPF_PART_DELIVERIES, /* signal_deliver: handler / SIG_IGN / default action */
	BPF_PART_SIGACTION,  /* sys_enter: rt_sigaction calls in the tree */
	BPF_PART_ADOPT,	     /* a task iterator: the tree forked before the probes loaded */
	BPF_PART_SERVING,    /* sys_enter while workers are watched: readiness by serving */
	BPF_PART_MAX,
};

#define BPF_WHY_LEN 256

/* Per (target process, signal) totals from the signal_generate probe. */
struct bpf_signal_stats {
	uint64_t generated; /* every result */
	uint64_t queued;    /* result 0: made pending (for a blocked signal: one signalfd read) */
	uint64_t ignored;   /* result 1 */
	uint64_t coalesced; /* result 2: already pending, merged by the kernel */
	uint64_t overflow;  /* result 3 */
	uint64_t lose_info; /* result 4 */
	/* Sent by a process (not the tty: si_code <= 0) and made pending or merged: the
	 * signals a signalfd read of sig stands for, merged ones included. */
	uint64_t sent;
};

/* What bpf_probes_open() made of the probes. */
enum bpf_open_result {
	/* Running (*ret set), or loading in the background with --bpf auto
	 * (bpf_probes_loading()). */
	BPF_OPEN_ON,
	/* Off: *ret is NULL and why says plainly why (mode off, or auto and not
	 * permitted: which capability is missing, or what the kernel lacks). */
	BPF_OPEN_OFF,
	/* --bpf on and they could not load: *ret is NULL, why says why (the arbiter
	 * exits 1). */
	BPF_OPEN_FAILED,
};

/* Load and attach (or keep those of the image before a USR2, opt->handover). */
enum bpf_open_result bpf_probes_open(struct bpf_probes **ret, const struct bpf_options *opt,
				     char *why, size_t whylen);

/* fd to register with the loop, or -1: while loading (--bpf auto loads in a child
 * process, the workers do not wait for the verifier) it is readable when the loader
 * says something (bpf_probes_load_done()); after that, when events wait. */
int bpf_probes_fd(const struct bpf_probes *p);

/* Whether the probes are still loading (then they count nothing yet). */
bool bpf_probes_loading(const struct bpf_probes *p);

/* --bpf auto: start the loader, a child process (once; nothing for other p). The
 * arbiter calls it when its first workers are ready, or a little after start at the
 * latest: the verifier's tens of ms of CPU then do not delay the workers on a small
 * machine. The arbiter stays one thread, and a close kills a loader still running
 * rather than waiting for the verifier (what it pinned is removed). */
void bpf_probes_start_loading(struct bpf_probes *p);

/* Whether the loader has answered (or died, or could not be started, or p is not
 * loading): reads what it sent so far, never waiting, and logs its lines. Then
 * bpf_probes_finish() is due. */
bool bpf_probes_load_done(struct bpf_probes *p);

/* In the loop, once bpf_probes_load_done(): adopt what the loader loaded the way a
 * USR2's probes are adopted (register the arbiter, attach, adopt the processes it
 * forked meanwhile). 0, or <0 with why set (the probes are then off: close p). */
int bpf_probes_finish(struct bpf_probes *p, char *why, size_t whylen);

/* Called for each child the arbiter reaps that is not a worker: 1 if pid was the
 * loader (reaped now, through its pidfd), 0 if not, -1 if it has not exited. */
int bpf_probes_reap(pid_t pid);

/* Consume waiting events (calls opt->on_event for each). */
void bpf_probes_poll(struct bpf_probes *p);

/* Stats for signal sig sent to the arbiter itself. Returns 0, or -ENODEV when off. */
int bpf_probes_self_stats(struct bpf_probes *p, int sig, struct bpf_signal_stats *ret);

/* Events the probes did not send: over the rate limit (suppressed, counted and said
 * in the next event), or lost because the ring buffer was full (dropped). */
void bpf_probes_event_stats(const struct bpf_probes *p, uint64_t *ret_suppressed,
			    uint64_t *ret_dropped);

/* The arbiter's pid in the host's (initial) PID namespace, as the probes and the
 * pinned maps' tgid fields know it: not getpid() when we are PID 1 of a container.
 * 0 when off. */
pid_t bpf_probes_self_tgid(const struct bpf_probes *p);

/* Where the maps are pinned ("" when off, or when they could not be pinned: the
 * probes then count for status only, and the log said why). */
const char *bpf_probes_pin_dir(const struct bpf_probes *p);
/* Why the maps are not pinned ("" when they are, or pinning was not asked for). */
const char *bpf_probes_pin_why(const struct bpf_probes *p);

/* NULL when that part runs, else why not ("--bpf-sigaction off", "the kernel's
 * verifier refused program sv_deliver: R1 invalid mem access 'scalar'"). With the
 * probes off (p NULL) every part is off. */
const char *bpf_probes_part_off(const struct bpf_probes *p, enum bpf_part part);

/* "signals", "deliveries", "sigaction". */
const char *bpf_part_name(enum bpf_part part);

/* Readiness by serving (serving.h). Whether the probe can be used now (loaded, the
 * part not refused). */
bool bpf_probes_serving(const struct bpf_probes *p);
/* Who hears of a watched worker seen serving: cb(ctx, its pid, "accept4 on fd 7 in
 * pid 42 (gunicorn)"), from bpf_probes_poll(), at most once per watch. */
void bpf_probes_serving_callback(struct bpf_probes *p,
				 void (*cb)(void *ctx, pid_t pid, const char *how), void *ctx);
/* The listening sockets, by inode (st_ino of fstat), replacing the last set. */
int bpf_probes_serving_sockets(struct bpf_probes *p, const uint64_t *inodes, size_t n);
/* Watch worker pid (as we see it) and its descendants; the probe is attached while at
 * least one worker is watched. 0, or -errno (then look at /proc instead). Each
 * successful watch is paired with one unwatch. */
int bpf_probes_serving_watch(struct bpf_probes *p, pid_t pid);
void bpf_probes_serving_unwatch(struct bpf_probes *p, pid_t pid);

/* Keeping the probes across a USR2's exec: the image before hands them over to a new
 * binary that carries the same ones, and the new image takes them as they are (the
 * programs stay attached, the maps and their counts stay: no verifier, no gap).
 *
 * What identifies the probes: a hash of the BPF object this binary carries and of what
 * is baked into it at load. The --check of a USR2 says it. */
uint64_t bpf_probes_identity(void);
/* Before the exec: clear close-on-exec on every fd of the probes and write them into the
 * upgrade state f ("bpf ..." and "bpfwhy ..." lines). 0, or <0 if they cannot be handed
 * over (loading, or off: then close them as before). */
int bpf_probes_handover(struct bpf_probes *p, FILE *f);
/* The exec failed: close-on-exec again, as before bpf_probes_handover(). */
void bpf_probes_handover_undo(struct bpf_probes *p);
/* Those lines as the new image received them: make their fds close-on-exec, or not
 * (to hand them on, to the image a rollback goes back to). */
void bpf_handover_cloexec(const char *state, bool on);
/* Whether p are probes loaded elsewhere and adopted (the image before a USR2's, or the
 * loader's). */
bool bpf_probes_adopted(const struct bpf_probes *p);

/* Detach every program, unpin the maps, free. Accepts NULL. */
void bpf_probes_close(struct bpf_probes *p);
