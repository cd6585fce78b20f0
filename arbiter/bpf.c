/* The arbiter's side of the eBPF probes (bpf/sigvisor.bpf.c): decide whether they may
 * load and say plainly why not, prepare the pin directory, load and attach them,
 * register the arbiter, turn ring-buffer records into log lines; and undo all of it.
 *
 * Order matters in bpf_probes_open(): the capability and BTF checks come before libbpf
 * (whose own error for a missing capability talks about RLIMIT_MEMLOCK), the pin
 * directory is locked before stale pins in it are removed (another sigvisor may be
 * using it), and the arbiter registers before any worker is forked (fork copies
 * registration to the child). */
#include "bpf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <malloc.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "log.h"
#include "options.h"
#include "signames.h"
#include "sigvisor_bpf.h"
#include "sigvisor.skel.h"

#define BPFFS_ROOT "/sys/fs/bpf"

struct bpf_probes {
	struct sigvisor *skel;
	struct ring_buffer *rb;
	void (*on_event)(void *ctx, const char *line);
	void *ctx;
	/* The pin directory, held with flock() for as long as we run: a second sigvisor
	 * given the same directory sees it is in use instead of deleting our pins, and
	 * a lock left by a SIGKILLed arbiter goes with its process. -1: not pinned. */
	int pin_fd;
	char pin_dir[PATH_MAX]; /* "" when not pinned */
	char pin_why[256];	/* why not, when not */
	pid_t self_tgid;	/* the arbiter's pid in the initial PID namespace */
	uint32_t ring_bytes;	/* the event ring's size: a power of two, a page or more */
	/* --bpf auto loads in a thread of its own while the workers start (parsing the
	 * kernel's BTF and verifying take tens of ms); the loop finishes the job when
	 * loaded_fd (an eventfd) is readable. */
	pthread_t loader;
	bool loading;	    /* loading wanted, the thread not joined yet */
	bool started;	    /* the thread runs (bpf_probes_start_loading) */
	int loaded_fd;	    /* -1 when not loading */
	bool sigaction;	    /* --bpf-sigaction */
	int load_r;	    /* the loader's result */
	char load_why[256]; /* and why it failed */
	/* Optional parts that are off, and why ("" when on). */
	char part_why[BPF_PART_MAX][BPF_WHY_LEN];
	/* Readiness by serving: sv_serving is attached while workers are watched. */
	unsigned serving_watched;
	int serving_prog_fd; /* sv_serving, -1 if its part is off */
	int serving_link_fd; /* its attachment, -1 while no worker is watched */
	/* The mmap'ed .bss (the probes' own counters): the skeleton's when we loaded the
	 * probes, our own mapping when we kept those of the image before a USR2. */
	struct sigvisor__bss *bss;
	/* Kept from the previous image (bpf_probes_handover): the programs stay attached
	 * through these link fds, ours to close (detaching them). -1: none. */
	bool adopted;
	int kept_link[16];
	/* Handed over to a new image, close-on-exec cleared (undone if the exec fails). */
	int handed[32];
	unsigned n_handed;
	void (*on_serving)(void *ctx, pid_t pid, const char *how);
	void *serving_ctx;
};

/* Each program, what it is to a user, and whether the probes are worth running
 * without it. The tree (register, fork, exit) and the signal counts are the probes;
 * the delivery and sigaction counters are extras. */
struct prog_info {
	const char *name; /* as in bpf/sigvisor.bpf.c */
	int part;	  /* enum bpf_part */
	unsigned refuse;  /* SV_REFUSE_* bit for the test hook, 0 if none */
};

static const struct prog_info progs[] = {
	{"sv_register", BPF_PART_SIGNALS, 0},
	{"sv_fork", BPF_PART_SIGNALS, 0},
	{"sv_exit", BPF_PART_SIGNALS, 0},
	{"sv_generate", BPF_PART_SIGNALS, SV_REFUSE_GENERATE},
	{"sv_deliver", BPF_PART_DELIVERIES, SV_REFUSE_DELIVER},
	{"sv_sys_enter", BPF_PART_SIGACTION, SV_REFUSE_SYS_ENTER},
	{"sv_adopt", BPF_PART_ADOPT, 0},
	{"sv_serving", BPF_PART_SERVING, SV_REFUSE_SERVING},
};
#define N_PROGS (sizeof(progs) / sizeof(progs[0]))

static const char *const part_names[BPF_PART_MAX] = {
	[BPF_PART_SIGNALS] = "signals",	    [BPF_PART_DELIVERIES] = "deliveries",
	[BPF_PART_SIGACTION] = "sigaction", [BPF_PART_ADOPT] = "adopt",
	[BPF_PART_SERVING] = "serving",
};

/* A verifier log for one refused program: big enough that the kernel's last line,
 * the reason, fits (kernels before 6.4 keep the head of a log that overflows, not its
 * tail). Allocated only while loading: untouched pages cost no memory. */
#define VERIFIER_LOG_BYTES (1u << 20)

/* The reasons are read by people and may name a long path: truncating is fine. */
__attribute__((format(printf, 3, 4))) static void set_why(char *why, size_t whylen, const char *fmt,
							  ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

/* While the programs load, libbpf's warnings are kept back: for a program the
 * verifier refused they say "Permission denied" (the errno of the refusal), and the
 * loader says what the verifier said instead. The last one is kept for a failure
 * that is not a refusal. */
static __thread bool libbpf_loading; /* per thread: the loader may be a thread of its own */
static __thread char libbpf_last_warning[200];

/* libbpf's messages go through our log: its warnings as warnings, the rest (the
 * verifier's chatter) at debug level. */
__attribute__((format(printf, 2, 0))) static int print_libbpf(enum libbpf_print_level level,
							      const char *fmt, va_list ap)
{
	char buf[1024];
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	const char *text = buf;
	size_t len = strlen(buf);

	while (len && buf[len - 1] == '\n')
		buf[--len] = '\0';
	if (strncmp(text, "libbpf: ", 8) == 0)
		text += 8;
	if (!*text)
		return n;
	if (level == LIBBPF_WARN && libbpf_loading) {
		snprintf(libbpf_last_warning, sizeof(libbpf_last_warning), "%.*s",
			 (int)sizeof(libbpf_last_warning) - 1, text);
		level = LIBBPF_DEBUG;
	}
	log_msg(level == LIBBPF_WARN ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG, "libbpf: %s", text);
	return n;
}

static bool has_cap(const struct __user_cap_data_struct *d, unsigned cap)
{
	return d[cap / 32].effective & (1u << (cap % 32));
}

/* Without CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN) the kernel answers EPERM and libbpf
 * guesses at RLIMIT_MEMLOCK; without kernel BTF no tp_btf program can attach. Ask
 * first, and name what is missing. */
static int check_permitted(char *why, size_t whylen)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
	bool bpf, perfmon;
	char map[64] = "";
	FILE *f;

	memset(d, 0, sizeof(d));
	if (syscall(SYS_capget, &h, d) < 0) {
		set_why(why, whylen, "cannot read our capabilities: %s", strerror(errno));
		return -errno;
	}
	bpf = has_cap(d, CAP_BPF) || has_cap(d, CAP_SYS_ADMIN);
	perfmon = has_cap(d, CAP_PERFMON) || has_cap(d, CAP_SYS_ADMIN);
	if (!bpf || !perfmon) {
		set_why(why, whylen, "missing capability %s%s%s (or CAP_SYS_ADMIN)",
			bpf ? "" : "CAP_BPF", !bpf && !perfmon ? " and " : "",
			perfmon ? "" : "CAP_PERFMON");
		return -EPERM;
	}
	/* Capabilities held in a user namespace do not count for bpf(2). */
	f = fopen("/proc/self/uid_map", "re");
	if (f) {
		unsigned long inside, outside, count;

		if (fgets(map, sizeof(map), f) &&
		    sscanf(map, "%lu %lu %lu", &inside, &outside, &count) == 3 &&
		    !(inside == 0 && outside == 0 && count == 4294967295UL)) {
			fclose(f);
			set_why(why, whylen,
				"running in a user namespace: BPF needs CAP_BPF and CAP_PERFMON "
				"in the host's");
			return -EPERM;
		}
		fclose(f);
	}
	if (access("/sys/kernel/btf/vmlinux", R_OK) < 0) {
		set_why(why, whylen,
			"the kernel has no BTF (/sys/kernel/btf/vmlinux: %s; it needs "
			"CONFIG_DEBUG_INFO_BTF=y)",
			strerror(errno));
		return -ENOTSUP;
	}
	return 0;
}

