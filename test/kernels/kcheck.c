/* kcheck: do sigvisor's eBPF probes load and count right on this kernel?
 *
 * Run on the host (the host kernel's row of `make test-kernels`) and as the only
 * program of a qemu guest booted with another kernel (test/kernels/run.sh). It starts
 * sigvisor with --bpf on and itself as the COMMAND worker, then checks exact counts:
 *
 *   - a TTOU storm to the arbiter (a pool of 1 stays 1): every signal sent is generated
 *     once, and each was either read from the signalfd (handled, from `sigvisor
 *     status`) or merged by the kernel (coalesced): generated = handled + coalesced;
 *   - three USR1 to a worker that blocks USR1: one queued, two coalesced (the pinned
 *     `signals` map), then one delivery to its handler once it unblocks (`deliveries`)
 *     and its rt_sigaction of that handler (`sigactions`);
 *   - a USR2 to the same binary keeps the probes (the new image takes them over, nothing
 *     loaded again) and the counts go on: KEPT more TTOU count on from the storm's;
 *   - EXACT TTIN from a tight loop add exactly EXACT workers: the arbiter scales by the
 *     probes' count, merged signals included (a storm of TTIN would start hundreds of
 *     workers in a small guest: the storm is TTOU, which the pool of 1 ignores).
 *
 * Before the probes, the plain supervisor (--bpf off, the built-in worker): it starts
 * and is ready, answers a GET on its unix socket, TTIN adds a worker, HUP replaces both
 * (generation 2, and a GET again), TERM ends it with exit status 0. What a user of any
 * kernel gets whatever the probes do.
 *
 * It prints one line, "kcheck: PASS <kernel>: ..." or "kcheck: FAIL <kernel>: <why>",
 * with the tail of sigvisor's log on a failure (a verifier refusal names the program
 * and the verifier's reason there), and exits 0 or 1.
 *
 * Usage: kcheck run SIGVISOR PIN_DIR WORK_DIR     (the worker role is internal)
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <linux/capability.h>

#include "sigvisor_bpf.h"

#define STORM 500
#define KEPT  10
#define EXACT 20
/* Under TCG a guest runs 20-50x slower than the host: deadlines are generous, and
 * every wait ends as soon as its event is seen. */
#define DEADLINE_MS 90000

static char kernel[128];
static const char *workdir;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static void print_log_tail(void)
{
	char path[512], buf[4096];
	ssize_t n;
	off_t size;
	int fd;

	snprintf(path, sizeof(path), "%s/sigvisor.log", workdir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	size = lseek(fd, 0, SEEK_END);
	lseek(fd, size > (off_t)sizeof(buf) - 1 ? size - (off_t)sizeof(buf) + 1 : 0, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n > 0) {
		buf[n] = '\0';
		printf("--- sigvisor's log (tail):\n%s--- end\n", buf);
	}
}

static pid_t arbiter;

/* sigvisor's own last "error: " line, for the verdict of a run it ended: with --bpf on
 * a verifier refusal names the program and the verifier's reason there. */
static void last_error(char *buf, size_t len)
{
	char path[512], line[1024];
	const char *e;
	FILE *f;

	buf[0] = '\0';
	snprintf(path, sizeof(path), "%s/sigvisor.log", workdir);
	f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if ((e = strstr(line, " error: ")))
			snprintf(buf, len, "%.*s", (int)strcspn(e + 8, "\n"), e + 8);
	fclose(f);
}

__attribute__((format(printf, 1, 2), noreturn)) static void fail(const char *fmt, ...)
{
	va_list ap;

	printf("kcheck: FAIL %s: ", kernel);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	print_log_tail();
	fflush(stdout);
	if (arbiter > 0) {
		kill(arbiter, SIGKILL);
		waitpid(arbiter, NULL, 0);
	}
	exit(1);
}

/* ---- the worker: blocks USR1 until told (USR2) to take it ---------------------- */

static volatile sig_atomic_t usr1_handled;

static void on_usr1(int sig)
{
	(void)sig;
	usr1_handled++;
}

static int write_file(const char *name, long value)
{
	char path[512], tmp[520], text[32];
	int fd, n;

	snprintf(path, sizeof(path), "%s/%s", workdir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	n = snprintf(text, sizeof(text), "%ld\n", value);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, text, (size_t)n) != n || close(fd) < 0)
		return -1;
	return rename(tmp, path); /* whole or not at all for the reader */
}

