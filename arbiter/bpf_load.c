/* Loading the probes and attaching them: the embedded object opened, what the arbiter
 * bakes into it set (our identity, the syscall numbers, the ring's size), the programs
 * the kernel's verifier refuses left out with its reason (their part is off), then in
 * the loop the arbiter registered and the programs attached in the order of
 * probes_progs[]. With --bpf auto the loading runs in a child process (the loader)
 * while the workers start, and the loop adopts what it loaded (bpf_probes_finish). */
#include "bpf_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "log.h"
#include "sigvisor_bpf.h"
#include "sigvisor.skel.h"

/* A verifier log for one refused program: big enough that the kernel's last line,
 * the reason, fits (kernels before 6.4 keep the head of a log that overflows, not its
 * tail). Allocated only while loading: untouched pages cost no memory. */
#define VERIFIER_LOG_BYTES (1u << 20)

#ifndef P_PIDFD
#define P_PIDFD 3 /* glibc 2.36 does not define it */
#endif

/* While the programs load, libbpf's warnings are kept back: for a program the
 * verifier refused they say "Permission denied" (the errno of the refusal), and the
 * loader says what the verifier said instead. The last one is kept for a failure
 * that is not a refusal. */
static bool libbpf_loading;
static char libbpf_last_warning[200];

/* The loader child of the arbiter: one at a time, reaped through its pidfd
 * (bpf_probes_reap) even when the probes it loaded for are gone. */
static struct {
	pid_t pid;
	int pidfd;
	bool killed;
} loader = {.pidfd = -1};

/* libbpf's messages go through our log: its warnings as warnings, the rest (the
 * verifier's chatter) at debug level. */
