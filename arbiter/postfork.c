/* The worker side of clone3(): async-signal-safe setup, then execve. See postfork.h.
 *
 * The arbiter blocks every signal; a blocked mask and ignored dispositions survive
 * execve, so a worker exec'd as-is would never see TERM. Here the child resets every
 * disposition to SIG_DFL and only then unblocks everything, so it starts as clean as
 * if a shell had launched it (SigBlk, SigIgn and SigCgt all 0). */
#include "postfork.h"
#include "sigreset.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

/* The message is built in a buffer and written with one write(2), so it cannot
 * interleave with the arbiter's lines; everything here is async-signal-safe. */
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

/* Format n in decimal, at least width digits, into buf (NUL-terminated). */
static void format_uint(char *buf, unsigned long n, int width)
{
	char tmp[24];
	int k = 0;

	do {
		tmp[k++] = (char)('0' + n % 10);
		n /= 10;
	} while (n || k < width);
	for (int i = 0; i < k; i++)
		buf[i] = tmp[k - 1 - i];
	buf[k] = '\0';
}

static void put_uint(struct line *l, unsigned long n, int width)
{
	char num[24];

	format_uint(num, n, width);
	put(l, num);
}

/* "2026-12-03T16:33:20.108Z" as the log's JSON lines have it, without gmtime (not
 * async-signal-safe): days to a civil date by Howard Hinnant's algorithm. */
static void put_timestamp(struct line *l)
{
	struct timespec ts;
	long days, sod, z, era, doe, yoe, doy, mp, d, m, y;

	clock_gettime(CLOCK_REALTIME, &ts);
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

static _Noreturn void fail(const struct exec_plan *p, const char *what, int err)
{
	const char *text = errno_text(err);
	struct line l = {.len = 0};
	char num[24];

	format_uint(num, (unsigned long)err, 1);
	if (p->json_log) {
		/* --log-format json: every line JSON, this one too. */
		put(&l, "{\"ts\":\"");
		put_timestamp(&l);
		put(&l, "\",\"level\":\"error\",\"ident\":\"worker\",\"pid\":");
		put_uint(&l, (unsigned long)getpid(), 1);
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
	(void)!write(STDERR_FILENO, l.buf, l.len);
	if (p->errno_fd)
		(void)!write(*p->errno_fd, &err, sizeof(err));
	_exit(127);
}

_Noreturn void postfork_exec(const struct exec_plan *p)
{
	int tmp[64];
	sigset_t none;

	reset_signal_dispositions();

	/* If the arbiter dies, its workers should drain and go rather than serve on
	 * unsupervised. Checked against the parent afterwards: it may already be gone. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != p->parent)
		_exit(1);

	/* Two steps so that a listening fd already sitting in 3..3+n is not clobbered
	 * before it is copied: first above the target range, then down. The temporary
	 * copies are close-on-exec; dup2 clears that flag on the targets. */
	if (p->n_fds > sizeof(tmp) / sizeof(tmp[0]))
		fail(p, "too many sockets", E2BIG);
	for (unsigned i = 0; i < p->n_fds; i++) {
		tmp[i] = fcntl(p->fds[i], F_DUPFD_CLOEXEC, 3 + (int)p->n_fds);
		if (tmp[i] < 0)
			fail(p, "dup listening socket", errno);
	}
	for (unsigned i = 0; i < p->n_fds; i++)
		if (dup2(tmp[i], 3 + (int)i) < 0)
			fail(p, "dup2 listening socket", errno);

	if (p->stdout_fd && dup2(*p->stdout_fd, STDOUT_FILENO) < 0)
		fail(p, "dup2 stdout", errno);

	if (p->listen_pid_digits)
		format_uint(p->listen_pid_digits, (unsigned long)getpid(), 1);

	if (p->drop_privileges) {
		/* Groups first: after setuid we could no longer change them. */
		if (setgroups(1, &p->gid) < 0)
			fail(p, "setgroups", errno);
		if (setgid(p->gid) < 0)
			fail(p, "setgid", errno);
		if (setuid(p->uid) < 0)
			fail(p, "setuid", errno);
	}

	/* After the dups above (fds 3.. may lie above the soft limit given) and before
	 * the exec: the program sees the limit the arbiter was started with. */
	if (p->nofile && setrlimit(RLIMIT_NOFILE, p->nofile) < 0)
		fail(p, "setrlimit RLIMIT_NOFILE", errno);

	sigemptyset(&none);
	if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
		fail(p, "sigprocmask", errno);

	execve(p->path, p->argv, p->envp);
	fail(p, p->path, errno);
}