static bool on_bpffs(const char *path)
{
	struct statfs sf;

	return statfs(path, &sf) == 0 && sf.f_type == BPF_FS_MAGIC;
}

/* The pin directory's parent must be a bpf filesystem. A fresh machine has none at
 * /sys/fs/bpf (systemd mounts it, containers usually do not): mount one there, mode
 * 0700 like systemd's, when the directory asked for is under it. */
static int ensure_bpffs(const char *dir, char *why, size_t whylen)
{
	char parent[PATH_MAX];
	char *slash;

	if (on_bpffs(dir))
		return 0;
	snprintf(parent, sizeof(parent), "%s", dir);
	slash = strrchr(parent, '/');
	if (!slash || slash == parent) {
		set_why(why, whylen, "%s is not in a bpf filesystem", dir);
		return -EINVAL;
	}
	*slash = '\0';
	if (on_bpffs(parent))
		return 0;
	if (strcmp(parent, BPFFS_ROOT) != 0) {
		set_why(why, whylen,
			"%s is not a bpf filesystem (mount one: mount -t bpf bpf %s, or use "
			"--bpf-pin " BPFFS_ROOT "/NAME)",
			parent, parent);
		return -ENOTSUP;
	}
	if (mount("bpf", BPFFS_ROOT, "bpf", 0, "mode=0700") < 0) {
		set_why(why, whylen, "no bpf filesystem at " BPFFS_ROOT " and cannot mount one: %s",
			strerror(errno));
		return -errno;
	}
	log_info("mounted a bpf filesystem on " BPFFS_ROOT " (mode 0700)");
	return 0;
}

/* Create (mode 0700) and lock the pin directory. The lock is taken on the directory
 * that is at the path afterwards: an exiting arbiter removes its directory between
 * our open and our flock, and pins into a removed directory would fail.
 *
 * Only a directory of our own: we remove stale pins in it and chmod it 0700, and the
 * pins of one owned by another user are theirs to replace or read (a reader of the
 * maps sees what every worker does with its signals); nor through a final symlink. */
static int lock_pin_dir(struct bpf_probes *p, const char *dir, char *why, size_t whylen)
{
	for (int attempt = 0; attempt < 3; attempt++) {
		struct stat a, b;
		int fd;

		if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
			set_why(why, whylen, "cannot create %s: %s", dir, strerror(errno));
			return -errno;
		}
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			int r = -errno;

			if (r == -ELOOP)
				set_why(why, whylen,
					"%s is a symbolic link; give --bpf-pin the directory "
					"itself",
					dir);
			else
				set_why(why, whylen, "cannot open %s: %s", dir, strerror(-r));
			return r;
		}
		if (fstat(fd, &a) < 0) {
			int r = -errno;

			close(fd);
			set_why(why, whylen, "cannot stat %s: %s", dir, strerror(-r));
			return r;
		}
		if (a.st_uid != geteuid()) {
			close(fd);
			set_why(why, whylen,
				"%s belongs to uid %u, not to us (uid %u): its pins are not ours "
				"to replace (remove it, or give --bpf-pin a directory of our own)",
				dir, (unsigned)a.st_uid, (unsigned)geteuid());
			return -EPERM;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			int r = -errno;

			close(fd);
			if (r == -EWOULDBLOCK)
				set_why(why, whylen,
					"%s is in use by another running sigvisor (give this one "
					"its own --bpf-pin DIR)",
					dir);
			else
				set_why(why, whylen, "cannot lock %s: %s", dir, strerror(-r));
			return r;
		}
		if (lstat(dir, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
			/* Ours now: whatever mode it was left with, only root may look. */
			if (fchmod(fd, 0700) < 0)
				log_debug("cannot chmod 0700 %s, ignoring: %m", dir);
			p->pin_fd = fd;
			snprintf(p->pin_dir, sizeof(p->pin_dir), "%s", dir);
			return 0;
		}
		close(fd);
	}
	set_why(why, whylen, "%s keeps being replaced", dir);
	return -EBUSY;
}

/* Pins left by an arbiter that could not remove them (killed, or replaced by exec for
 * an upgrade): libbpf would reuse them (counts from the last run) or fail on a map
 * whose layout changed (EINVAL). We hold the directory's lock, so they are nobody's:
 * remove the ones our object would pin. */
static void remove_stale_pins(struct bpf_probes *p)
{
	struct bpf_map *map;
	unsigned n = 0;

	bpf_object__for_each_map(map, p->skel->obj)
	{
		const char *path = bpf_map__pin_path(map);

		if (!path)
			continue;
		if (unlink(path) == 0)
			n++;
		else if (errno != ENOENT)
			log_warn("cannot remove the stale BPF pin %s, ignoring: %m", path);
	}
	if (n)
		log_info("removed %u stale BPF pins from %s (an earlier arbiter did not exit "
			 "cleanly)",
			 n, p->pin_dir);
}

/* What we pinned, and only that (bpf_object__unpin_maps() stops at the first map
 * that is not pinned, e.g. after a failed load, which libbpf unpins itself). */
static void unpin_maps(struct bpf_probes *p)
{
	struct bpf_map *map;

	bpf_object__for_each_map(map, p->skel->obj)
	{
		const char *path = bpf_map__pin_path(map);

		/* Kept maps were pinned by the image before: libbpf does not know. */
		if (p->adopted && path && unlink(path) < 0 && errno != ENOENT)
			log_warn("cannot unpin %s, ignoring: %m", path);
		else if (!p->adopted && bpf_map__is_pinned(map) && bpf_map__unpin(map, NULL) < 0)
			log_warn("cannot unpin %s, ignoring: %m", path);
	}
}

static void release_pin_dir(struct bpf_probes *p)
{
	if (p->pin_fd < 0)
		return;
	/* Only an empty directory goes: anything else in it is not ours. */
	if (rmdir(p->pin_dir) < 0 && errno != ENOTEMPTY && errno != EEXIST && errno != ENOENT)
		log_warn("cannot remove %s, ignoring: %m", p->pin_dir);
	close(p->pin_fd);
	p->pin_fd = -1;
	p->pin_dir[0] = '\0';
}

/* Not pinning is not a reason to go without the probes: status still gets its
 * counts. Without a pin root libbpf would pin under /sys/fs/bpf itself, so clear the
 * pin paths it derived at open. */
static void disable_pinning(struct bpf_probes *p)
{
	struct bpf_map *map;

	bpf_object__for_each_map(map, p->skel->obj)(void) bpf_map__set_pin_path(map, NULL);
}

/* Copy a comm from the kernel for a log line: NUL-terminated, printable. */
static void clean_comm(char *dst, const char *src)
{
	size_t i;

	for (i = 0; i < SV_COMM_LEN - 1 && src[i]; i++)
		dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
	dst[i] = '\0';
}