__attribute__((format(printf, 2, 0))) int probes_print_libbpf(enum libbpf_print_level level,
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
	probes_log(level == LIBBPF_WARN ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG, "libbpf: %s", text);
	return n;
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
	p->skel->rodata->self_nspid = (uint32_t)p->nspid; /* the arbiter's, not the loader's */
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

static int register_self(struct bpf_probes *p, struct bpf_program *prog, char *why, size_t whylen)
{
	struct bpf_link *link = bpf_program__attach(prog);
	int r;

	if (!link) {
		r = -errno;
		set_why(why, whylen, "cannot attach the registration probe: %s", strerror(-r));
		return r;
	}
	p->bss = p->skel->bss;
	r = probes_register(p, bpf_link__fd(link), why, whylen);
	bpf_link__destroy(link);
	return r;
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

static struct bpf_program *prog_by_name(struct sigvisor *s, const char *name)
{
	return bpf_object__find_program_by_name(s->obj, name);
}

/* One attempt: open the object, load the programs not in *skip. On a verifier refusal
 * *ret_refused is the program's index and log holds the kernel's reason. */
static int load_once(struct bpf_probes *p, unsigned skip, char *log, int *ret_refused, char *why,
		     size_t whylen)
{
	struct sigvisor *s;
	int r;

	*ret_refused = -1;
	r = probes_open_skeleton(p, why, whylen);
	if (r < 0)
		return r;
	s = p->skel;
	if (p->pin_fd >= 0)
		probes_remove_stale_pins(p);
	else
		probes_disable_pinning(p);
	r = set_identity(p, why, whylen);
	if (r < 0)
		return r;
	s->rodata->refuse = probes_refuse_from_env();
	r = bpf_map__set_max_entries(s->maps.events, p->ring_bytes);
	if (r < 0) {
		set_why(why, whylen, "cannot size the BPF ring buffer: %s", strerror(-r));
		return r;
	}
	for (size_t i = 0; i < N_PROGS; i++) {
		struct bpf_program *prog = prog_by_name(s, probes_progs[i].name);

		if (!prog) {
			set_why(why, whylen, "the BPF object has no program %s",
				probes_progs[i].name);
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

/* Before 5.11 the kernel charges BPF maps and programs to RLIMIT_MEMLOCK (later ones
 * to the memory cgroup), and a container's default of 64 KiB is far too little: the
 * load then fails with a bare EPERM. libbpf raises the limit to infinity when it may,
 * silently does nothing when it may not (no CAP_SYS_RESOURCE), and never lowers it
 * again. So we do it ourselves, only on those kernels and only for the load: raise it
 * to infinity, or failing that the soft limit to the hard one, put it back once loaded
 * (what is charged stays charged) so that processes started later inherit the limit
 * they were given, and name the limit when it was too low. */
struct memlock {
	bool charged;	   /* the kernel charges RLIMIT_MEMLOCK */
	bool saved;	   /* old holds the limit to put back */
	struct rlimit old; /* the limit before the load */
	struct rlimit now; /* the limit during the load */
};

static bool kernel_charges_memlock(void)
{
	unsigned major = 0, minor = 0;
	struct utsname u;

	if (uname(&u) < 0 || sscanf(u.release, "%u.%u", &major, &minor) != 2)
		return false; /* unknown: libbpf's own probe still applies */
	return major < 5 || (major == 5 && minor < 11);
}

static void memlock_raise(struct memlock *m)
{
	struct rlimit inf = {RLIM_INFINITY, RLIM_INFINITY};

	memset(m, 0, sizeof(*m));
	m->charged = kernel_charges_memlock();
	if (!m->charged || getrlimit(RLIMIT_MEMLOCK, &m->old) < 0)
		return;
	m->now = m->old;
	if (m->old.rlim_cur == RLIM_INFINITY)
		return;
	m->saved = true;
	if (setrlimit(RLIMIT_MEMLOCK, &inf) == 0) {
		m->now = inf;
		return;
	}
	if (m->old.rlim_cur < m->old.rlim_max) {
		struct rlimit soft = {m->old.rlim_max, m->old.rlim_max};

		if (setrlimit(RLIMIT_MEMLOCK, &soft) == 0)
			m->now = soft;
	}
}

static void memlock_restore(const struct memlock *m)
{
	if (m->saved && setrlimit(RLIMIT_MEMLOCK, &m->old) < 0)
		probes_log(LOG_LEVEL_WARN, "BPF: cannot put RLIMIT_MEMLOCK back after loading: %s",
			   strerror(errno));
}

/* EPERM with a limit we could not lift: name it, not "Operation not permitted". */
static void memlock_why(const struct memlock *m, int r, char *why, size_t whylen)
{
	struct utsname u;

	if (r != -EPERM || !m->charged || m->now.rlim_cur == RLIM_INFINITY || uname(&u) < 0)
		return;
	set_why(why, whylen,
		"the kernel refused to load them: %s: kernel %s charges BPF maps to "
		"RLIMIT_MEMLOCK (before 5.11), which is %llu KiB here and cannot be raised "
		"(no CAP_SYS_RESOURCE): raise it for sigvisor (docker run --ulimit memlock=-1, "
		"systemd LimitMEMLOCK=infinity, Kubernetes: a runtime default of unlimited)",
		strerror(-r), u.release, (unsigned long long)(m->now.rlim_cur / 1024));
}

/* Load what this kernel's verifier accepts. A refused optional program is left out
 * (its part is off, and says why) and the rest loaded again: libbpf loads an object
 * once, all or nothing. A refused essential program leaves the probes off with the
 * verifier's own reason, never "Permission denied" (the errno it comes with). */
int probes_load(struct bpf_probes *p, char *why, size_t whylen)
{
	struct memlock memlock;
	unsigned skip = 0;
	char *log;
	int r;

	/* With --bpf-sigaction off the program that costs every syscall on the host is
	 * not even loaded. */
	for (size_t i = 0; i < N_PROGS; i++)
		if (probes_progs[i].part == BPF_PART_SIGACTION && !p->sigaction) {
			skip |= 1u << i;
			set_why(p->part_why[BPF_PART_SIGACTION], BPF_WHY_LEN,
				"--bpf-sigaction off");
		}
	log = calloc(N_PROGS, VERIFIER_LOG_BYTES);
	if (!log) {
		set_why(why, whylen, "out of memory for the verifier's log");
		return -ENOMEM;
	}
	memlock_raise(&memlock);
	for (;;) {
		char reason[200];
		int refused;

		r = load_once(p, skip, log, &refused, why, whylen);
		if (r >= 0)
			break;
		if (refused < 0) {
			memlock_why(&memlock, r, why, whylen);
			break;
		}
		last_log_line(log + (size_t)refused * VERIFIER_LOG_BYTES, reason, sizeof(reason));
		if (probes_progs[refused].part == BPF_PART_SIGNALS) {
			set_why(why, whylen,
				"the kernel's verifier refused program %s: %s (run with --bpf off "
				"to go without the probes)",
				probes_progs[refused].name, reason[0] ? reason : strerror(-r));
			break;
		}
		set_why(p->part_why[probes_progs[refused].part], BPF_WHY_LEN,
			"the kernel's verifier refused program %s: %s", probes_progs[refused].name,
			reason[0] ? reason : strerror(-r));
		probes_log(LOG_LEVEL_WARN, "BPF: the %s %s is off: %s",
			   bpf_part_name(probes_progs[refused].part),
			   probes_progs[refused].use == PROG_ITER ? "iterator" : "counter",
			   p->part_why[probes_progs[refused].part]);
		skip |= 1u << refused;
		sigvisor__destroy(p->skel);
		p->skel = NULL;
	}
	memlock_restore(&memlock);
	free(log);
	return r;
}

/* Track the processes of the tree forked before sv_fork was attached (see sv_adopt):
 * running the iterator is reading it. */
static void adopt_existing(struct bpf_program *prog)
{
	struct bpf_link *link;
	char buf[64];
	int fd;

	link = bpf_program__attach_iter(prog, NULL);
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

/* In the loop's thread: register, attach in the order of probes_progs[] (the tree
 * first, then the counters) and open the ring buffer of a loaded object. */
int probes_attach_all(struct bpf_probes *p, char *why, size_t whylen)
{
	struct sigvisor *s = p->skel;
	int r;

	if (!s->bss) {
		set_why(why, whylen, "the kernel cannot map BPF global data");
		return -ENOTSUP;
	}
	for (size_t i = 0; i < N_PROGS; i++) {
		const struct prog_info *pi = &probes_progs[i];
		struct bpf_program *prog = prog_by_name(s, pi->name);

		/* Its part is off: refused by the verifier, or not loaded at all. */
		if (p->part_why[pi->part][0])
			continue;
		r = 0;
		switch (pi->use) {
		case PROG_REGISTER:
			r = register_self(p, prog, why, whylen);
			break;
		case PROG_KEPT:
			r = attach_one(prog, probes_skel_link(s, pi->name), why, whylen);
			break;
		case PROG_ITER:
			adopt_existing(prog);
			break;
		case PROG_WATCH: /* attached by bpf_probes_serving_watch() */
			p->serving_prog_fd = bpf_program__fd(prog);
			if (p->serving_prog_fd < 0)
				p->serving_prog_fd = -1;
			break;
		}
		if (r < 0)
			return r;
	}
	p->rb = ring_buffer__new(bpf_map__fd(s->maps.events), probes_on_ring_event, p, NULL);
	if (!p->rb) {
		r = -errno;
		set_why(why, whylen, "cannot open the BPF ring buffer: %s", strerror(-r));
		return r;
	}
	return 0;
}

/* ---- the --bpf auto loader: a child process ------------------------------------------ */

/* One message of the loader: type, text, and fds by SCM_RIGHTS. 0, or -errno. */
static int send_msg(int sock, char type, const char *text, const int *fds, size_t n)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * MSG_FDS)];
		struct cmsghdr align;
	} cm;
	char buf[MSG_MAX];
	size_t len = strlen(text);
	struct iovec iov = {.iov_base = buf, .iov_len = len + 1};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	struct cmsghdr *c;

	if (len + 1 > sizeof(buf) || n > MSG_FDS)
		return -E2BIG;
	buf[0] = type;
	memcpy(buf + 1, text, len);
	if (n) {
		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * n);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
	}
	return sendmsg(sock, &mh, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

/* The loader: load what the verifier accepts, and send it to the arbiter, which
 * attaches it (the probes recognise the arbiter, not us: p->nspid). A plain fork()
 * rather than clone(CLONE_FILES): the fds of a loader killed half-way die with it,
 * where in a shared table they would stay in the arbiter with nobody knowing them, and
 * SCM_RIGHTS hands over exactly the ones named in the answer. */
static _Noreturn void loader_child(struct bpf_probes *p, int sock, pid_t parent)
{
	char why[256] = "", *line = NULL;
	int fds[MSG_FDS], null, r;
	size_t len = 0;
	FILE *f;

	/* Nothing of the arbiter's open but the socket: a loader slow in the verifier must
	 * not hold the listening sockets, nor the pin directory's lock (the image after a
	 * USR2 takes it while a killed loader may still be dying; p->pin_fd stays set: we
	 * pin by path, in the directory the arbiter holds). Our lines go to the arbiter,
	 * which logs them: no log fd here, so a log_* call cannot write the arbiter's
	 * queued lines a second time. */
	if (sock != 3) {
		if (dup2(sock, 3) < 0)
			_exit(1);
		sock = 3;
	}
	(void)close_range(4, ~0U, 0);
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	for (int fd = 0; fd < 3; fd++)
		(void)(null >= 0 ? dup2(null, fd) : close(fd));
	if (null > 3)
		close(null);
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	(void)prctl(PR_SET_NAME, "sigvisor-bpf");
	probes_log_relay(sock);
	r = probes_load(p, why, sizeof(why));
	if (r == 0) {
		f = open_memstream(&line, &len);
		r = f ? probes_write_loaded(p, f) : -ENOMEM;
		if (f && fclose(f) != 0 && r == 0)
			r = -EIO;
		if (r < 0)
			set_why(why, sizeof(why), "cannot write down what was loaded: %s",
				strerror(-r));
	}
	if (r == 0) {
		r = send_msg(sock, MSG_LOADED, line, fds, probes_handover_fds(line, fds, MSG_FDS));
		if (r == 0)
			_exit(0);
		set_why(why, sizeof(why), "cannot send what was loaded: %s", strerror(-r));
	}
	(void)send_msg(sock, MSG_FAILED, why, NULL, 0);
	_exit(1);
}

int probes_prepare_loader(struct bpf_probes *p)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	(void)fcntl(sv[0], F_SETFL, O_NONBLOCK);
	p->loader_sock = sv[0];
	p->loader_peer = sv[1];
	p->loading = true;
	p->state = LOADER_IDLE;
	return 0;
}

void bpf_probes_start_loading(struct bpf_probes *p)
{
	pid_t parent = getpid(), pid;

	if (!p || !p->loading || p->state != LOADER_IDLE)
		return;
	/* fork(), not spawn_exec(): the child runs libbpf (malloc, stdio). */
	pid = fork();
	if (pid == 0)
		loader_child(p, p->loader_peer, parent);
	close(p->loader_peer); /* the socket reads EOF once the loader is gone */
	p->loader_peer = -1;
	if (pid < 0) {
		/* Not loaded in the loop instead: the verifier can take seconds. The loop
		 * learns from that EOF, and the probes are off. */
		p->load_r = -errno;
		set_why(p->load_why, sizeof(p->load_why), "cannot start the BPF loader process: %s",
			strerror(errno));
		p->state = LOADER_ANSWERED;
		return;
	}
	if (loader.pidfd >= 0)
		close(loader.pidfd); /* an earlier loader not reaped yet: an orphan now */
	loader.pid = pid;
	loader.pidfd = pidfd_open(pid, 0); /* not reaped yet: pid still names it */
	loader.killed = false;
	p->state = LOADER_RUNNING;
}

/* Read what the loader has sent so far, never waiting: log its lines, keep its answer. */
static void receive(struct bpf_probes *p)
{
	while (p->state == LOADER_RUNNING) {
		union {
			char b[CMSG_SPACE(sizeof(int) * MSG_FDS)];
			struct cmsghdr align;
		} cm;
		char buf[MSG_MAX + 1];
		struct iovec iov = {.iov_base = buf, .iov_len = MSG_MAX};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = cm.b,
				    .msg_controllen = sizeof(cm.b)};
		int fds[MSG_FDS];
		size_t nfds = 0;
		ssize_t n = recvmsg(p->loader_sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			p->load_r = -errno;
			set_why(p->load_why, sizeof(p->load_why),
				"cannot read from the BPF loader process: %s", strerror(errno));
			p->state = LOADER_ANSWERED;
			return;
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			for (size_t i = 0; i < k && nfds < MSG_FDS; i++)
				memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
		}
		buf[n] = '\0';
		if (n >= 2 && buf[0] == MSG_LOG && nfds == 0) {
			log_msg((enum log_level)buf[1], "%s", buf + 2);
			continue;
		}
		p->state = LOADER_ANSWERED;
		p->load_r = -EPROTO;
		if (n > 0 && buf[0] == MSG_LOADED && !(mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC)))
			p->answer = probes_handover_renumber(buf + 1, fds, nfds);
		if (p->answer) {
			p->load_r = 0;
			return;
		}
		for (size_t i = 0; i < nfds; i++)
			close(fds[i]);
		if (n > 0 && buf[0] == MSG_FAILED)
			set_why(p->load_why, sizeof(p->load_why), "%s", buf + 1);
		else if (n == 0)
			set_why(p->load_why, sizeof(p->load_why),
				"the BPF loader process (pid %d) ended without an answer",
				(int)loader.pid);
		else
			set_why(p->load_why, sizeof(p->load_why),
				"the BPF loader process sent what this arbiter cannot read");
	}
}

