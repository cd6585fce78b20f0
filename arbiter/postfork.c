/* The worker side of clone3(): async-signal-safe setup, then execve. See postfork.h.
 *
 * The arbiter blocks every signal; a blocked mask and ignored dispositions survive
 * execve, so a worker exec'd as-is would never see TERM. Here the child resets every
 * disposition to SIG_DFL and only then unblocks everything, so it starts as clean as
 * if a shell had launched it (SigBlk, SigIgn and SigCgt all 0). */
#include "postfork.h"
#include "fmt.h"
#include "sigreset.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "rawsys.h"

/* The message is built in a buffer and written with one write(2), so it cannot
 * interleave with the arbiter's lines; everything here is async-signal-safe, and every
 * system call raw (rawsys.h): the child may share the arbiter's memory, errno
 * included (spawn_vm.c). */
struct line {
	char buf[768];
	size_t len;
};

static void put(struct line *l, const char *s)
{
	while (*s && l->len < sizeof(l->buf) - 8)
		l->buf[l->len++] = *s++;
}

/* s inside a JSON string: quotes, backslashes and control bytes escaped. */
static void put_json(struct line *l, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	for (; *s && l->len < sizeof(l->buf) - 16; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			l->buf[l->len++] = '\\';
			l->buf[l->len++] = (char)c;
		} else if (c < 0x20) {
			put(l, "\\u00");
			l->buf[l->len++] = hex[c >> 4];
			l->buf[l->len++] = hex[c & 15];
		} else {
			l->buf[l->len++] = (char)c;
		}
	}
}

static void put_uint(struct line *l, unsigned long n, int width)
{
	char num[21];

	fmt_uint(num, n, width);
	put(l, num);
}

/* "2026-12-03T16:33:20.108Z" as the log's JSON lines have it, without gmtime (not
 * async-signal-safe): days to a civil date by Howard Hinnant's algorithm. */
static void put_timestamp(struct line *l)
{
	struct timespec ts;
	long days, sod, z, era, doe, yoe, doy, mp, d, m, y;

	if (raw_syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts, 0, 0) < 0)
		ts = (struct timespec){0};
	days = ts.tv_sec / 86400;
	sod = ts.tv_sec % 86400;
	z = days + 719468;
	era = z / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	d = doy - (153 * mp + 2) / 5 + 1;
	m = mp < 10 ? mp + 3 : mp - 9;
	y = yoe + era * 400 + (m <= 2);
	put_uint(l, (unsigned long)y, 4);
	put(l, "-");
	put_uint(l, (unsigned long)m, 2);
	put(l, "-");
	put_uint(l, (unsigned long)d, 2);
	put(l, "T");
	put_uint(l, (unsigned long)(sod / 3600), 2);
	put(l, ":");
	put_uint(l, (unsigned long)(sod / 60 % 60), 2);
	put(l, ":");
	put_uint(l, (unsigned long)(sod % 60), 2);
	put(l, ".");
	put_uint(l, (unsigned long)(ts.tv_nsec / 1000000), 3);
	put(l, "Z");
}

/* strerror() is not async-signal-safe: the errors an exec or a privilege drop gives. */
static const char *errno_text(int err)
{
	switch (err) {
	case ENOENT:
		return "No such file or directory (ENOENT)";
	case EACCES:
		return "Permission denied (EACCES)";
	case ENOEXEC:
		return "Exec format error (ENOEXEC)";
	case ENOTDIR:
		return "Not a directory (ENOTDIR)";
	case ELOOP:
		return "Too many levels of symbolic links (ELOOP)";
	case ETXTBSY:
		return "Text file busy (ETXTBSY)";
	case ENOMEM:
		return "Cannot allocate memory (ENOMEM)";
	case E2BIG:
		return "Argument list too long (E2BIG)";
	case EPERM:
		return "Operation not permitted (EPERM)";
	case EINVAL:
		return "Invalid argument (EINVAL)";
	case EMFILE:
		return "Too many open files (EMFILE)";
	case EBADF:
		return "Bad file descriptor (EBADF)";
	default:
		return NULL;
	}
}

static _Noreturn void child_exit(int status)
{
	for (;;)
		(void)raw_syscall(SYS_exit_group, status, 0, 0, 0);
}

/* dup2 as arm64 has it: dup3, which refuses old == new. */
static long raw_dup2(int old, int new)
{
	return old == new ? new : raw_syscall(SYS_dup3, old, new, 0, 0);
}