static void describe_process(char *buf, size_t len, uint32_t tgid, uint32_t nspid,
			     const char *comm_raw)
{
	char comm[SV_COMM_LEN];

	clean_comm(comm, comm_raw);
	/* A process outside our namespace has no pid we could name to a user of it: give
	 * the host's, and say so. */
	if (nspid)
		snprintf(buf, len, "pid %u (%s)", nspid, comm);
	else
		snprintf(buf, len, "host pid %u (%s)", tgid, comm);
}

static const char *result_word(uint32_t result)
{
	switch (result) {
	case delivered:
		return "queued";
	case ignored:
		return "ignored";
	case coalesced:
		return "coalesced";
	case overflow:
		return "lost (real-time queue full)";
	case lose_info:
		return "queued without its siginfo";
	default:
		return "?";
	}
}

/* The registration gap: a process that neither handles nor blocks a signal whose
 * default action terminates it (USR1 to a worker whose framework reset the handler)
 * dies of it. Not said for the signals meant to end a process. */
static bool kills_unhandled(int sig)
{
	switch (sig) {
	case SIGKILL:
	case SIGTERM:
	case SIGINT:
	case SIGQUIT:
	case SIGCHLD:
	case SIGCONT:
	case SIGSTOP:
	case SIGTSTP:
	case SIGTTIN:
	case SIGTTOU:
	case SIGURG:
	case SIGWINCH:
		return false;
	default:
		return true;
	}
}

static void format_event(const struct sv_event *e, char *line, size_t len)
{
	char from[96], to[96], held[64] = "";
	const char *harm = "";

	describe_process(to, sizeof(to), e->target_tgid, e->target_nspid, e->target_comm);
	if (e->suppressed)
		snprintf(held, sizeof(held), " (%u similar before it not logged)", e->suppressed);
	if (e->kind == SV_EV_DELIVER) {
		snprintf(line, len, "signal %s to %s: default action, no handler%s",
			 signal_name((int)e->sig), to, held);
		return;
	}
	if (e->sender_tgid)
		describe_process(from, sizeof(from), e->sender_tgid, e->sender_nspid,
				 e->sender_comm);
	else
		snprintf(from, sizeof(from), "the kernel");
	if (e->result == delivered && e->target_handler == sig_dfl && !e->target_blocked &&
	    kills_unhandled((int)e->sig))
		harm = ", and it has no handler: the default action kills it";
	snprintf(line, len, "signal %s from %s to %s: %s%s%s", signal_name((int)e->sig), from, to,
		 result_word(e->result), harm, held);
}

static const char *serving_call(long nr)
{
	static const struct {
		long nr;
		const char *name;
	} calls[] = {
#ifdef SYS_accept
		{SYS_accept, "accept"},
#endif
#ifdef SYS_poll
		{SYS_poll, "poll"},
#endif
#ifdef SYS_select
		{SYS_select, "select"},
#endif
		{SYS_accept4, "accept4"}, {SYS_epoll_ctl, "epoll_ctl(ADD)"},
		{SYS_ppoll, "ppoll"},	  {SYS_pselect6, "pselect6"},
	};

	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++)
		if (calls[i].nr == nr)
			return calls[i].name;
	return "?";
}

/* sv_serving saw a process of a watched worker's tree serve: the entry is gone from
 * the map (the probe deleted it), so it is no longer watched. */
static void serving_event(struct bpf_probes *p, const struct sv_event *e)
{
	char how[128], comm[SV_COMM_LEN];

	clean_comm(comm, e->sender_comm);
	if (e->sender_nspid == e->target_nspid)
		snprintf(how, sizeof(how), "%s on fd %u", serving_call(e->sig), e->result);
	else
		snprintf(how, sizeof(how), "%s on fd %u in pid %u (%s)", serving_call(e->sig),
			 e->result, e->sender_nspid, comm);
	if (p->on_serving)
		p->on_serving(p->serving_ctx, (pid_t)e->target_nspid, how);
}

static int on_ring_event(void *ctx, void *data, size_t size)
{
	struct bpf_probes *p = ctx;
	char line[512];

	if (size < sizeof(struct sv_event))
		return 0;
	if (((const struct sv_event *)data)->kind == SV_EV_SERVING) {
		serving_event(p, data);
		return 0;
	}
	if (!p->on_event)
		return 0;
	format_event(data, line, sizeof(line));
	p->on_event(p->ctx, line);
	return 0;
}

/* What the probe needs to recognise us: our PID namespace as the kernel names it
 * (bpf_get_ns_current_pid_tgid() compares the kernel's dev_t encoding, not stat's)
 * and our pid in it. */
static int set_identity(struct bpf_probes *p, char *why, size_t whylen)
{
	struct stat st;

	if (stat("/proc/self/ns/pid", &st) < 0) {
		set_why(why, whylen, "cannot find our PID namespace (/proc/self/ns/pid): %s",
			strerror(errno));
		return -errno;
	}
	p->skel->rodata->self_ns_dev = ((uint64_t)major(st.st_dev) << 20) | minor(st.st_dev);
	p->skel->rodata->self_ns_ino = st.st_ino;
	p->skel->rodata->self_nspid = (uint32_t)getpid();
	p->skel->rodata->sigaction_nr = SYS_rt_sigaction;
#ifdef SYS_accept
	p->skel->rodata->accept_nr = SYS_accept;
#endif
#ifdef SYS_poll
	p->skel->rodata->poll_nr = SYS_poll;
#endif
#ifdef SYS_select
	p->skel->rodata->select_nr = SYS_select;
#endif
	p->skel->rodata->accept4_nr = SYS_accept4;
	p->skel->rodata->epoll_ctl_nr = SYS_epoll_ctl;
	p->skel->rodata->ppoll_nr = SYS_ppoll;
	p->skel->rodata->pselect6_nr = SYS_pselect6;
	return 0;
}

/* See sv_register in bpf/sigvisor.bpf.c: renaming ourselves to our own name fires
 * task_rename synchronously, so the answer is there when prctl returns. */
static int register_self(struct bpf_probes *p, char *why, size_t whylen)
{
	struct bpf_link *link = bpf_program__attach(p->skel->progs.sv_register);
	char comm[SV_COMM_LEN + 1] = "";
	int r = 0;

	if (!link) {
		r = -errno;
		set_why(why, whylen, "cannot attach the registration probe: %s", strerror(-r));
		return r;
	}
	if (prctl(PR_GET_NAME, comm) < 0 || prctl(PR_SET_NAME, comm) < 0)
		r = -errno;
	bpf_link__destroy(link);
	if (r < 0) {
		set_why(why, whylen, "cannot register with the probes (prctl): %s", strerror(-r));
		return r;
	}
	p->bss = p->skel->bss;
	p->self_tgid = (pid_t)__atomic_load_n(&p->bss->self_tgid, __ATOMIC_ACQUIRE);
	if (!p->self_tgid) {
		set_why(why, whylen, "the registration probe did not see us (task_rename)");
		return -ESRCH;
	}
	if (p->self_tgid != getpid())
		log_info("BPF: our pid on the host is %d", (int)p->self_tgid);
	return 0;
}

static int attach_one(struct bpf_program *prog, struct bpf_link **ret, char *why, size_t whylen)
{
	*ret = bpf_program__attach(prog);
	if (!*ret) {
		int r = -errno;

		set_why(why, whylen, "cannot attach %s: %s", bpf_program__name(prog), strerror(-r));
		return r;
	}
	return 0;
}

/* The reason in a verifier log: its last line that is not the closing statistics
 * ("processed 25 insns ...", "verification time ..."). */