bool bpf_probes_load_done(struct bpf_probes *p)
{
	if (!p || !p->loading)
		return true;
	if (p->state == LOADER_RUNNING)
		receive(p);
	return p->state == LOADER_ANSWERED;
}

bool bpf_probes_loading(const struct bpf_probes *p)
{
	return p && p->loading;
}

void probes_stop_loader(struct bpf_probes *p)
{
	int fds[MSG_FDS];
	bool pinned = false;

	if (!p->loading)
		return;
	if (p->state == LOADER_RUNNING && loader.pidfd >= 0) {
		/* Not waited for: a SIGKILLed verifier stops at its next check, and the exit
		 * or the exec goes on now. bpf_probes_reap() takes its exit. */
		(void)pidfd_send_signal(loader.pidfd, SIGKILL, NULL, 0);
		loader.killed = true;
		log_info("stopped loading the BPF probes without waiting for the BPF verifier "
			 "(killed the loader, pid %d)",
			 (int)loader.pid);
		pinned = true;
	}
	if (p->answer) {
		size_t n = probes_handover_fds(p->answer, fds, MSG_FDS);

		for (size_t i = 0; i < n; i++)
			close(fds[i]);
		free(p->answer);
		p->answer = NULL;
		pinned = true;
	}
	/* An answer still in the socket: its fds go with the socket. */
	if (p->loader_sock >= 0)
		close(p->loader_sock);
	if (p->loader_peer >= 0)
		close(p->loader_peer);
	p->loader_sock = p->loader_peer = -1;
	/* libbpf pins the maps before it loads the programs: remove them as a close would,
	 * under the lock we hold. A pin made between the kill and the loader's end is the
	 * next arbiter's to remove (probes_remove_stale_pins). */
	if ((pinned || p->state == LOADER_ANSWERED) && p->pin_fd >= 0)
		probes_remove_pins_in(p->pin_dir, true);
	p->loading = false;
	p->state = LOADER_IDLE;
}

