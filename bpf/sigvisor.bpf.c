/* The kernel side of sigvisor's probes: what happens to every signal in the arbiter's
 * process tree. Loaded and attached by arbiter/bpf.c; the maps it fills are pinned
 * for bpftool, their layout is in shared/sigvisor_bpf.h.
 *
 * Only tp_btf programs: on the machines we target fentry, kprobe and ksyscall do not
 * load, and tracepoint/ needs tracefs mounted (doc/EBPF.md).
 *
 * Which processes count: the `tracked` map. The arbiter registers itself (sv_register,
 * below), fork copies a tracked parent's membership to the child, the exit of a
 * process's last thread removes it. Everything else on the host costs one hash lookup
 * per signal or fork, and the rt_sigaction probe one compare per syscall. */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "sigvisor_bpf.h"

/* include/uapi/asm-generic/siginfo.h; macros, so not in vmlinux.h. */
#define SI_USER	  0
#define SI_QUEUE  (-1)
#define SI_TKILL  (-6)
#define SI_KERNEL 0x80
#define SIGKILL	  9
#define SIGCHLD	  17

#define NSEC_PER_SEC 1000000000ULL

/* The helpers that read kernel memory and the current task are GPL-only. */
char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader before load: the arbiter's PID namespace (dev and inode of
 * /proc/self/ns/pid, dev in the kernel's encoding) and its pid there, to recognise it
 * in sv_register; and the rt_sigaction syscall number of this architecture. */
const volatile __u64 self_ns_dev;
const volatile __u64 self_ns_ino;
const volatile __u32 self_nspid;
const volatile long sigaction_nr = -1;
/* The calls sv_serving looks at, numbered for this architecture (-1: it has none). */
const volatile long accept_nr = -1, accept4_nr = -1, epoll_ctl_nr = -1, poll_nr = -1, ppoll_nr = -1,
		    select_nr = -1, pselect6_nr = -1;
const volatile __u32 refuse; /* SV_REFUSE_*: always 0 outside the test suite */

/* For the test hook: a read through a scalar, the very access a 6.18.44 verifier
 * refused in sv_generate ("invalid mem access 'scalar'"). */
#define REFUSE_IF(bit, scalar)                                                                     \
	do {                                                                                       \
		if (refuse & (bit))                                                                \
			return *(volatile int *)(unsigned long)(scalar);                           \
	} while (0)

/* Written once by sv_register, read by the loader (mmap'ed .bss). self_tgid last. */
__u64 self_ns;	  /* struct pid_namespace * of the arbiter, compared, never read */
__u32 self_level; /* its depth: pid->numbers[self_level] is the pid as the arbiter sees it */
__u32 self_tgid;  /* the arbiter's host tgid, 0 until registered */
/* signal_generate results for the arbiter itself; status reads them without a syscall,
 * and they cannot be evicted the way an LRU map entry can. */
__u64 self_counts[SV_MAX_SIG + 1][SV_RESULT_MAX];
/* Of those, the ones a process sent (si_code <= 0, as arbiter/signals.c tells them from
 * the tty's SI_KERNEL) that were made pending or merged into a pending one: what the
 * arbiter's signalfd reads stand for. TTIN/TTOU scale by this count (arbiter/scale.c),
 * which self_counts cannot give: it does not tell the terminal's apart. */
__u64 self_sent[SV_MAX_SIG + 1];
__u64 events_dropped;	 /* the ring buffer was full */
__u64 events_suppressed; /* over SV_EVENTS_PER_SEC for one target and signal */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SV_MAX_TRACKED);
	__type(key, __u32);
	__type(value, struct sv_tracked);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tracked SEC(".maps");