static void last_log_line(const char *log, char *buf, size_t len)
{
	const char *end = log + strlen(log);

	buf[0] = '\0';
	while (end > log) {
		const char *start = end;
		size_t n;

		while (start > log && start[-1] != '\n')
			start--;
		n = (size_t)(end - start);
		while (n && (start[n - 1] == '\n' || start[n - 1] == ' '))
			n--;
		if (n && strncmp(start, "processed ", 10) != 0 &&
		    strncmp(start, "verification time", 17) != 0) {
			snprintf(buf, len, "%.*s", (int)n, start);
			return;
		}
		end = start > log ? start - 1 : log;
	}
}

/* SIGVISOR_TEST_BPF_REFUSE=sv_deliver,...: the test suite's way to make the verifier
 * refuse a program on a kernel that accepts them all. */
static unsigned refuse_from_env(void)
{
	const char *v = getenv("SIGVISOR_TEST_BPF_REFUSE");
	unsigned bits = 0;

	for (size_t i = 0; v && i < N_PROGS; i++) {
		const char *m = strstr(v, progs[i].name);
		size_t n = strlen(progs[i].name);

		if (m && (m[n] == '\0' || m[n] == ','))
			bits |= progs[i].refuse;
	}
	return bits;
}

static struct bpf_program *prog_by_name(struct sigvisor *s, const char *name)
{
	return bpf_object__find_program_by_name(s->obj, name);
}

/* The embedded object, opened to pin under pin_root (NULL: pins as libbpf's default,
 * which disable_pinning() turns off). NULL with errno. */
static struct sigvisor *open_object(const char *pin_root)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo);

	oo.pin_root_path = pin_root;
	return sigvisor__open_opts(&oo);
}

/* Open the embedded object into p->skel, pinning under p->pin_dir when we hold it.
 * 0, or <0 with why. */
static int open_skeleton(struct bpf_probes *p, char *why, size_t whylen)
{
	p->skel = open_object(p->pin_fd >= 0 ? p->pin_dir : NULL);
	if (!p->skel) {
		int r = -errno;

		set_why(why, whylen, "cannot open the BPF object: %s", strerror(-r));
		return r;
	}
	return 0;
}

/* One attempt: open the object, load the programs not in *skip. On a verifier refusal
 * *ret_refused is the program's index and log holds the kernel's reason. */
static int load_once(struct bpf_probes *p, unsigned skip, char *log, int *ret_refused, char *why,
		     size_t whylen)
{
	struct sigvisor *s;
	int r;

	*ret_refused = -1;
	r = open_skeleton(p, why, whylen);
	if (r < 0)
		return r;
	s = p->skel;
	if (p->pin_fd >= 0)
		remove_stale_pins(p);
	else
		disable_pinning(p);
	r = set_identity(p, why, whylen);
	if (r < 0)
		return r;
	s->rodata->refuse = refuse_from_env();
	r = bpf_map__set_max_entries(s->maps.events, p->ring_bytes);
	if (r < 0) {
		set_why(why, whylen, "cannot size the BPF ring buffer: %s", strerror(-r));
		return r;
	}
	for (size_t i = 0; i < N_PROGS; i++) {
		struct bpf_program *prog = prog_by_name(s, progs[i].name);

		if (!prog) {
			set_why(why, whylen, "the BPF object has no program %s", progs[i].name);
			return -ENOENT;
		}
		if (skip & (1u << i)) {
			bpf_program__set_autoload(prog, false);
			continue;
		}
		/* Each its own buffer: the one that is written to names the refused
		 * program (libbpf asks for a log only when a load failed). */
		log[i * VERIFIER_LOG_BYTES] = '\0';
		bpf_program__set_log_buf(prog, log + i * VERIFIER_LOG_BYTES, VERIFIER_LOG_BYTES);
	}
	libbpf_loading = true;
	libbpf_last_warning[0] = '\0';
	r = sigvisor__load(s);
	libbpf_loading = false;
	if (r < 0) {
		for (size_t i = 0; i < N_PROGS; i++)
			if (!(skip & (1u << i)) && log[i * VERIFIER_LOG_BYTES])
				*ret_refused = (int)i;
		if (*ret_refused < 0)
			set_why(why, whylen, "the kernel refused to load them: %s%s%s%s",
				strerror(-r), libbpf_last_warning[0] ? " (libbpf: " : "",
				libbpf_last_warning, libbpf_last_warning[0] ? ")" : "");
	}
	return r;
}

/* Load what this kernel's verifier accepts. A refused optional program is left out
 * (its part is off, and says why) and the rest loaded again: libbpf loads an object
 * once, all or nothing. A refused essential program leaves the probes off with the
 * verifier's own reason, never "Permission denied" (the errno it comes with). */
static int load_programs(struct bpf_probes *p, char *why, size_t whylen)
{
	unsigned skip = 0;
	char *log;
	int r;

	/* With --bpf-sigaction off the program that costs every syscall on the host is
	 * not even loaded. */
	for (size_t i = 0; i < N_PROGS; i++)
		if (progs[i].part == BPF_PART_SIGACTION && !p->sigaction) {
			skip |= 1u << i;
			set_why(p->part_why[BPF_PART_SIGACTION], BPF_WHY_LEN,
				"--bpf-sigaction off");
		}
	log = calloc(N_PROGS, VERIFIER_LOG_BYTES);
	if (!log) {
		set_why(why, whylen, "out of memory for the verifier's log");
		return -ENOMEM;
	}
	for (;;) {
		char reason[200];
		int refused;

		r = load_once(p, skip, log, &refused, why, whylen);
		if (r >= 0 || refused < 0)
			break;
		last_log_line(log + (size_t)refused * VERIFIER_LOG_BYTES, reason, sizeof(reason));
		if (progs[refused].part == BPF_PART_SIGNALS) {
			set_why(why, whylen,
				"the kernel's verifier refused program %s: %s (run with --bpf off "
				"to go without the probes)",
				progs[refused].name, reason[0] ? reason : strerror(-r));
			break;
		}
		set_why(p->part_why[progs[refused].part], BPF_WHY_LEN,
			"the kernel's verifier refused program %s: %s", progs[refused].name,
			reason[0] ? reason : strerror(-r));
		log_warn("BPF: the %s %s is off: %s", part_names[progs[refused].part],
			 progs[refused].part == BPF_PART_ADOPT ? "iterator" : "counter",
			 p->part_why[progs[refused].part]);
		skip |= 1u << refused;
		sigvisor__destroy(p->skel);
		p->skel = NULL;
	}
	free(log);
	return r;
}

static void prepare_pins(struct bpf_probes *p, const struct bpf_options *opt)
{
	char pin_why[256] = "";
	int r;

	if (!opt->pin_dir || !opt->pin_dir[0])
		return;
	r = ensure_bpffs(opt->pin_dir, pin_why, sizeof(pin_why));
	if (r == 0)
		r = lock_pin_dir(p, opt->pin_dir, pin_why, sizeof(pin_why));
	if (r < 0) {
		log_warn("BPF maps not pinned, counting for status only: %s", pin_why);
		snprintf(p->pin_why, sizeof(p->pin_why), "%s", pin_why);
	}
}

/* Track the processes of the tree forked before sv_fork was attached (see sv_adopt):
 * running the iterator is reading it. */
static void adopt_existing(struct bpf_probes *p)
{
	struct bpf_link *link;
	char buf[64];
	int fd;

	if (p->part_why[BPF_PART_ADOPT][0])
		return;
	link = bpf_program__attach_iter(p->skel->progs.sv_adopt, NULL);
	if (!link) {
		log_warn("BPF: cannot run the adoption iterator, ignoring: %m");
		return;
	}
	fd = bpf_iter_create(bpf_link__fd(link));
	if (fd >= 0) {
		while (read(fd, buf, sizeof(buf)) > 0)
			;
		close(fd);
	} else {
		log_warn("BPF: cannot run the adoption iterator, ignoring: %s", strerror(-fd));
	}
	bpf_link__destroy(link);
}

