/* Loading the probes and attaching them: the embedded object opened, what the arbiter
 * bakes into it set (our identity, the syscall numbers, the ring's size), the programs
 * the kernel's verifier refuses left out with its reason (their part is off), then in
 * the loop's thread the arbiter registered and the programs attached in the order of
 * probes_progs[]. With --bpf auto the loading runs in a thread of its own (the loader)
 * while the workers start; the loop finishes the job (bpf_probes_finish). */
#include "bpf_internal.h"

#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
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

/* While the programs load, libbpf's warnings are kept back: for a program the
 * verifier refused they say "Permission denied" (the errno of the refusal), and the
 * loader says what the verifier said instead. The last one is kept for a failure
 * that is not a refusal. */
static __thread bool libbpf_loading; /* per thread: the loader may be a thread of its own */
static __thread char libbpf_last_warning[200];

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
	log_msg(level == LIBBPF_WARN ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG, "libbpf: %s", text);
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
static int register_self(struct bpf_probes *p, struct bpf_program *prog, char *why, size_t whylen)
{
	struct bpf_link *link = bpf_program__attach(prog);
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
unsigned probes_refuse_from_env(void)
{
	const char *v = getenv("SIGVISOR_TEST_BPF_REFUSE");
	unsigned bits = 0;

	for (size_t i = 0; v && i < N_PROGS; i++) {
		const char *m = strstr(v, probes_progs[i].name);
		size_t n = strlen(probes_progs[i].name);

		if (m && (m[n] == '\0' || m[n] == ','))
			bits |= probes_progs[i].refuse;
	}
	return bits;
}

static struct bpf_program *prog_by_name(struct sigvisor *s, const char *name)
{
	return bpf_object__find_program_by_name(s->obj, name);
}

struct bpf_link **probes_skel_link(const struct sigvisor *s, const char *name)
{
	const struct bpf_object_skeleton *sk = s->skeleton;

	for (int j = 0; j < sk->prog_cnt; j++)
		if (strcmp(sk->progs[j].name, name) == 0)
			return sk->progs[j].link;
	return NULL;
}

/* The embedded object, opened to pin under pin_root (NULL: pins as libbpf's default,
 * which probes_disable_pinning() turns off). NULL with errno. */
struct sigvisor *probes_open_object(const char *pin_root)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo);

	oo.pin_root_path = pin_root;
	return sigvisor__open_opts(&oo);
}

/* Open the embedded object into p->skel, pinning under p->pin_dir when we hold it.
 * 0, or <0 with why. */
int probes_open_skeleton(struct bpf_probes *p, char *why, size_t whylen)
{
	p->skel = probes_open_object(p->pin_fd >= 0 ? p->pin_dir : NULL);
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

/* Load what this kernel's verifier accepts. A refused optional program is left out
 * (its part is off, and says why) and the rest loaded again: libbpf loads an object
 * once, all or nothing. A refused essential program leaves the probes off with the
 * verifier's own reason, never "Permission denied" (the errno it comes with). */
int probes_load(struct bpf_probes *p, char *why, size_t whylen)
{
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
	for (;;) {
		char reason[200];
		int refused;

		r = load_once(p, skip, log, &refused, why, whylen);
		if (r >= 0 || refused < 0)
			break;
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
		log_warn("BPF: the %s %s is off: %s", bpf_part_name(probes_progs[refused].part),
			 probes_progs[refused].use == PROG_ITER ? "iterator" : "counter",
			 p->part_why[probes_progs[refused].part]);
		skip |= 1u << refused;
		sigvisor__destroy(p->skel);
		p->skel = NULL;
	}
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

static void *loader_main(void *arg)
{
	struct bpf_probes *p = arg;
	uint64_t one = 1;

	p->load_r = probes_load(p, p->load_why, sizeof(p->load_why));
	(void)!write(p->loaded_fd, &one, sizeof(one));
	return NULL;
}

bool bpf_probes_load_done(const struct bpf_probes *p)
{
	struct pollfd pfd = {.fd = p ? p->loaded_fd : -1, .events = POLLIN};

	return p && (!p->loading || poll(&pfd, 1, 0) == 1);
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
		 "probes");
	/* libbpf pins the maps before it loads the programs: remove them as a close would,
	 * under the lock we hold, then the directory (p itself is the loader's until the
	 * exit ends it). A pin made in the moment before the exit is the next arbiter's to
	 * remove (probes_remove_stale_pins). */
	if (p->pin_fd >= 0) {
		probes_remove_pins_in(p->pin_dir, true);
		if (rmdir(p->pin_dir) < 0 && errno != ENOTEMPTY && errno != ENOENT)
			log_warn("cannot remove %s, ignoring: %m", p->pin_dir);
	}
	return true;
}

void probes_join_loader(struct bpf_probes *p)
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
		p->load_r = probes_load(p, p->load_why, sizeof(p->load_why));
	probes_join_loader(p);
	r = p->load_r;
	if (r < 0)
		set_why(why, whylen, "%s", p->load_why);
	else
		r = probes_attach_all(p, why, whylen);
	(void)malloc_trim(0);
	return r;
}
