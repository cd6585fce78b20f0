/* What the probes (bpf/sigvisor.bpf.c) and their loader (arbiter/bpf.c) agree on: the
 * keys and values of the pinned maps and the ring-buffer event.
 *
 * Plain fixed-width structs only, identical in both compilers (clang -target bpf and
 * the host cc): no pointers, no bool, explicit padding. The enums are the types of key
 * fields on purpose: the maps carry BTF, so `bpftool map dump` prints "coalesced" and
 * "caught" instead of 2. Their constants are lowercase for that reason only; they are
 * global identifiers, so nothing else may be called delivered, ignored, coalesced,
 * overflow, lose_info, sig_dfl, sig_ign or caught in a file that includes this one.
 *
 * Every tgid in a map is a host tgid (the initial PID namespace: what the kernel and a
 * host's bpftool see). The `tracked` map translates it to the arbiter's namespace. */
#pragma once

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define SV_MAX_TRACKED	8192
#define SV_MAX_COUNTERS 8192
/* The event ring's size as compiled; the loader sizes it for the pool before load
 * (arbiter/bpf.c: ring_bytes). */
#define SV_RINGBUF_BYTES (64 * 1024)
#define SV_MAX_SIG	 64
/* Events per (target process, signal) and second; the rest are counted, not sent. */
#define SV_EVENTS_PER_SEC 10
#define SV_COMM_LEN	  16

/* Bits of the `refuse` rodata: programs the verifier is made to refuse. A test hook
 * only (SIGVISOR_TEST_BPF_REFUSE, see arbiter/bpf.c): it proves that one refused
 * program is reported with the verifier's reason and, if optional, leaves the rest
 * running. Zero in production, where the refusing branch is dead code the verifier
 * never walks. */
#define SV_REFUSE_GENERATE  (1u << 0)
#define SV_REFUSE_DELIVER   (1u << 1)
#define SV_REFUSE_SYS_ENTER (1u << 2)
#define SV_REFUSE_SERVING   (1u << 3)

/* Readiness by serving (arbiter/serving.c): the workers waited for, by their pid in the
 * arbiter's namespace, and the listening sockets, by inode. Neither is pinned. */
#define SV_MAX_SERVING_WAIT  4096
#define SV_MAX_SERVING_SOCKS 64
/* How far up from the process that makes the call its worker may be (gunicorn's
 * worker process is the child of the master sigvisor started). */
#define SV_SERVING_DEPTH 4

/* The kernel's enum trace_signal_result, as signal_generate reports it. */
enum sv_result {
	delivered = 0, /* made pending (for a blocked signal: queued, one signalfd read) */
	ignored = 1,   /* the disposition is SIG_IGN (or default-ignore) and not blocked */
	coalesced = 2, /* already pending: merged by the kernel (TRACE_SIGNAL_ALREADY_PENDING) */
	overflow = 3,  /* a real-time signal that did not fit the queue: lost */
	lose_info = 4, /* queued without its siginfo */
	SV_RESULT_MAX = 5,
};

/* A disposition, as delivered (signal_deliver) or installed (rt_sigaction). */
enum sv_handler {
	sig_dfl = 0, /* the default action */
	sig_ign = 1, /* ignored */
	caught = 2,  /* a handler function (SigCgt in /proc/PID/status) */
};

/* `signals`: signal_generate for targets in the tree. */
struct sv_signal_key {
	__u32 tgid;
	__u32 sig;
	enum sv_result result;
};

/* `senders`: the same signals by sender, where the kernel knows it (kill, sigqueue,
 * tgkill: the calling process); sender 0 is the kernel (a timer, a tty, a child's
 * exit, a fault). */
struct sv_sender_key {
	__u32 tgid;
	__u32 sig;
	__u32 sender;
};

/* `deliveries`: signal_deliver in the tree (signals read from a signalfd never pass
 * there). `sigactions`: rt_sigaction(sig, act != NULL) calls, by what act installs. */
struct sv_handler_key {
	__u32 tgid;
	__u32 sig;
	enum sv_handler kind;
};

struct sv_count {
	__u64 count;
};

/* `sigsets`: the last rt_sigaction(sig, act != NULL) of each process of the tree, what
 * it installed and when (bpf_ktime_get_ns: CLOCK_MONOTONIC). With `forks`, who set a
 * disposition and when relative to a fork: `sigvisor signals`' provenance. */
struct sv_sigset_key {
	__u32 tgid;
	__u32 sig;
};

struct sv_sigset {
	__u64 ts_ns;
	enum sv_handler kind;
	__u32 pad;
};

/* `forks`: each process of the tree, when it was forked and by whom (host tgids), and
 * its last execve (caught handlers are reset to the default there; 0: none seen).
 * Kept after the exit (an LRU map) so that a child's inheritance can still be traced to
 * a leader that is gone. */
struct sv_fork {
	__u64 fork_ns;
	__u64 exec_ns;
	__u32 ppid;
	__u32 nspid; /* the pid in the arbiter's namespace, 0 if outside it */
};

/* `tracked`: the arbiter and everything it forked, by host tgid. */
struct sv_tracked {
	__u32 nspid; /* the pid in the arbiter's PID namespace */
	__u32 ppid;  /* host tgid of the tracked parent; 0 for the arbiter itself */
};

enum sv_event_kind {
	SV_EV_GENERATE = 1,
	SV_EV_DELIVER = 2,
	/* A process of a waited-for worker's tree accepted from, or began to wait on, a
	 * listening socket: target is the worker, sender the process that made the call,
	 * sig the system call's number, result the fd it named. */
	SV_EV_SERVING = 3,
};

/* One ring-buffer record. Senders are known only for SI_USER, SI_QUEUE and SI_TKILL
 * (sender_tgid 0 otherwise: the kernel, a timer, a tty). */
struct sv_event {
	__u64 ts_ns;
	__u32 kind; /* enum sv_event_kind */
	__u32 sig;
	__u32 result; /* enum sv_result, or enum sv_handler for SV_EV_DELIVER */
	__s32 si_code;
	__u32 target_tgid;
	__u32 target_nspid; /* 0: not in the arbiter's namespace */
	__u32 sender_tgid;
	__u32 sender_nspid;
	__u32 suppressed;     /* events for this target and signal held back before this one */
	__u16 target_handler; /* enum sv_handler: the target's disposition of sig just then */
	__u16 target_blocked; /* 1: the target blocks sig */
	char target_comm[SV_COMM_LEN];
	char sender_comm[SV_COMM_LEN];
};

_Static_assert(sizeof(struct sv_signal_key) == 12, "sv_signal_key layout");
_Static_assert(sizeof(struct sv_handler_key) == 12, "sv_handler_key layout");
_Static_assert(sizeof(struct sv_sender_key) == 12, "sv_sender_key layout");
_Static_assert(sizeof(struct sv_event) == 80, "sv_event layout");
_Static_assert(sizeof(struct sv_sigset_key) == 8, "sv_sigset_key layout");
_Static_assert(sizeof(struct sv_sigset) == 16, "sv_sigset layout");
_Static_assert(sizeof(struct sv_fork) == 24, "sv_fork layout");