/* In the loop's thread: register, attach (the tree first, then the counters) and open
 * the ring buffer of a loaded object. */
static int attach_all(struct bpf_probes *p, char *why, size_t whylen)
{
	struct sigvisor *s = p->skel;
	int r;

	if (!s->bss) {
		set_why(why, whylen, "the kernel cannot map BPF global data");
		return -ENOTSUP;
	}
	r = register_self(p, why, whylen);
	if (r < 0)
		return r;
	if ((r = attach_one(s->progs.sv_fork, &s->links.sv_fork, why, whylen)) < 0 ||
	    (r = attach_one(s->progs.sv_exit, &s->links.sv_exit, why, whylen)) < 0)
		return r;
	adopt_existing(p);
	if ((r = attach_one(s->progs.sv_generate, &s->links.sv_generate, why, whylen)) < 0)
		return r;
	if (!p->part_why[BPF_PART_DELIVERIES][0] &&
	    (r = attach_one(s->progs.sv_deliver, &s->links.sv_deliver, why, whylen)) < 0)
		return r;
	if (!p->part_why[BPF_PART_SIGACTION][0] &&
	    (r = attach_one(s->progs.sv_sys_enter, &s->links.sv_sys_enter, why, whylen)) < 0)
		return r;

	p->rb = ring_buffer__new(bpf_map__fd(s->maps.events), on_ring_event, p, NULL);
	if (!p->rb) {
		r = -errno;
		set_why(why, whylen, "cannot open the BPF ring buffer: %s", strerror(-r));
		return r;
	}
	if (!p->part_why[BPF_PART_SERVING][0])
		p->serving_prog_fd = bpf_program__fd(s->progs.sv_serving);
	if (p->serving_prog_fd < 0)
		p->serving_prog_fd = -1;
	return 0;
}

static void *loader_main(void *arg)
{
	struct bpf_probes *p = arg;
	uint64_t one = 1;

	p->load_r = load_programs(p, p->load_why, sizeof(p->load_why));
	(void)!write(p->loaded_fd, &one, sizeof(one));
	return NULL;
}

/* The ring holds what the arbiter has not read yet. Events are rate-limited per
 * process and signal, so the burst to plan for is one signal to every worker at once
 * (a shutdown's TERM to all, a USR1): two events each, with room to spare. Its pages
 * are mapped twice into the arbiter (the kernel's wrap-around trick) and count in its
 * RSS: 64 KiB for a small pool rather than a fixed 256 KiB. Drops are counted. */
static uint32_t ring_bytes(unsigned workers)
{
	uint64_t want = (uint64_t)workers * 2 * (sizeof(struct sv_event) + 8) * 2;
	uint32_t size = SV_RINGBUF_BYTES;

	while (size < want && size < (4u << 20))
		size <<= 1;
	return size;
}

/* ---- keeping the probes across a USR2 exec ------------------------------------------- */

/* The handover's format, in the upgrade state: one line with every fd,
 *   bpf 1 IDENTITY tgid=N sigaction=0|1 map.NAME=FD ... link.PROG=FD ... prog.sv_serving=FD
 *       pin=DIR
 * (pin last: the rest of the line) and a line for each part that is off,
 *   bpfwhy PART REASON */
#define HANDOVER_VERSION 1

static size_t bss_map_bytes(void)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return (sizeof(struct sigvisor__bss) + page - 1) / page * page;
}

uint64_t bpf_probes_identity(void)
{
	size_t n = 0;
	const unsigned char *b = sigvisor__elf_bytes(&n);
	/* What the loader bakes into .rodata that may differ between two binaries of the
	 * same object (the rest is our pid and namespace, which an exec keeps). */
	const uint64_t extra[] = {HANDOVER_VERSION, refuse_from_env(), sizeof(struct sigvisor__bss),
				  SYS_rt_sigaction, SV_RINGBUF_BYTES};
	uint64_t h = 14695981039346656037ULL; /* FNV-1a */

	for (size_t i = 0; b && i < n; i++)
		h = (h ^ b[i]) * 1099511628211ULL;
	for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++)
		for (unsigned k = 0; k < 8; k++)
			h = (h ^ ((extra[i] >> (8 * k)) & 0xff)) * 1099511628211ULL;
	return h ? h : 1;
}

/* The "bpf " line of a handover, or NULL. */
static const char *handover_line(const char *state)
{
	for (const char *l = state; l && *l;) {
		if (strncmp(l, "bpf ", 4) == 0)
			return l;
		l = strchr(l, '\n');
		l = l ? l + 1 : NULL;
	}
	return NULL;
}

/* Each fd of the line, in turn: *pos starts at 0. -1 at the end. */
static int next_handed_fd(const char *line, size_t *pos, char *name, size_t namelen)
{
	const char *l = line + *pos;

	while (*l && *l != '\n') {
		const char *tok = l, *eq;
		size_t len = strcspn(tok, " \n");

		l = tok + len;
		while (*l == ' ')
			l++;
		if (strncmp(tok, "pin=", 4) == 0)
			break;
		eq = memchr(tok, '=', len);
		if (!eq || !(strncmp(tok, "map.", 4) == 0 || strncmp(tok, "link.", 5) == 0 ||
			     strncmp(tok, "prog.", 5) == 0))
			continue;
		*pos = (size_t)(l - line);
		snprintf(name, namelen, "%.*s", (int)(eq - tok), tok);
		return atoi(eq + 1);
	}
	*pos = (size_t)(l - line);
	return -1;
}

/* The fd the line gives for key ("map.signals"), or -1. */
static int handed_fd(const char *line, const char *key)
{
	char name[64];
	size_t pos = 0;
	int fd;

	while ((fd = next_handed_fd(line, &pos, name, sizeof(name))) >= 0)
		if (strcmp(name, key) == 0)
			return fd;
	return -1;
}

void bpf_handover_cloexec(const char *state, bool on)
{
	const char *line = handover_line(state);
	char name[64];
	size_t pos = 0;
	int fd;

	while (line && (fd = next_handed_fd(line, &pos, name, sizeof(name))) >= 0)
		(void)fcntl(fd, F_SETFD, on ? FD_CLOEXEC : 0);
}

/* Unlink what the probes pin in dir (not ours to keep: the handed-over probes are being
 * let go), if no other sigvisor holds it. */
static void remove_pins_in(const char *dir, bool locked)
{
	struct sigvisor *s;
	struct bpf_map *map;
	int fd = -1;

	if (!dir[0])
		return;
	if (!locked) {
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
			if (fd >= 0)
				close(fd);
			return;
		}
	}
	s = open_object(dir);
	if (s) {
		bpf_object__for_each_map(map, s->obj)
		{
			const char *path = bpf_map__pin_path(map);

			if (path)
				(void)unlink(path);
		}
		sigvisor__destroy(s);
	}
	if (fd >= 0) {
		(void)rmdir(dir);
		close(fd);
	}
}

/* The handed-over probes are not kept: detach them (closing the links does), close the
 * maps, remove their pins. pin_dir: the directory we hold, if any. */
static void drop_handover(const char *state, const char *pin_dir)
{
	const char *line = handover_line(state), *pin;
	char name[64];
	size_t pos = 0;
	int fd;

	if (!line)
		return;
	while ((fd = next_handed_fd(line, &pos, name, sizeof(name))) >= 0)
		(void)close(fd);
	pin = strstr(line, " pin=");
	if (pin) {
		char dir[PATH_MAX];

		pin += 5;
		snprintf(dir, sizeof(dir), "%.*s", (int)strcspn(pin, "\n"), pin);
		remove_pins_in(dir, pin_dir && strcmp(pin_dir, dir) == 0);
	}
}