int bpf_probes_reap(pid_t pid)
{
	siginfo_t si;
	int r;

	if (!loader.pid || pid != loader.pid)
		return 0;
	memset(&si, 0, sizeof(si));
	if (loader.pidfd >= 0)
		r = waitid((idtype_t)P_PIDFD, (id_t)loader.pidfd, &si, WEXITED | WNOHANG);
	else
		r = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG);
	if (r < 0 || si.si_pid == 0) {
		if (r < 0)
			log_warn("waitid on the BPF loader (pid %d), ignoring: %m", (int)pid);
		return r < 0 ? 0 : -1; /* an orphan to reap, or not exited: cannot be */
	}
	if (si.si_code != CLD_EXITED && !loader.killed)
		log_warn("BPF: the loader process (pid %d) was killed by signal %d", (int)pid,
			 si.si_status);
	else
		log_debug("BPF: the loader process (pid %d) exited (%d)", (int)pid, si.si_status);
	if (loader.pidfd >= 0)
		close(loader.pidfd);
	loader.pid = 0;
	loader.pidfd = -1;
	return 1;
}

int bpf_probes_finish(struct bpf_probes *p, char *why, size_t whylen)
{
	struct bpf_options opt = {.sigaction = p->sigaction, .handover = p->answer};
	int r;

	if (p->state != LOADER_ANSWERED) {
		r = -EINPROGRESS; /* cannot be: bpf_probes_load_done() said no */
		set_why(why, whylen, "the BPF loader has not answered");
	} else if (p->load_r < 0 || !p->answer) {
		r = p->load_r < 0 ? p->load_r : -EPROTO;
		set_why(why, whylen, "%s", p->load_why);
	} else {
		/* What the loader loaded, adopted as a USR2's probes are. */
		r = probes_adopt(p, &opt, why, whylen);
		if (r < 0)
			probes_drop_handover(p->answer, p->pin_fd >= 0 ? p->pin_dir : NULL);
		free(p->answer);
		p->answer = NULL;
	}
	if (r == 0)
		p->state = LOADER_IDLE;
	probes_stop_loader(p); /* its socket; on failure, what it pinned */
	/* Opening the object left the heap large and mostly free: give it back. */
	(void)malloc_trim(0);
	return r;
}
