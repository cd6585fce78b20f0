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
#include <unistd.h>

/* write(2) the pieces of a message; strlen and write are async-signal-safe. */
static void say(const char *a, const char *b, const char *c)
{
	const char *parts[] = {"sigvisor: worker: ", a, b, c, "\n"};

	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		if (parts[i] && write(STDERR_FILENO, parts[i], strlen(parts[i])) < 0)
			return;
}

/* Format n in decimal into buf (NUL-terminated); async-signal-safe. */
static void format_uint(char *buf, unsigned long n)
{
	char tmp[24];
	size_t k = 0;

	do {
		tmp[k++] = (char)('0' + n % 10);
		n /= 10;
	} while (n);
	for (size_t i = 0; i < k; i++)
		buf[i] = tmp[k - 1 - i];
	buf[k] = '\0';
}

static _Noreturn void fail(const char *what, int err)
{
	char num[24];

	format_uint(num, (unsigned long)err);
	say(what, ": errno ", num);
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
		fail("too many sockets", E2BIG);
	for (unsigned i = 0; i < p->n_fds; i++) {
		tmp[i] = fcntl(p->fds[i], F_DUPFD_CLOEXEC, 3 + (int)p->n_fds);
		if (tmp[i] < 0)
			fail("dup listening socket", errno);
	}
	for (unsigned i = 0; i < p->n_fds; i++)
		if (dup2(tmp[i], 3 + (int)i) < 0)
			fail("dup2 listening socket", errno);

	if (p->listen_pid_digits)
		format_uint(p->listen_pid_digits, (unsigned long)getpid());

	if (p->drop_privileges) {
		/* Groups first: after setuid we could no longer change them. */
		if (setgroups(1, &p->gid) < 0)
			fail("setgroups", errno);
		if (setgid(p->gid) < 0)
			fail("setgid", errno);
		if (setuid(p->uid) < 0)
			fail("setuid", errno);
	}

	sigemptyset(&none);
	if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
		fail("sigprocmask", errno);

	execve(p->path, p->argv, p->envp);
	fail(p->path, errno);
}