static void unadopt(struct bpf_probes *p)
{
	ring_buffer__free(p->rb);
	p->rb = NULL;
	if (p->bss)
		munmap(p->bss, bss_map_bytes());
	p->bss = NULL;
	sigvisor__destroy(p->skel); /* closes its duplicates of the maps */
	p->skel = NULL;
	for (size_t i = 0; i < sizeof(p->kept_link) / sizeof(p->kept_link[0]); i++)
		p->kept_link[i] = -1; /* still the state's: drop_handover() closes them */
	p->serving_prog_fd = -1;
	p->adopted = false;
	memset(p->part_why, 0, sizeof(p->part_why));
}

static bool is_link(int fd)
{
	struct bpf_link_info info;
	__u32 len = sizeof(info);

	memset(&info, 0, sizeof(info));
	return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && info.prog_id;
}

static bool is_prog(int fd, const char *name)
{
	struct bpf_prog_info info;
	__u32 len = sizeof(info);

	memset(&info, 0, sizeof(info));
	return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && strcmp(info.name, name) == 0;
}

/* Take over the probes the image before this USR2 ran (bpf_probes_handover): the same
 * maps, the programs still attached, nothing loaded or verified. 0, or <0 with why. */
static int adopt(struct bpf_probes *p, const struct bpf_options *opt, char *why, size_t whylen)
{
	const char *line = handover_line(opt->handover), *pin, *l;
	unsigned version = 0;
	unsigned long long identity = 0;
	int tgid = 0, sigaction = -1, n = 0, r;
	struct sigvisor *s;
	char key[64];
	uint32_t wkey, wnext;
	bool more;

	if (!line ||
	    sscanf(line, "bpf %u %llx tgid=%d sigaction=%d%n", &version, &identity, &tgid,
		   &sigaction, &n) < 4 ||
	    !n) {
		set_why(why, whylen, "the handover is not one this image reads");
		return -EINVAL;
	}
	if (version != HANDOVER_VERSION || identity != bpf_probes_identity()) {
		set_why(why, whylen, "this binary carries other probes");
		return -ESTALE;
	}
	if ((sigaction != 0) != opt->sigaction) {
		set_why(why, whylen, "--bpf-sigaction changed");
		return -EINVAL;
	}
	pin = strstr(line, " pin=");
	if (!pin || strncmp(pin + 5, p->pin_dir, strlen(p->pin_dir)) != 0 ||
	    (pin[5 + strlen(p->pin_dir)] != '\n' && pin[5 + strlen(p->pin_dir)] != '\0')) {
		set_why(why, whylen, "the pin directory changed");
		return -EINVAL;
	}
	r = open_skeleton(p, why, whylen);
	if (r < 0)
		return r;
	s = p->skel;
	if (p->pin_fd < 0)
		disable_pinning(p);
	for (int i = 0; i < s->skeleton->map_cnt; i++) {
		struct bpf_map *map = *s->skeleton->maps[i].map;
		unsigned type = bpf_map__type(map), ksz = bpf_map__key_size(map),
			 vsz = bpf_map__value_size(map);
		int fd;

		snprintf(key, sizeof(key), "map.%s", s->skeleton->maps[i].name);
		fd = handed_fd(line, key);
		if (fd < 0) {
			set_why(why, whylen, "no map %s in the handover",
				s->skeleton->maps[i].name);
			goto fail_inval;
		}
		r = bpf_map__reuse_fd(map, fd);
		if (r < 0 || bpf_map__type(map) != type || bpf_map__key_size(map) != ksz ||
		    bpf_map__value_size(map) != vsz) {
			set_why(why, whylen, "the handed-over map %s does not fit: %s",
				s->skeleton->maps[i].name, r < 0 ? strerror(-r) : "another shape");
			goto fail_inval;
		}
	}
	p->bss = mmap(NULL, bss_map_bytes(), PROT_READ | PROT_WRITE, MAP_SHARED,
		      bpf_map__fd(s->maps.bss), 0);
	if (p->bss == MAP_FAILED) {
		p->bss = NULL;
		set_why(why, whylen, "cannot map the probes' counters: %s", strerror(errno));
		goto fail_inval;
	}
	p->self_tgid = (pid_t)__atomic_load_n(&p->bss->self_tgid, __ATOMIC_ACQUIRE);
	if (!p->self_tgid || p->self_tgid != tgid) {
		set_why(why, whylen, "the handed-over probes do not know us");
		goto fail_inval;
	}
	for (l = opt->handover; l && *l;) {
		char part[32];
		int k = 0;

		if (sscanf(l, "bpfwhy %31s %n", part, &k) == 1 && k)
			for (int i = 0; i < BPF_PART_MAX; i++)
				if (strcmp(part, part_names[i]) == 0)
					snprintf(p->part_why[i], BPF_WHY_LEN, "%.*s",
						 (int)strcspn(l + k, "\n"), l + k);
		l = strchr(l, '\n');
		l = l ? l + 1 : NULL;
	}
	for (size_t i = 0; i < N_PROGS; i++) {
		int fd;

		if (progs[i].part == BPF_PART_SERVING || progs[i].part == BPF_PART_ADOPT ||
		    strcmp(progs[i].name, "sv_register") == 0)
			continue;
		snprintf(key, sizeof(key), "link.%s", progs[i].name);
		fd = handed_fd(line, key);
		if (fd < 0 && !p->part_why[progs[i].part][0]) {
			set_why(why, whylen, "%s is not attached", progs[i].name);
			goto fail_inval;
		}
		if (fd >= 0 && !is_link(fd)) {
			set_why(why, whylen, "the handed-over link of %s is not one",
				progs[i].name);
			goto fail_inval;
		}
		p->kept_link[i] = fd;
	}
	if (!p->part_why[BPF_PART_SERVING][0]) {
		int fd = handed_fd(line, "prog.sv_serving");

		if (fd >= 0 && is_prog(fd, "sv_serving"))
			p->serving_prog_fd = fd;
		else
			set_why(p->part_why[BPF_PART_SERVING], BPF_WHY_LEN,
				"the image before the upgrade did not hand sv_serving over");
	}
	p->rb = ring_buffer__new(bpf_map__fd(s->maps.events), on_ring_event, p, NULL);
	if (!p->rb) {
		r = -errno;
		set_why(why, whylen, "cannot open the BPF ring buffer: %s", strerror(-r));
		goto fail;
	}
	/* Workers the image before was waiting on are not ours to watch. */
	r = bpf_map__fd(s->maps.serving_wait);
	for (more = bpf_map_get_next_key(r, NULL, &wkey) == 0; more; wkey = wnext) {
		more = bpf_map_get_next_key(r, &wkey, &wnext) == 0;
		(void)bpf_map_delete_elem(r, &wkey);
	}
	/* Ours now: the maps were duplicated by the skeleton, the links and sv_serving's
	 * program stay as they are, close-on-exec. */
	for (int i = 0; i < s->skeleton->map_cnt; i++) {
		snprintf(key, sizeof(key), "map.%s", s->skeleton->maps[i].name);
		(void)close(handed_fd(line, key));
	}
	for (size_t i = 0; i < N_PROGS; i++)
		if (p->kept_link[i] >= 0)
			(void)fcntl(p->kept_link[i], F_SETFD, FD_CLOEXEC);
	if (p->serving_prog_fd >= 0)
		(void)fcntl(p->serving_prog_fd, F_SETFD, FD_CLOEXEC);
	/* Any fd the line names that we did not take goes. */
	for (size_t pos = 0; (r = next_handed_fd(line, &pos, key, sizeof(key))) >= 0;) {
		bool taken = r == p->serving_prog_fd;

		for (size_t i = 0; i < N_PROGS; i++)
			taken = taken || r == p->kept_link[i];
		if (!taken && strncmp(key, "map.", 4) != 0)
			(void)close(r);
	}
	p->adopted = true;
	p->sigaction = opt->sigaction;
	return 0;
fail_inval:
	r = -EINVAL;
fail:
	unadopt(p);
	return r;
}