static _Noreturn POSTFORK_NO_ASAN void fail(const struct exec_plan *p, const char *what, int err)
{
	const char *text = errno_text(err);
	struct line l = {.len = 0};
	char num[24];

	fmt_uint(num, (unsigned long)err, 1);
	if (p->json_log) {
		/* --log-format json: every line JSON, this one too. */
		put(&l, "{\"ts\":\"");
		put_timestamp(&l);
		put(&l, "\",\"level\":\"error\",\"ident\":\"worker\",\"pid\":");
		put_uint(&l, (unsigned long)raw_syscall(SYS_getpid, 0, 0, 0, 0), 1);
		put(&l, ",\"msg\":\"");
		put_json(&l, what);
		put(&l, ": ");
		put(&l, text ? text : "errno ");
		if (!text)
			put(&l, num);
		put(&l, "\",\"errno\":");
		put(&l, num);
		put(&l, "}");
	} else {
		put(&l, "sigvisor: worker: ");
		put(&l, what);
		put(&l, ": ");
		put(&l, text ? text : "errno ");
		if (!text)
			put(&l, num);
	}
	l.buf[l.len++] = '\n';
	(void)raw_syscall(SYS_write, STDERR_FILENO, l.buf, l.len, 0);
	if (p->errno_fd)
		(void)raw_syscall(SYS_write, *p->errno_fd, &err, sizeof(err), 0);
	child_exit(127);
}

_Noreturn POSTFORK_NO_ASAN void postfork_exec(const struct exec_plan *p)
{
	int tmp[POSTFORK_MAX_FDS];
	unsigned long none = 0; /* the kernel's sigset_t: 64 bits */
	long r, image = -1;

	if (p->fds_unshared) {
		/* Before anything else: until then the arbiter must not close an fd we
		 * need (spawn_vm_settle). A kernel before 5.9 has no close_range: copy
		 * the whole table, as a fork would have. */
		r = raw_syscall(SYS_close_range, p->keep_fds_below, ~0U, CLOSE_RANGE_UNSHARE, 0);
		if (r == -ENOSYS || r == -EINVAL)
			r = raw_syscall(SYS_unshare, CLONE_FILES, 0, 0, 0);
		if (r < 0)
			fail(p, "unshare the fd table", (int)-r);
		__atomic_store_n(p->fds_unshared, 1, __ATOMIC_RELEASE);
	}

	if (p->reset_only)
		reset_signal_dispositions_in(*p->reset_only);
	else
		reset_signal_dispositions();

	/* If the arbiter dies, its workers should drain and go rather than serve on
	 * unsupervised. Checked against the parent afterwards: it may already be gone. */
	if (raw_syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGTERM, 0, 0) < 0 ||
	    raw_syscall(SYS_getppid, 0, 0, 0, 0) != p->parent)
		child_exit(1);

	/* Two steps so that a listening fd already sitting in 3..3+n is not clobbered
	 * before it is copied: first above the target range, then down. The temporary
	 * copies are close-on-exec; dup2 clears that flag on the targets. */
	if (p->n_fds > sizeof(tmp) / sizeof(tmp[0]))
		fail(p, "too many sockets", E2BIG);
	/* The image's fd may lie in 3..3+n too: it goes above with the sockets. */
	if (p->exec_fd && (image = raw_syscall(SYS_fcntl, *p->exec_fd, F_DUPFD_CLOEXEC,
					       3 + (int)p->n_fds, 0)) < 0)
		fail(p, "dup the worker's image", (int)-image);
	for (unsigned i = 0; i < p->n_fds; i++) {
		r = raw_syscall(SYS_fcntl, p->fds[i], F_DUPFD_CLOEXEC, 3 + (int)p->n_fds, 0);
		if (r < 0)
			fail(p, "dup listening socket", (int)-r);
		tmp[i] = (int)r;
	}
	for (unsigned i = 0; i < p->n_fds; i++)
		if ((r = raw_dup2(tmp[i], 3 + (int)i)) < 0)
			fail(p, "dup2 listening socket", (int)-r);

	if (p->stdout_fd && (r = raw_dup2(*p->stdout_fd, STDOUT_FILENO)) < 0)
		fail(p, "dup2 stdout", (int)-r);

	if (p->listen_pid_digits)
		fmt_uint(p->listen_pid_digits, (unsigned long)raw_syscall(SYS_getpid, 0, 0, 0, 0),
			 1);

	if (p->drop_privileges) {
		/* Groups first: after setuid we could no longer change them. */
		if ((r = raw_syscall(SYS_setgroups, 1, &p->gid, 0, 0)) < 0)
			fail(p, "setgroups", (int)-r);
		if ((r = raw_syscall(SYS_setgid, p->gid, 0, 0, 0)) < 0)
			fail(p, "setgid", (int)-r);
		if ((r = raw_syscall(SYS_setuid, p->uid, 0, 0, 0)) < 0)
			fail(p, "setuid", (int)-r);
	}

	/* After the dups above (fds 3.. may lie above the soft limit given) and before
	 * the exec: the program sees the limit the arbiter was started with. */
	if (p->nofile && (r = raw_syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, p->nofile, NULL)) < 0)
		fail(p, "setrlimit RLIMIT_NOFILE", (int)-r);

	if ((r = raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof(none))) < 0)
		fail(p, "sigprocmask", (int)-r);

	/* A kernel or a filter that will not exec a memfd (execveat refused, vm.memfd_noexec
	 * raised since the memfd was made) still runs the worker: it is path as well. */
	if (image >= 0)
		(void)raw_syscall6(SYS_execveat, image, (long)"", (long)p->argv, (long)p->envp,
				   AT_EMPTY_PATH, 0);
	r = raw_syscall(SYS_execve, p->path, p->argv, p->envp, 0);
	fail(p, p->path, (int)-r);
}