static int worker(void)
{
	struct sigaction sa = {.sa_handler = on_usr1};
	const char *id = getenv("SIGVISOR_WORKER_ID");
	sigset_t block, wait_for;
	int sig;

	if (!id || strcmp(id, "0") != 0)
		for (;;)
			pause(); /* a worker the exact-TTIN check added: TERM ends it */
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGUSR2);
	sigprocmask(SIG_BLOCK, &block, NULL);
	if (write_file("worker.pid", (long)getpid()) < 0)
		return 1;
	sigemptyset(&wait_for);
	sigaddset(&wait_for, SIGUSR2);
	do
		sig = sigwaitinfo(&wait_for, NULL);
	while (sig < 0 && errno == EINTR);
	/* Only now, with the probes surely loaded (with --bpf auto they load while this
	 * worker starts): the sigaction is counted. */
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) < 0)
		return 1;
	/* Unblocking makes the one pending USR1 go through get_signal(): one delivery. */
	sigprocmask(SIG_UNBLOCK, &block, NULL);
	while (!usr1_handled)
		pause();
	if (write_file("worker.done", (long)usr1_handled) < 0)
		return 1;
	for (;;)
		pause();
}

/* ---- the checks -------------------------------------------------------------- */

static long read_number_file(const char *name)
{
	char path[512], buf[32] = "";
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", workdir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? strtol(buf, NULL, 10) : -1;
}

static bool arbiter_gone(int *ret_status)
{
	return waitpid(arbiter, ret_status, WNOHANG) == arbiter;
}

/* Wait for a number file the worker writes; the arbiter's exit is a failure. */
static long wait_number_file(const char *name, const char *what)
{
	uint64_t end = now_ms() + DEADLINE_MS;
	int status;
	long v;

	while ((v = read_number_file(name)) < 0) {
		if (arbiter_gone(&status)) {
			char why[512];

			arbiter = 0;
			last_error(why, sizeof(why));
			fail("sigvisor exited (status %d) before %s%s%s",
			     WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), what,
			     why[0] ? ": " : "", why);
		}
		if (now_ms() > end)
			fail("no %s within %d s", what, DEADLINE_MS / 1000);
		sleep_ms(20);
	}
	return v;
}