bool bpf_probes_adopted(const struct bpf_probes *p)
{
	return p && p->adopted;
}

/* The link of progs[i] that is attached now, or -1. */
static int link_fd(const struct bpf_probes *p, size_t i)
{
	const struct bpf_object_skeleton *sk = p->skel->skeleton;

	if (p->kept_link[i] >= 0)
		return p->kept_link[i];
	for (int j = 0; j < sk->prog_cnt; j++)
		if (strcmp(sk->progs[j].name, progs[i].name) == 0 && *sk->progs[j].link)
			return bpf_link__fd(*sk->progs[j].link);
	return -1;
}

static int hand(struct bpf_probes *p, int fd)
{
	if (fd < 0 || p->n_handed >= sizeof(p->handed) / sizeof(p->handed[0]) ||
	    fcntl(fd, F_SETFD, 0) < 0)
		return -EBADF;
	p->handed[p->n_handed++] = fd;
	return 0;
}

int bpf_probes_handover(struct bpf_probes *p, FILE *f)
{
	const struct bpf_object_skeleton *sk;
	int r = 0;

	if (!p || p->loading || !p->rb || !p->skel || !p->bss)
		return -ENODEV;
	sk = p->skel->skeleton;
	p->n_handed = 0;
	fprintf(f, "bpf %d %llx tgid=%d sigaction=%d", HANDOVER_VERSION,
		(unsigned long long)bpf_probes_identity(), (int)p->self_tgid, p->sigaction ? 1 : 0);
	for (int i = 0; i < sk->map_cnt && r == 0; i++) {
		int fd = bpf_map__fd(*sk->maps[i].map);

		r = hand(p, fd);
		fprintf(f, " map.%s=%d", sk->maps[i].name, fd);
	}
	for (size_t i = 0; i < N_PROGS && r == 0; i++) {
		int fd = link_fd(p, i);

		if (fd >= 0 && progs[i].part != BPF_PART_SERVING) {
			r = hand(p, fd);
			fprintf(f, " link.%s=%d", progs[i].name, fd);
		}
	}
	if (r == 0 && p->serving_prog_fd >= 0 && !p->part_why[BPF_PART_SERVING][0]) {
		r = hand(p, p->serving_prog_fd);
		fprintf(f, " prog.sv_serving=%d", p->serving_prog_fd);
	}
	fprintf(f, " pin=%s\n", p->pin_dir);
	for (int i = 0; i < BPF_PART_MAX; i++)
		if (p->part_why[i][0])
			fprintf(f, "bpfwhy %s %s\n", part_names[i], p->part_why[i]);
	if (r < 0 || ferror(f)) {
		bpf_probes_handover_undo(p);
		return r < 0 ? r : -EIO;
	}
	return 0;
}

void bpf_probes_handover_undo(struct bpf_probes *p)
{
	if (!p)
		return;
	for (unsigned i = 0; i < p->n_handed; i++)
		(void)fcntl(p->handed[i], F_SETFD, FD_CLOEXEC);
	p->n_handed = 0;
}

bool bpf_probes_load_done(const struct bpf_probes *p)
{
	struct pollfd pfd = {.fd = p ? p->loaded_fd : -1, .events = POLLIN};

	return p && (!p->loading || poll(&pfd, 1, 0) == 1);
}

int bpf_probes_open(struct bpf_probes **ret, const struct bpf_options *opt, char *why,
		    size_t whylen)
{
	struct bpf_probes *p;
	int r;

	*ret = NULL;
	why[0] = '\0';
	if (opt->mode == BPF_OFF) {
		drop_handover(opt->handover, NULL);
		set_why(why, whylen, "--bpf off");
		return 1;
	}
	r = check_permitted(why, whylen);
	if (r < 0) {
		drop_handover(opt->handover, NULL);
		return opt->mode == BPF_ON ? r : 1;
	}

	libbpf_set_print(print_libbpf);
	p = calloc(1, sizeof(*p));
	if (!p) {
		set_why(why, whylen, "out of memory");
		return opt->mode == BPF_ON ? -ENOMEM : 1;
	}
	p->pin_fd = -1;
	p->loaded_fd = -1;
	p->serving_prog_fd = p->serving_link_fd = -1;
	for (size_t i = 0; i < sizeof(p->kept_link) / sizeof(p->kept_link[0]); i++)
		p->kept_link[i] = -1;
	p->ring_bytes = ring_bytes(opt->workers);
	p->sigaction = opt->sigaction;
	p->on_event = opt->on_event;
	p->ctx = opt->ctx;
	prepare_pins(p, opt);
	if (opt->handover) {
		char kept_why[256];

		/* A USR2 from an image with the same probes: keep them, attached all along. */
		if (adopt(p, opt, kept_why, sizeof(kept_why)) == 0) {
			*ret = p;
			return 0;
		}
		log_info("BPF: not keeping the probes of the image before the upgrade (%s), "
			 "loading them again",
			 kept_why);
		drop_handover(opt->handover, p->pin_fd >= 0 ? p->pin_dir : NULL);
	}
	if (opt->mode == BPF_AUTO) {
		/* The workers do not wait for the verifier: see struct bpf_probes. Signals
		 * are blocked in every thread (the mask is inherited). */
		p->loaded_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (p->loaded_fd >= 0) {
			p->loading = true; /* the thread starts at bpf_probes_start_loading */
			*ret = p;
			return 0;
		}
		log_debug("cannot load the BPF probes in a thread, loading them now: %m");
	}
	r = load_programs(p, why, whylen);
	if (r == 0)
		r = attach_all(p, why, whylen);
	if (r < 0) {
		bpf_probes_close(p);
		(void)malloc_trim(0);
		return opt->mode == BPF_ON ? r : 1;
	}
	/* Parsing the object and the kernel's BTF for CO-RE left the heap large and
	 * mostly free: give it back, the arbiter will not need it. */
	(void)malloc_trim(0);
	*ret = p;
	return 0;
}

bool bpf_probes_loading(const struct bpf_probes *p)
{
	return p && p->loading;
}

void bpf_probes_start_loading(struct bpf_probes *p)
{
	uint64_t one = 1;

	if (!p || !p->loading || p->started)
		return;
	p->started = true;
	/* One malloc arena: a thread's own arena keeps a few hundred KiB resident after
	 * the thread is gone, where malloc_trim gives the main one's back. */
	(void)mallopt(M_ARENA_MAX, 1);
	if (pthread_create(&p->loader, NULL, loader_main, p) == 0)
		return;
	log_debug("cannot load the BPF probes in a thread, loading them in the loop: %m");
	p->started = false; /* bpf_probes_finish() loads them */
	(void)!write(p->loaded_fd, &one, sizeof(one));
}

bool bpf_probes_abandon(const struct bpf_probes *p)
{
	if (!p || !p->loading || !p->started || bpf_probes_load_done(p))
		return false;
	log_info("exiting without waiting for the BPF verifier, which is still loading the "
		 "probes (the next arbiter removes any map it pinned)");
	return true;
}

static void join_loader(struct bpf_probes *p)
{
	if (!p->loading)
		return;
	if (p->started)
		pthread_join(p->loader, NULL);
	p->started = false;
	p->loading = false;
	close(p->loaded_fd);
	p->loaded_fd = -1;
}