/* LRU: workers come and go and nothing deletes a dead tgid's counters; the oldest go
 * first when the map is full. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SV_MAX_COUNTERS);
	__type(key, struct sv_signal_key);
	__type(value, struct sv_count);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} signals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SV_MAX_COUNTERS);
	__type(key, struct sv_sender_key);
	__type(value, struct sv_count);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} senders SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SV_MAX_COUNTERS);
	__type(key, struct sv_handler_key);
	__type(value, struct sv_count);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} deliveries SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SV_MAX_COUNTERS);
	__type(key, struct sv_handler_key);
	__type(value, struct sv_count);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sigactions SEC(".maps");

/* Provenance (shared/sigvisor_bpf.h): the last sigaction of each (process, signal),
 * and each process's fork, parent and exec. LRU: a dead process's entries stay until
 * newer ones need the room, so a child can still be traced to its leader. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SV_MAX_COUNTERS);
	__type(key, struct sv_sigset_key);
	__type(value, struct sv_sigset);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sigsets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SV_MAX_TRACKED);
	__type(key, __u32);
	__type(value, struct sv_fork);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} forks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SV_RINGBUF_BYTES);
} events SEC(".maps");

/* Rate limit of events per (target, signal): a TTIN storm of thousands is counted
 * exactly in `signals` but logged ten times a second. Not pinned: internal. */
struct limit_key {
	__u32 tgid;
	__u32 sig;
};

struct limit {
	__u64 window_ns;
	__u32 sent;
	__u32 held;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct limit_key);
	__type(value, struct limit);
} limits SEC(".maps");