/* `sigvisor status --json`, whole, into buf. */
static int status_json(const char *sigvisor, char *buf, size_t len)
{
	char control[512];
	size_t got = 0;
	int pfd[2], status;
	ssize_t n;
	pid_t pid;

	snprintf(control, sizeof(control), "%s/control.sock", workdir);
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

		dup2(pfd[1], 1);
		/* "cannot connect" while it starts is no news: the caller polls */
		if (null >= 0)
			dup2(null, 2);
		execl(sigvisor, sigvisor, "status", "--control", control, "--json", (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	while (got < len - 1 && (n = read(pfd[0], buf + got, len - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	close(pfd[0]);
	waitpid(pid, &status, 0);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* The number after "key": inside the object that follows "\"TTIN\":{". */
static long json_field(const char *json, const char *object, const char *key)
{
	char pat[64];
	const char *o, *end, *k;

	snprintf(pat, sizeof(pat), "\"%s\":{", object);
	o = strstr(json, pat);
	if (!o)
		return -1;
	end = strchr(o, '}');
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	k = strstr(o, pat);
	if (!k || (end && k > end))
		return -1;
	return strtol(k + strlen(pat), NULL, 10);
}

/* A top-level number: "key": before the first '[' (the workers' list). */
static long json_field_top(const char *json, const char *key)
{
	const char *k, *list = strchr(json, '[');
	char pat[64];

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	k = strstr(json, pat);
	if (!k || (list && k > list))
		return -1;
	return strtol(k + strlen(pat), NULL, 10);
}

/* Every optional part (deliveries, sigaction, adopt, serving) must load too on the
 * kernels we claim: a refused one is named with the verifier's reason. */
static void parts_all_on(const char *bpf)
{
	const char *parts = strstr(bpf, "\"parts\":{"), *off, *name;

	if (!parts)
		fail("status has no bpf.parts");
	off = strstr(parts, ":{\"state\":\"off\"");
	if (!off)
		return;
	for (name = off - 1; name > parts && *(name - 1) != '"'; name--)
		;
	fail("the probes loaded without their '%.*s' part: %.*s", (int)(off - 1 - name), name,
	     (int)strcspn(off, "}"), off);
}

/* --bpf auto says in status whether the probes loaded: "on", or "off" and why (the
 * verifier's reason where it refused one). */
static void wait_probes(const char *sigvisor)
{
	static char json[65536];
	uint64_t end = now_ms() + DEADLINE_MS;
	const char *b, *reason;

	for (;;) {
		if (status_json(sigvisor, json, sizeof(json)) == 0 &&
		    (b = strstr(json, "\"bpf\":{"))) {
			if (strncmp(b, "\"bpf\":{\"state\":\"on\"", 19) == 0) {
				parts_all_on(b);
				break;
			}
			if (strncmp(b, "\"bpf\":{\"state\":\"off\"", 20) == 0) {
				reason = strstr(b, "\"reason\":");
				fail("the probes did not load: %.*s",
				     reason ? (int)strcspn(reason, "}") : 3, reason ? reason : "?");
			}
		}
		if (now_ms() > end)
			fail("the probes did not finish loading within %d s", DEADLINE_MS / 1000);
		sleep_ms(20);
	}
}

/* Whether sigvisor's log has a line with needle. */
static bool log_has(const char *needle)
{
	char path[512], line[1024];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "%s/sigvisor.log", workdir);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

/* USR2 to the same binary: the probes are handed over attached, and the signals sent
 * to the new image count on from the old one's. */
static void check_kept(const char *sigvisor)
{
	static char json[65536];
	uint64_t end = now_ms() + DEADLINE_MS;
	long generated = -1;
	int status;

	if (kill(arbiter, SIGUSR2) < 0)
		fail("kill(USR2): %s", strerror(errno));
	while (!log_has("BPF probes kept from the image before the upgrade")) {
		if (log_has("loading them again") || log_has("upgrade refused") ||
		    log_has("rolled back"))
			fail("USR2 to the same binary did not keep the probes");
		if (arbiter_gone(&status)) {
			arbiter = 0;
			fail("sigvisor exited during the USR2");
		}
		if (now_ms() > end)
			fail("USR2: the probes were not kept within %d s", DEADLINE_MS / 1000);
		sleep_ms(50);
	}
	for (int i = 0; i < KEPT; i++) {
		kill(arbiter, SIGTTOU);
		sleep_ms(5);
	}
	for (;;) {
		if (status_json(sigvisor, json, sizeof(json)) == 0) {
			generated = json_field(json, "TTOU", "generated");
			if (generated == STORM + KEPT)
				break;
		}
		if (now_ms() > end)
			fail("after the USR2, TTOU generated %ld (want %d: the counts go on)",
			     generated, STORM + KEPT);
		sleep_ms(50);
	}
}

/* EXACT TTIN as fast as kill() goes: the kernel merges most of them, the probes count
 * them all, and the pool of 1 grows by exactly EXACT ("target" in status). */
static void check_exact(const char *sigvisor)
{
	uint64_t end = now_ms() + DEADLINE_MS;
	long target = -1;
	char json[65536];

	for (int i = 0; i < EXACT; i++)
		if (kill(arbiter, SIGTTIN) < 0)
			fail("kill(TTIN): %s", strerror(errno));
	for (;;) {
		if (status_json(sigvisor, json, sizeof(json)) == 0) {
			const char *t = strstr(json, "\"target\":");

			target = t ? strtol(t + 9, NULL, 10) : -1;
			if (target == 1 + EXACT)
				return;
			if (target > 1 + EXACT)
				break;
		}
		if (now_ms() > end)
			break;
		sleep_ms(50);
	}
	fail("TTIN x%d from a tight loop: pool target %ld, want exactly %d", EXACT, target,
	     1 + EXACT);
}

static uint64_t map_count(int fd, const void *key)
{
	struct sv_count v = {0};

	return bpf_map_lookup_elem(fd, key, &v) == 0 ? v.count : 0;
}

static int open_pin(const char *pin, const char *name)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", pin, name);
	fd = bpf_obj_get(path);
	if (fd < 0)
		fail("cannot open the pinned map %s: %s", path, strerror(errno));
	return fd;
}

/* ---- RLIMIT_MEMLOCK, before 5.11 ------------------------------------------------ */

/* Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK (later ones to the cgroup). */
static bool memlock_charged(void)
{
	unsigned major = 0, minor = 0;

	return sscanf(kernel, "%u.%u", &major, &minor) == 2 &&
	       (major < 5 || (major == 5 && minor < 11));
}

/* In a child about to exec sigvisor: the limits of a container (64 KiB locked) and no
 * CAP_SYS_RESOURCE (out of the bounding set: the exec'd root process cannot get it). */
static void as_container(rlim_t hard)
{
	struct rlimit rl = {64 * 1024, hard};

	if (setrlimit(RLIMIT_MEMLOCK, &rl) < 0 ||
	    prctl(PR_CAPBSET_DROP, CAP_SYS_RESOURCE, 0, 0, 0) < 0)
		_exit(126);
}

/* Work in WORK/NAME from now on; returns the directory worked in before. */
static const char *enter_dir(const char *work, const char *name)
{
	static char dirs[2][512];
	static int next;
	const char *saved = workdir;
	char *dir = dirs[next++ % 2];

	snprintf(dir, sizeof(dirs[0]), "%s/%s", work, name);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		fail("mkdir %s: %s", dir, strerror(errno));
	workdir = dir;
	return saved;
}

/* sigvisor started in workdir: its log, control socket and unix bind there (the guest
 * has no network), one worker, no watchdog (--timeout 0), then args (NULL-ended). With
 * memlock, started as a container would be (as_container). Its pid. */
static pid_t spawn_sigvisor(const char *sigvisor, rlim_t memlock, const char *const *args)
{
	char control[512], bind[520], log[512];
	const char *argv[32] = {sigvisor,    "-w",    "1",	   "-b", bind,
				"--control", control, "--timeout", "0"};
	size_t n = 9;
	pid_t pid;

	snprintf(control, sizeof(control), "%s/control.sock", workdir);
	snprintf(bind, sizeof(bind), "unix:%s/http.sock", workdir);
	snprintf(log, sizeof(log), "%s/sigvisor.log", workdir);
	while (*args && n < sizeof(argv) / sizeof(argv[0]) - 1)
		argv[n++] = *args++;
	argv[n] = NULL;
	pid = fork();
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		if (fd < 0)
			_exit(127);
		dup2(fd, 1);
		dup2(fd, 2);
		if (memlock)
			as_container(memlock);
		execv(sigvisor, (char *const *)argv);
		_exit(127);
	}
	if (pid < 0)
		fail("fork: %s", strerror(errno));
	return pid;
}

/* With a hard limit of 64 KiB nothing can be raised: --bpf on must fail and say it is
 * the limit, not a bare "Operation not permitted". */
static void check_memlock_named(const char *sigvisor, const char *work)
{
	char pin[600], why[512];
	uint64_t end = now_ms() + DEADLINE_MS;
	const char *saved = enter_dir(work, "memlock");
	int status;

	snprintf(pin, sizeof(pin), "%s/pins", workdir);
	arbiter = spawn_sigvisor(sigvisor, 64 * 1024,
				 (const char *[]){"--bpf", "on", "--bpf-pin", pin, NULL});
	while (!arbiter_gone(&status)) {
		if (now_ms() > end)
			fail("memlock: --bpf on with 64 KiB of RLIMIT_MEMLOCK still runs after %d "
			     "s",
			     DEADLINE_MS / 1000);
		sleep_ms(20);
	}
	arbiter = 0;
	last_error(why, sizeof(why));
	if (!WIFEXITED(status) || WEXITSTATUS(status) == 0 || !strstr(why, "RLIMIT_MEMLOCK"))
		fail("memlock: --bpf on with 64 KiB of RLIMIT_MEMLOCK: exit status %d, \"%s\" "
		     "(want a failure naming RLIMIT_MEMLOCK)",
		     WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), why);
	workdir = saved;
}

static pid_t start_sigvisor(const char *sigvisor, const char *pin, const char *self)
{
	setenv("KCHECK_DIR", workdir, 1);
	/* Where maps are charged to it, as a container starts us: 64 KiB that only sigvisor
	 * raises (to the hard limit: libbpf alone asks for infinity and gives up). auto:
	 * the probes load beside the workers, and must adopt worker 0. */
	return spawn_sigvisor(sigvisor, memlock_charged() ? 1024 * 1024 * 1024 : 0,
			      (const char *[]){"--bpf", "auto", "--bpf-pin", pin, "--ready-mode",
					       "start", "--graceful-timeout", "5", "--", self,
					       "worker", NULL});
}

/* ---- the plain supervisor --------------------------------------------------- */

/* The status line with the workers' states, or NULL if status does not answer. */
static const char *plain_status(const char *sigvisor, char *json, size_t len)
{
	return status_json(sigvisor, json, len) == 0 ? json : NULL;
}

/* How many times needle occurs in s. */
static int occurrences(const char *s, const char *needle)
{
	int n = 0;

	while ((s = strstr(s, needle))) {
		n++;
		s += strlen(needle);
	}
	return n;
}

/* Until status says: running, generation gen, target workers, all of them ready and of
 * that generation. */
static void plain_wait(const char *sigvisor, long gen, int workers, const char *what)
{
	uint64_t end = now_ms() + DEADLINE_MS;
	char json[65536], want[64];
	int status;

	snprintf(want, sizeof(want), "\"generation\":%ld,\"state\":\"ready\"", gen);
	for (;;) {
		const char *j = plain_status(sigvisor, json, sizeof(json));

		if (j && strstr(j, "\"state\":\"running\"") &&
		    json_field_top(j, "generation") == gen &&
		    json_field_top(j, "target") == workers &&
		    occurrences(j, "\"state\":\"ready\"") == workers &&
		    occurrences(j, want) == workers)
			return;
		if (arbiter_gone(&status)) {
			arbiter = 0;
			fail("plain: sigvisor exited (status %d) before %s",
			     WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
			     what);
		}
		if (now_ms() > end)
			fail("plain: no %s within %d s", what, DEADLINE_MS / 1000);
		sleep_ms(20);
	}
}

/* GET / on the unix socket: the built-in worker answers 200. */
static void plain_get(void)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	const char req[] = "GET / HTTP/1.0\r\nHost: kcheck\r\n\r\n";
	char buf[256] = "";
	size_t got = 0;
	ssize_t n;
	int fd;

	snprintf(a.sun_path, sizeof(a.sun_path), "%s/http.sock", workdir);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		fail("plain: connect to %s: %s", a.sun_path, strerror(errno));
	if (write(fd, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1)
		fail("plain: sending the GET: %s", strerror(errno));
	while (got < sizeof(buf) - 1 && (n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	close(fd);
	if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0 && strncmp(buf, "HTTP/1.0 200 ", 13) != 0)
		fail("plain: GET / answered \"%.*s\", want 200", (int)strcspn(buf, "\r\n"), buf);
}

/* Wait for the arbiter's exit after TERM: status 0. */
static void wait_exit_0(const char *what)
{
	uint64_t end = now_ms() + DEADLINE_MS;
	int status;

	while (!arbiter_gone(&status)) {
		if (now_ms() > end)
			fail("%ssigvisor did not exit within %d s of TERM", what,
			     DEADLINE_MS / 1000);
		sleep_ms(20);
	}
	arbiter = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("%ssigvisor exited with status %d after TERM", what,
		     WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

static void plain(const char *sigvisor, const char *work)
{
	const char *saved = enter_dir(work, "plain");

	arbiter = spawn_sigvisor(sigvisor, 0,
				 (const char *[]){"--bpf", "off", "--graceful-timeout", "5", NULL});
	plain_wait(sigvisor, 1, 1, "ready worker");
	plain_get();
	kill(arbiter, SIGTTIN);
	plain_wait(sigvisor, 1, 2, "second worker after TTIN");
	kill(arbiter, SIGHUP);
	plain_wait(sigvisor, 2, 2, "generation 2 after HUP");
	plain_get();
	kill(arbiter, SIGTERM);
	wait_exit_0("plain: ");
	workdir = saved;
}

static int run(const char *sigvisor, const char *pin, const char *self)
{
	struct sv_signal_key usr1_queued, usr1_merged;
	struct sv_handler_key usr1_caught;
	uint64_t end, q, c, d, a;
	long generated = -1, handled = -1, merged = -1, queued = -1;
	int signals_fd, deliveries_fd, sigactions_fd, status;
	char json[65536];
	pid_t wpid;

	plain(sigvisor, workdir);
	if (memlock_charged())
		check_memlock_named(sigvisor, workdir);
	arbiter = start_sigvisor(sigvisor, pin, self);
	wpid = (pid_t)wait_number_file("worker.pid", "worker 0 to start");
	wait_probes(sigvisor);

	/* The storm: as fast as kill() goes. The arbiter reads some, the kernel merges
	 * the repeats that find one still pending. */
	for (int i = 0; i < STORM; i++)
		if (kill(arbiter, SIGTTOU) < 0)
			fail("kill(TTOU): %s", strerror(errno));
	/* Settled when every signal generated is accounted for and every queued one read. */
	end = now_ms() + DEADLINE_MS;
	for (;;) {
		if (status_json(sigvisor, json, sizeof(json)) == 0) {
			generated = json_field(json, "TTOU", "generated");
			queued = json_field(json, "TTOU", "queued");
			merged = json_field(json, "TTOU", "coalesced");
			handled = json_field(json, "TTOU", "received");
			if (generated == STORM && queued == handled && queued + merged == STORM)
				break;
		}
		if (arbiter_gone(&status)) {
			arbiter = 0;
			fail("sigvisor exited during the TTOU storm");
		}
		if (now_ms() > end)
			fail("TTOU x%d: generated %ld, handled %ld, queued %ld, coalesced %ld "
			     "(want generated = %d = handled + coalesced)",
			     STORM, generated, handled, queued, merged, STORM);
		sleep_ms(50);
	}

	/* Three USR1 to a worker that blocks it: one pending, two merged into it. */
	for (int i = 0; i < 3; i++)
		kill(wpid, SIGUSR1);
	kill(wpid, SIGUSR2); /* now take it */
	if (wait_number_file("worker.done", "the worker's USR1 handler to run") != 1)
		fail("the worker's USR1 handler ran more than once");

	signals_fd = open_pin(pin, "signals");
	deliveries_fd = open_pin(pin, "deliveries");
	sigactions_fd = open_pin(pin, "sigactions");
	memset(&usr1_queued, 0, sizeof(usr1_queued));
	usr1_queued.tgid = (__u32)wpid;
	usr1_queued.sig = SIGUSR1;
	usr1_merged = usr1_queued;
	usr1_queued.result = delivered;
	usr1_merged.result = coalesced;
	memset(&usr1_caught, 0, sizeof(usr1_caught));
	usr1_caught.tgid = (__u32)wpid;
	usr1_caught.sig = SIGUSR1;
	usr1_caught.kind = caught;
	q = map_count(signals_fd, &usr1_queued);
	c = map_count(signals_fd, &usr1_merged);
	d = map_count(deliveries_fd, &usr1_caught);
	a = map_count(sigactions_fd, &usr1_caught);
	if (q != 1 || c != 2 || d != 1 || a != 1)
		fail("USR1 x3 to a worker that blocks it: queued %llu, coalesced %llu, delivered "
		     "to its handler %llu, sigaction %llu (want 1, 2, 1, 1)",
		     (unsigned long long)q, (unsigned long long)c, (unsigned long long)d,
		     (unsigned long long)a);
	close(signals_fd);
	close(deliveries_fd);
	close(sigactions_fd);

	check_kept(sigvisor);
	check_exact(sigvisor);

	kill(arbiter, SIGTERM);
	wait_exit_0("");
	if (access(pin, F_OK) == 0)
		fail("the pins in %s outlived the arbiter", pin);

	printf("kcheck: PASS %s: plain: start, GET 200, TTIN 1->2, HUP generation 2, GET 200, TERM "
	       "exit 0;%s probes: TTOU x%d generated %ld = handled %ld + coalesced %ld; USR1 x3 "
	       "to a blocking worker: queued 1, coalesced 2, delivered 1, sigaction 1; USR2: kept, "
	       "TTOU counted on to %d; TTIN x%d from a tight loop: exactly %d workers\n",
	       kernel,
	       memlock_charged()
		       ? " memlock: 64 KiB raised to the hard limit, named when it cannot be;"
		       : "",
	       STORM, generated, handled, merged, STORM + KEPT, EXACT, 1 + EXACT);
	return 0;
}

int main(int argc, char **argv)
{
	char self[PATH_MAX];
	struct utsname u;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (uname(&u) == 0)
		snprintf(kernel, sizeof(kernel), "%s", u.release);
	workdir = getenv("KCHECK_DIR");
	if (argc == 2 && strcmp(argv[1], "worker") == 0 && workdir)
		return worker();
	if (argc != 5 || strcmp(argv[1], "run") != 0) {
		fprintf(stderr, "usage: %s run SIGVISOR PIN_DIR WORK_DIR\n", argv[0]);
		return 2;
	}
	workdir = argv[4];
	if (mkdir(workdir, 0700) < 0 && errno != EEXIST)
		fail("mkdir %s: %s", workdir, strerror(errno));
	/* The worker is this same program, by an absolute path: sigvisor searches PATH. */
	if (!realpath("/proc/self/exe", self))
		fail("cannot find this program (/proc/self/exe): %s", strerror(errno));
	return run(argv[2], argv[3], self);
}