int bpf_probes_finish(struct bpf_probes *p, char *why, size_t whylen)
{
	int r;

	/* never started: the loop could not wait for it, or there was no thread */
	if (p->loading && !p->started)
		p->load_r = load_programs(p, p->load_why, sizeof(p->load_why));
	join_loader(p);
	r = p->load_r;
	if (r < 0)
		set_why(why, whylen, "%s", p->load_why);
	else
		r = attach_all(p, why, whylen);
	(void)malloc_trim(0);
	return r;
}

int bpf_probes_fd(const struct bpf_probes *p)
{
	if (p && p->loading)
		return p->loaded_fd;
	return p && p->rb ? ring_buffer__epoll_fd(p->rb) : -1;
}

void bpf_probes_poll(struct bpf_probes *p)
{
	int r;

	if (!p || !p->rb)
		return;
	r = ring_buffer__consume(p->rb);
	if (r < 0)
		log_warn("reading BPF events, ignoring: %s", strerror(-r));
}

int bpf_probes_self_stats(struct bpf_probes *p, int sig, struct bpf_signal_stats *ret)
{
	const __u64 *c;

	if (!p || p->loading || !p->rb)
		return -ENODEV;
	if (sig <= 0 || sig > SV_MAX_SIG)
		return -EINVAL;
	/* .bss is mmap'ed: no system call, and the probes add atomically. */
	c = p->bss->self_counts[sig];
	ret->queued = __atomic_load_n(&c[delivered], __ATOMIC_RELAXED);
	ret->ignored = __atomic_load_n(&c[ignored], __ATOMIC_RELAXED);
	ret->coalesced = __atomic_load_n(&c[coalesced], __ATOMIC_RELAXED);
	ret->overflow = __atomic_load_n(&c[overflow], __ATOMIC_RELAXED);
	ret->lose_info = __atomic_load_n(&c[lose_info], __ATOMIC_RELAXED);
	ret->generated =
		ret->queued + ret->ignored + ret->coalesced + ret->overflow + ret->lose_info;
	return 0;
}

void bpf_probes_event_stats(const struct bpf_probes *p, uint64_t *ret_suppressed,
			    uint64_t *ret_dropped)
{
	*ret_suppressed = *ret_dropped = 0;
	if (!p || p->loading || !p->bss)
		return;
	*ret_suppressed = __atomic_load_n(&p->bss->events_suppressed, __ATOMIC_RELAXED);
	*ret_dropped = __atomic_load_n(&p->bss->events_dropped, __ATOMIC_RELAXED);
}

pid_t bpf_probes_self_tgid(const struct bpf_probes *p)
{
	return p ? p->self_tgid : 0;
}

const char *bpf_probes_pin_dir(const struct bpf_probes *p)
{
	return p ? p->pin_dir : "";
}

const char *bpf_probes_pin_why(const struct bpf_probes *p)
{
	return p ? p->pin_why : "";
}

const char *bpf_probes_part_off(const struct bpf_probes *p, enum bpf_part part)
{
	if (!p || part < 0 || part >= BPF_PART_MAX)
		return "the probes are off";
	if (p->loading)
		return "the probes are loading";
	return p->part_why[part][0] ? p->part_why[part] : NULL;
}

const char *bpf_part_name(enum bpf_part part)
{
	return part >= 0 && part < BPF_PART_MAX ? part_names[part] : "?";
}

static void close_kept(struct bpf_probes *p)
{
	for (size_t i = 0; i < sizeof(p->kept_link) / sizeof(p->kept_link[0]); i++)
		if (p->kept_link[i] >= 0) {
			close(p->kept_link[i]); /* detaches it */
			p->kept_link[i] = -1;
		}
}

void bpf_probes_close(struct bpf_probes *p)
{
	if (!p)
		return;
	join_loader(p);
	if (p->serving_link_fd >= 0)
		close(p->serving_link_fd);
	ring_buffer__free(p->rb);
	close_kept(p);
	if (p->adopted && p->serving_prog_fd >= 0)
		close(p->serving_prog_fd);
	if (p->skel) {
		if (p->bss) {
			uint64_t held = p->bss->events_suppressed;
			uint64_t lost = p->bss->events_dropped;

			if (held || lost)
				log_info("BPF events: %llu not logged (over %d a second for one "
					 "process and signal), %llu lost (ring buffer full); the "
					 "counts include them",
					 (unsigned long long)held, SV_EVENTS_PER_SEC,
					 (unsigned long long)lost);
		}
		if (p->pin_fd >= 0)
			unpin_maps(p);
		if (p->adopted && p->bss)
			munmap(p->bss, bss_map_bytes());
		sigvisor__destroy(p->skel); /* detaches every link, closes every fd */
	}
	release_pin_dir(p);
	free(p);
}

/* ---- readiness by serving ----------------------------------------------------------- */

static bool serving_usable(const struct bpf_probes *p)
{
	return p && !p->loading && p->rb && p->serving_prog_fd >= 0 &&
	       !p->part_why[BPF_PART_SERVING][0];
}

bool bpf_probes_serving(const struct bpf_probes *p)
{
	return serving_usable(p);
}

void bpf_probes_serving_callback(struct bpf_probes *p,
				 void (*cb)(void *ctx, pid_t pid, const char *how), void *ctx)
{
	if (!p)
		return;
	p->on_serving = cb;
	p->serving_ctx = ctx;
}

int bpf_probes_serving_sockets(struct bpf_probes *p, const uint64_t *inodes, size_t n)
{
	int fd;
	uint64_t key, next;
	uint32_t one = 1;
	bool more;

	if (!serving_usable(p))
		return -ENODEV;
	fd = bpf_map__fd(p->skel->maps.serving_socks);
	/* Replace the set: delete what is there, then add. A worker watched meanwhile
	 * may miss a call on a socket that stays; the look at /proc still sees it. */
	for (more = bpf_map_get_next_key(fd, NULL, &key) == 0; more; key = next) {
		more = bpf_map_get_next_key(fd, &key, &next) == 0;
		(void)bpf_map_delete_elem(fd, &key);
	}
	for (size_t i = 0; i < n && i < SV_MAX_SERVING_SOCKS; i++)
		if (bpf_map_update_elem(fd, &inodes[i], &one, BPF_ANY) < 0)
			return -errno;
	return 0;
}

int bpf_probes_serving_watch(struct bpf_probes *p, pid_t pid)
{
	uint32_t key = (uint32_t)pid, one = 1;

	if (!serving_usable(p))
		return -ENODEV;
	if (bpf_map_update_elem(bpf_map__fd(p->skel->maps.serving_wait), &key, &one, BPF_ANY) < 0)
		return -errno;
	if (p->serving_link_fd < 0) {
		/* Attached only while needed: it sits on every system call of the host. */
		p->serving_link_fd = bpf_raw_tracepoint_open(NULL, p->serving_prog_fd);
		if (p->serving_link_fd < 0) {
			int r = p->serving_link_fd;

			p->serving_link_fd = -1;

			(void)bpf_map_delete_elem(bpf_map__fd(p->skel->maps.serving_wait), &key);
			set_why(p->part_why[BPF_PART_SERVING], BPF_WHY_LEN,
				"cannot attach sv_serving: %s", strerror(-r));
			log_warn("BPF: the serving probe is off: %s",
				 p->part_why[BPF_PART_SERVING]);
			return r;
		}
	}
	p->serving_watched++;
	return 0;
}

void bpf_probes_serving_unwatch(struct bpf_probes *p, pid_t pid)
{
	uint32_t key = (uint32_t)pid;

	if (!p || !p->skel || !p->serving_watched)
		return;
	(void)bpf_map_delete_elem(bpf_map__fd(p->skel->maps.serving_wait), &key);
	if (--p->serving_watched == 0 && p->serving_link_fd >= 0) {
		close(p->serving_link_fd);
		p->serving_link_fd = -1;
	}
}