static __always_inline void count(void *map, const void *key)
{
	struct sv_count zero = {}, *v = bpf_map_lookup_elem(map, key);

	if (!v) {
		/* Two CPUs may race to create it: NOEXIST lets one win, both then add. */
		bpf_map_update_elem(map, key, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(map, key);
		if (!v)
			return;
	}
	__sync_fetch_and_add(&v->count, 1);
}

/* The pid of t's process as the arbiter sees it, 0 if t is outside its namespace (a
 * sender on the host, when the arbiter is PID 1 of a container). pid->numbers[] has
 * one entry per level, so the index is variable: read it with a helper. CO-RE reads
 * throughout: t may be the current task, which kernels before 5.11 give only as a
 * plain number (bpf_get_current_task(), no bpf_get_current_task_btf()). */
static __always_inline __u32 nspid_of(struct task_struct *t)
{
	struct pid *pid = BPF_CORE_READ(t, group_leader, thread_pid);
	__u32 level = self_level;
	struct upid up;

	if (!pid || BPF_CORE_READ(pid, level) < level)
		return 0;
	if (bpf_probe_read_kernel(&up, sizeof(up), &pid->numbers[level]))
		return 0;
	return (__u64)up.ns == self_ns ? (__u32)up.nr : 0;
}

/* The current task for CO-RE reads. bpf_get_current_task_btf() is 5.11+ ("invalid func
 * unknown#158" on 5.10), so every program would refuse there: this one exists since
 * 4.8, and what it returns is read only through BPF_CORE_READ / probe reads. */
static __always_inline struct task_struct *current_task(void)
{
	return (struct task_struct *)bpf_get_current_task();
}

/* One-shot: the loader calls prctl(PR_SET_NAME) with its own name right after
 * attaching this. BPF sees host tgids, the arbiter only its namespace's pid (1 in a
 * container), and /proc there shows no host pids: so the probe recognises the task
 * whose pid in the arbiter's namespace (dev/inode from the loader) is the loader's
 * getpid(), and records its host tgid. The pair (namespace, pid) is unique, so no
 * other process can register by accident. task_rename is rare on a host, unlike
 * sys_enter, and the loader detaches this program as soon as it has answered. */
SEC("tp_btf/task_rename")
int BPF_PROG(sv_register, struct task_struct *task, const char *comm)
{
	struct task_struct *cur = current_task();
	struct bpf_pidns_info ns;
	struct sv_tracked me = {};
	struct pid *pid;
	struct upid up;
	__u32 tgid;

	if (self_tgid)
		return 0;
	if (bpf_get_ns_current_pid_tgid(self_ns_dev, self_ns_ino, &ns, sizeof(ns)))
		return 0; /* current is not in the arbiter's namespace */
	if (ns.tgid != self_nspid)
		return 0;
	pid = BPF_CORE_READ(cur, group_leader, thread_pid);
	if (!pid)
		return 0;
	self_level = BPF_CORE_READ(pid, level);
	if (bpf_probe_read_kernel(&up, sizeof(up), &pid->numbers[self_level]))
		return 0;
	self_ns = (__u64)up.ns;
	tgid = bpf_get_current_pid_tgid() >> 32;
	me.nspid = ns.tgid;
	bpf_map_update_elem(&tracked, &tgid, &me, BPF_ANY);
	{
		struct sv_fork f = {.fork_ns = BPF_CORE_READ(cur, start_time), .nspid = ns.tgid};

		bpf_map_update_elem(&forks, &tgid, &f, BPF_ANY);
	}
	self_tgid = tgid;
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(sv_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid, ctgid = child->tgid;
	struct sv_tracked v = {.ppid = ptgid};

	if (ptgid == ctgid)
		return 0; /* a new thread: its process is tracked already, or not */
	if (!bpf_map_lookup_elem(&tracked, &ptgid))
		return 0;
	v.nspid = nspid_of(child);
	bpf_map_update_elem(&tracked, &ctgid, &v, BPF_ANY);
	{
		struct sv_fork f = {.fork_ns = bpf_ktime_get_ns(), .ppid = ptgid, .nspid = v.nspid};

		bpf_map_update_elem(&forks, &ctgid, &f, BPF_ANY);
	}
	return 0;
}

/* Processes of the tree that were forked before sv_fork was attached: the arbiter
 * starts its workers while the probes load in the background, and a new image after a
 * USR2 adopts the old image's workers. Run once by the loader (a task iterator) right
 * after sv_fork is attached, so that no fork falls between the two. A task counts
 * when the arbiter is among its ancestors; the parent chain is read with CO-RE reads
 * (real_parent is an RCU pointer the verifier may not trust). */
SEC("iter/task")
int sv_adopt(struct bpf_iter__task *ctx)
{
	struct task_struct *t = ctx->task, *p;
	struct sv_tracked v = {};
	__u32 tgid;

	if (!t || !self_tgid)
		return 0;
	tgid = BPF_CORE_READ(t, tgid);
	if (BPF_CORE_READ(t, pid) != tgid || tgid == self_tgid || BPF_CORE_READ(t, exit_state))
		return 0; /* one entry a process; a zombie's exit has been seen already */
	p = t;
	for (int depth = 0; depth < 16; depth++) {
		__u32 ptgid;

		p = BPF_CORE_READ(p, real_parent);
		if (!p)
			return 0;
		ptgid = BPF_CORE_READ(p, tgid);
		if (ptgid == self_tgid) {
			v.ppid = BPF_CORE_READ(t, real_parent, tgid);
			v.nspid = nspid_of(t);
			bpf_map_update_elem(&tracked, &tgid, &v, BPF_NOEXIST);
			{
				/* its fork and exec came before the probes: when is known,
				 * what it set then is not */
				struct sv_fork f = {.fork_ns = BPF_CORE_READ(t, start_time),
						    .ppid = v.ppid,
						    .nspid = v.nspid};

				bpf_map_update_elem(&forks, &tgid, &f, BPF_NOEXIST);
			}
			return 0;
		}
		if (ptgid <= 1)
			return 0;
	}
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(sv_exit, struct task_struct *p)
{
	__u32 tgid = p->tgid;

	/* do_exit() decremented signal->live before this tracepoint: 0 means this is the
	 * process's last thread (the leader alone may exit early and leave threads that
	 * still receive signals). Read here rather than the tracepoint's group_dead
	 * argument, which kernels before 6.16 do not have. */
	if (p->signal->live.counter)
		return 0;
	bpf_map_delete_elem(&tracked, &tgid);
	return 0;
}

/* May an event for (tgid, sig) go out now? *ret_held: how many were held back since
 * the last one that did. Racy across CPUs by design: it is a rate, not a count. The
 * atomics here are the plain add without fetch (BPF_XADD, every kernel): an exchange
 * (__sync_lock_test_and_set) or a fetching add is BPF_XCHG / BPF_FETCH, 5.12+ ("BPF_STX
 * uses reserved fields" on 5.10). Taking back exactly what was read loses no holds
 * another CPU adds in between. */
static __always_inline bool may_send(__u32 tgid, __u32 sig, __u32 *ret_held)
{
	struct limit_key k = {.tgid = tgid, .sig = sig};
	__u64 now = bpf_ktime_get_ns();
	struct limit *l = bpf_map_lookup_elem(&limits, &k);

	if (!l) {
		struct limit fresh = {.window_ns = now};

		bpf_map_update_elem(&limits, &k, &fresh, BPF_NOEXIST);
		l = bpf_map_lookup_elem(&limits, &k);
		if (!l)
			return true;
	}
	if (now - l->window_ns >= NSEC_PER_SEC) {
		l->window_ns = now;
		l->sent = 0;
	}
	if (l->sent >= SV_EVENTS_PER_SEC) {
		__sync_fetch_and_add(&l->held, 1);
		__sync_fetch_and_add(&events_suppressed, 1);
		return false;
	}
	l->sent++;
	*ret_held = l->held;
	if (*ret_held)
		__sync_fetch_and_add(&l->held, -*ret_held);
	return true;
}

static __always_inline struct sv_event *new_event(__u32 kind, int sig, __u32 result,
						  struct task_struct *target, __u32 held)
{
	struct sv_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		__sync_fetch_and_add(&events_dropped, 1);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = kind;
	e->sig = (__u32)sig;
	e->result = result;
	e->target_tgid = BPF_CORE_READ(target, tgid);
	e->target_nspid = nspid_of(target);
	e->suppressed = held;
	/* target may be the current task (see current_task) */
	BPF_CORE_READ_STR_INTO(&e->target_comm, target, group_leader, comm);
	return e;
}

static __always_inline enum sv_handler handler_kind(unsigned long h)
{
	return h == 0 ? sig_dfl : h == 1 ? sig_ign : caught;
}

/* The si_code of a signal being sent. info may be one of the markers SEND_SIG_NOINFO
 * (0: from user space, current is the sender) or SEND_SIG_PRIV (1: from the kernel)
 * rather than a pointer. Newer verifiers (6.18.44 here) know that and type the
 * argument as a scalar ("marking pointer arg1 as scalar as it may encode error"): a
 * direct info->si_code is then refused ("invalid mem access 'scalar'") and the whole
 * object fails to load. bpf_probe_read_kernel is accepted by old and new verifiers
 * alike, and a bad address only makes it fail, never fault. */
static __always_inline int code_of(struct kernel_siginfo *info)
{
	int code = SI_USER;

	if ((unsigned long)info == 0)
		return SI_USER;
	if ((unsigned long)info == 1)
		return SI_KERNEL;
	if (bpf_probe_read_kernel(&code, sizeof(code), &info->si_code))
		return SI_KERNEL; /* unreadable: vouch for no sender */
	return code;
}

SEC("tp_btf/signal_generate")
int BPF_PROG(sv_generate, int sig, struct kernel_siginfo *info, struct task_struct *task, int group,
	     int result)
{
	struct sv_signal_key key = {.tgid = task->tgid, .sig = (__u32)sig};
	struct sv_sender_key by = {.tgid = key.tgid, .sig = key.sig};
	struct sighand_struct *sh;
	struct sv_event *e;
	unsigned long h = 0;
	__u32 held = 0;
	int code;

	REFUSE_IF(SV_REFUSE_GENERATE, sig);
	if (!bpf_map_lookup_elem(&tracked, &key.tgid))
		return 0;
	if (sig <= 0 || sig > SV_MAX_SIG || result < 0 || result >= SV_RESULT_MAX)
		return 0;
	key.result = (enum sv_result)result;
	count(&signals, &key);
	if (key.tgid == self_tgid) {
		/* One flat index, bounded right before the access: the 5.10 verifier does
		 * not carry the bounds of sig and result checked above through the
		 * calls in between to the address ("R3 unbounded memory access"). */
		__u32 at = (__u32)sig * SV_RESULT_MAX + (__u32)result;

		barrier_var(at);
		if (at < (SV_MAX_SIG + 1) * SV_RESULT_MAX)
			__sync_fetch_and_add(&self_counts[0][0] + at, 1);
	}
	code = code_of(info);
	/* key.sig, not sig: bounds the verifier still knows after code_of's call. */
	if (key.tgid == self_tgid && code <= 0 && result != ignored && result != overflow &&
	    key.sig <= SV_MAX_SIG)
		__sync_fetch_and_add(&self_sent[key.sig], 1);
	/* The kernel vouches for the sender only when it is the caller of kill(),
	 * sigqueue() or tgkill(); otherwise si_pid is whatever the sender wrote. */
	if (code == SI_USER || code == SI_QUEUE || code == SI_TKILL)
		by.sender = bpf_get_current_pid_tgid() >> 32;
	count(&senders, &by);

	/* A worker's exit is logged by the arbiter already; its SIGCHLD is a hint. */
	if (sig == SIGCHLD || !may_send(key.tgid, key.sig, &held))
		return 0;
	e = new_event(SV_EV_GENERATE, sig, (__u32)result, task, held);
	if (!e)
		return 0;
	e->si_code = code;
	if (by.sender) {
		e->sender_tgid = by.sender;
		e->sender_nspid = nspid_of(current_task());
		bpf_get_current_comm(e->sender_comm, sizeof(e->sender_comm));
	}
	/* Whether the signal can hurt: a target that neither blocks nor handles a signal
	 * whose default action is to terminate dies of it (the kernel then turns it into
	 * a SIGKILL, which is all signal_deliver would show). 64-bit: one sigset word. */
	e->target_blocked = (task->blocked.sig[0] >> (sig - 1)) & 1;
	sh = task->sighand;
	if (sh)
		bpf_probe_read_kernel(&h, sizeof(h), &sh->action[sig - 1].sa.sa_handler);
	e->target_handler = handler_kind(h);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* get_signal() only: signals read from a signalfd (the arbiter's) never come here. */
SEC("tp_btf/signal_deliver")
int BPF_PROG(sv_deliver, int sig, struct kernel_siginfo *info, struct k_sigaction *ka)
{
	struct sv_handler_key key = {.tgid = bpf_get_current_pid_tgid() >> 32, .sig = (__u32)sig};
	struct sv_event *e;
	unsigned long h;
	__u32 held = 0;

	REFUSE_IF(SV_REFUSE_DELIVER, sig);
	if (!bpf_map_lookup_elem(&tracked, &key.tgid))
		return 0;
	if (sig <= 0 || sig > SV_MAX_SIG)
		return 0;
	/* ka is a pointer the kernel always passes, but read it the way the verifier
	 * accepts whatever it decides about tracepoint arguments (see code_of). */
	if (bpf_probe_read_kernel(&h, sizeof(h), &ka->sa.sa_handler))
		return 0;
	key.kind = handler_kind(h);
	count(&deliveries, &key);
	/* Only the default action is worth a line: it stops the process (a default-ignore
	 * signal never gets this far, and one that terminates arrives here as the SIGKILL
	 * the kernel turned it into: its generate event said which it was). Handlers,
	 * SIG_IGN and SIGKILL are counted only. sig | 0x100: a rate budget apart from the
	 * generate events'. */
	if (key.kind != sig_dfl || sig == SIGKILL || !may_send(key.tgid, key.sig | 0x100, &held))
		return 0;
	e = new_event(SV_EV_DELIVER, sig, sig_dfl, current_task(), held);
	if (e)
		bpf_ringbuf_submit(e, 0);
	return 0;
}

/* rt_sigaction(sig, act, oldact, size) in the tree. Every syscall on the host passes
 * through here (the loader leaves it unloaded with --bpf-sigaction off): compare the
 * number first, then one lookup. Queries (act NULL) install nothing and are skipped. */
SEC("tp_btf/sys_enter")
int BPF_PROG(sv_sys_enter, struct pt_regs *regs, long id)
{
	struct sv_handler_key key = {};
	unsigned long act, handler;

	REFUSE_IF(SV_REFUSE_SYS_ENTER, id);
	if (id != sigaction_nr)
		return 0;
	key.tgid = bpf_get_current_pid_tgid() >> 32;
	if (!bpf_map_lookup_elem(&tracked, &key.tgid))
		return 0;
	key.sig = (__u32)PT_REGS_PARM1_SYSCALL(regs);
	act = (unsigned long)PT_REGS_PARM2_SYSCALL(regs);
	if (!act || key.sig == 0 || key.sig > SV_MAX_SIG)
		return 0;
	/* struct sigaction as the kernel takes it starts with the handler. */
	if (bpf_probe_read_user(&handler, sizeof(handler), (const void *)act))
		return 0;
	key.kind = handler_kind(handler);
	count(&sigactions, &key);
	{
		struct sv_sigset_key sk = {.tgid = key.tgid, .sig = key.sig};
		struct sv_sigset v = {.ts_ns = bpf_ktime_get_ns(), .kind = key.kind};

		bpf_map_update_elem(&sigsets, &sk, &v, BPF_ANY);
	}
	return 0;
}

/* An execve in the tree resets its caught handlers to the default (SIG_IGN stays): the
 * provenance of an inherited handler stops there. Rare: one lookup per exec. Loaded
 * with sv_sys_enter (--bpf-sigaction), whose records it qualifies. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(sv_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = p->tgid;
	struct sv_fork *f = bpf_map_lookup_elem(&forks, &tgid);

	if (f)
		f->exec_ns = bpf_ktime_get_ns();
	return 0;
}

/* ---- readiness by serving (arbiter/serving.c) ----------------------------------------
 * A worker that never speaks sd_notify is ready once a process of its tree accepts from
 * one of the listening sockets sigvisor handed it, or begins to wait on one: accept or
 * accept4 on it (gunicorn's sync worker), EPOLL_CTL_ADD of it (gthread, uvicorn, node),
 * poll/ppoll/select/pselect6 with it among the fds read. The fd is the process's own
 * number (gunicorn dup()s fd 3 to 7): what counts is the socket it names, compared by
 * inode. Attached only while some worker is waited for, so a sys_enter hook on every
 * system call of the host costs nothing the rest of the time. */
#define EPOLL_CTL_ADD 1
#define POLLIN	      0x001
#define SV_POLL_FDS   8	 /* pollfd entries looked at */
#define SV_SELECT_FDS 64 /* fds of a select set looked at: its first word */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SV_MAX_SERVING_WAIT);
	__type(key, __u32); /* the worker's pid in the arbiter's namespace */
	__type(value, __u32);
} serving_wait SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SV_MAX_SERVING_SOCKS);
	__type(key, __u64); /* inode of a listening socket */
	__type(value, __u32);
} serving_socks SEC(".maps");

/* The inode of the file behind fd in the calling process, 0 if none. Every step is a
 * probe read: the fd table may be resized under us, and a verifier may type any of
 * these pointers as it likes (see code_of). */
static __always_inline __u64 ino_of_fd(struct task_struct *cur, long fd)
{
	struct files_struct *files;
	struct fdtable *fdt;
	struct file **fds;
	struct file *f = NULL;

	if (fd < 0)
		return 0;
	files = BPF_CORE_READ(cur, files);
	if (!files)
		return 0;
	fdt = BPF_CORE_READ(files, fdt);
	if (!fdt || (unsigned long)fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	fds = BPF_CORE_READ(fdt, fd);
	if (!fds || bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return 0;
	return BPF_CORE_READ(f, f_inode, i_ino);
}

static __always_inline bool is_listener(struct task_struct *cur, long fd)
{
	__u64 ino = ino_of_fd(cur, fd);

	return ino && bpf_map_lookup_elem(&serving_socks, &ino);
}

/* The waited-for worker the calling process belongs to (itself or an ancestor up to
 * SV_SERVING_DEPTH), as its nspid, or 0. */
static __always_inline __u32 waiting_worker(__u32 tgid)
{
	for (int i = 0; i < SV_SERVING_DEPTH; i++) {
		struct sv_tracked *t = bpf_map_lookup_elem(&tracked, &tgid);

		if (!t)
			return 0;
		if (t->nspid && bpf_map_lookup_elem(&serving_wait, &t->nspid))
			return t->nspid;
		if (!t->ppid)
			return 0; /* the arbiter */
		tgid = t->ppid;
	}
	return 0;
}

struct pollfd_ {
	int fd;
	short events;
	short revents;
};

SEC("tp_btf/sys_enter")
int BPF_PROG(sv_serving, struct pt_regs *regs, long id)
{
	struct task_struct *cur;
	struct sv_event *e;
	__u32 tgid, worker;
	long fd = -1;

	REFUSE_IF(SV_REFUSE_SERVING, id);
	if (id != accept_nr && id != accept4_nr && id != epoll_ctl_nr && id != poll_nr &&
	    id != ppoll_nr && id != select_nr && id != pselect6_nr)
		return 0;
	tgid = bpf_get_current_pid_tgid() >> 32;
	worker = waiting_worker(tgid);
	if (!worker)
		return 0;
	cur = current_task();
	if (id == accept_nr || id == accept4_nr) {
		fd = (long)PT_REGS_PARM1_SYSCALL(regs);
		if (!is_listener(cur, fd))
			return 0;
	} else if (id == epoll_ctl_nr) {
		if ((int)PT_REGS_PARM2_SYSCALL(regs) != EPOLL_CTL_ADD)
			return 0;
		fd = (long)PT_REGS_PARM3_SYSCALL(regs);
		if (!is_listener(cur, fd))
			return 0;
	} else if (id == poll_nr || id == ppoll_nr) {
		const struct pollfd_ *ufds = (const void *)PT_REGS_PARM1_SYSCALL(regs);
		unsigned long n = (unsigned long)PT_REGS_PARM2_SYSCALL(regs);

		for (int i = 0; i < SV_POLL_FDS && fd < 0; i++) {
			struct pollfd_ p;

			if (i >= n || bpf_probe_read_user(&p, sizeof(p), &ufds[i]))
				return 0;
			if ((p.events & POLLIN) && is_listener(cur, p.fd))
				fd = p.fd;
		}
		if (fd < 0)
			return 0;
	} else {
		unsigned long n = (unsigned long)PT_REGS_PARM1_SYSCALL(regs);
		const void *readfds = (const void *)PT_REGS_PARM2_SYSCALL(regs);
		__u64 bits = 0;

		if (!readfds || bpf_probe_read_user(&bits, sizeof(bits), readfds))
			return 0;
		for (int i = 0; i < SV_SELECT_FDS && fd < 0; i++) {
			if (i >= n || !bits)
				return 0;
			if ((bits & 1) && is_listener(cur, i))
				fd = i;
			bits >>= 1;
		}
		if (fd < 0)
			return 0;
	}
	/* Once per worker: whoever deletes its entry reports it. */
	if (bpf_map_delete_elem(&serving_wait, &worker))
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		/* the arbiter's look at /proc finds it instead */
		__sync_fetch_and_add(&events_dropped, 1);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = SV_EV_SERVING;
	e->sig = (__u32)id;
	e->result = (__u32)fd;
	e->target_nspid = worker;
	e->sender_tgid = tgid;
	e->sender_nspid = nspid_of(cur);
	bpf_get_current_comm(e->sender_comm, sizeof(e->sender_comm));
	bpf_ringbuf_submit(e, 0);
	return 0;
}
