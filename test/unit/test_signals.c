/* Unit tests for signal intake (arbiter/signals.c) and signal names (shared/signames.c). */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "signals.h"
#include "signames.h"

/* si_code values as the kernel reports them (SI_* from <signal.h>, spelled out so a
 * test failure is easy to read against signals.h). */
#define CODE_USER   0	 /* kill(2) */
#define CODE_QUEUE  -1	 /* sigqueue(3) */
#define CODE_TKILL  -6	 /* tgkill(2), raise(3) */
#define CODE_KERNEL 0x80 /* the tty layer's TTIN/TTOU */

static const struct action_context running = {.phase = PHASE_RUNNING};

static struct action_context in_phase(enum arbiter_phase phase)
{
	struct action_context c = {.phase = phase};

	return c;
}

/* Expect an action; for ACTION_IGNORE also expect a reason (containing needle, if any),
 * otherwise expect none. */
static void expect(int sig, int32_t code, const struct action_context *ctx,
		   enum arbiter_action want, const char *needle)
{
	const char *why = "unset";
	enum arbiter_action a = signal_action(sig, code, ctx, &why);

	if (a != want)
		print_error("SIG%s code %d phase %d: %s, wanted %s (why: %s)\n", signal_name(sig),
			    code, ctx->phase, action_name(a), action_name(want),
			    why ? why : "NULL");
	assert_int_equal(a, want);
	if (want == ACTION_IGNORE) {
		assert_non_null(why);
		assert_true(strlen(why) > 0);
		if (needle && !strstr(why, needle))
			print_error("SIG%s: why '%s' lacks '%s'\n", signal_name(sig), why, needle);
		if (needle)
			assert_non_null(strstr(why, needle));
	} else {
		assert_null(why);
	}
}

static void test_term(void **state)
{
	(void)state;
	expect(SIGTERM, CODE_USER, &running, ACTION_SHUTDOWN_GRACEFUL, NULL);
	for (int p = PHASE_DELAYING; p <= PHASE_QUITTING; p++) {
		struct action_context c = in_phase((enum arbiter_phase)p);

		expect(SIGTERM, CODE_USER, &c, ACTION_IGNORE, "shutdown");
	}
}

static void test_int_quit(void **state)
{
	static const int sigs[] = {SIGINT, SIGQUIT};
	struct action_context delaying = in_phase(PHASE_DELAYING);
	struct action_context draining = in_phase(PHASE_DRAINING);
	struct action_context quitting = in_phase(PHASE_QUITTING);

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		expect(sigs[i], CODE_USER, &running, ACTION_SHUTDOWN_QUICK, NULL);
		/* Escalation: a second ^C turns a graceful shutdown (or its delay) quick. */
		expect(sigs[i], CODE_USER, &delaying, ACTION_SHUTDOWN_QUICK, NULL);
		expect(sigs[i], CODE_USER, &draining, ACTION_SHUTDOWN_QUICK, NULL);
		expect(sigs[i], CODE_USER, &quitting, ACTION_IGNORE, "quick");
		/* ^C from the terminal counts as much as kill -INT. */
		expect(sigs[i], CODE_KERNEL, &running, ACTION_SHUTDOWN_QUICK, NULL);
	}
}

static void test_ttin_ttou(void **state)
{
	static const int32_t process_codes[] = {CODE_USER, CODE_QUEUE, CODE_TKILL};

	(void)state;
	for (size_t i = 0; i < sizeof(process_codes) / sizeof(process_codes[0]); i++) {
		expect(SIGTTIN, process_codes[i], &running, ACTION_SCALE_UP, NULL);
		expect(SIGTTOU, process_codes[i], &running, ACTION_SCALE_DOWN, NULL);
	}
	/* A background read or write on the terminal, not an operator's request. */
	expect(SIGTTIN, CODE_KERNEL, &running, ACTION_IGNORE, "terminal");
	expect(SIGTTOU, CODE_KERNEL, &running, ACTION_IGNORE, "terminal");
	for (int p = PHASE_DELAYING; p <= PHASE_QUITTING; p++) {
		struct action_context c = in_phase((enum arbiter_phase)p);

		expect(SIGTTIN, CODE_USER, &c, ACTION_IGNORE, "shutdown");
		expect(SIGTTOU, CODE_USER, &c, ACTION_IGNORE, "shutdown");
	}
}

static void test_usr1_winch(void **state)
{
	struct action_context daemon = {.phase = PHASE_RUNNING, .daemon = true};
	struct action_context daemon_draining = {.phase = PHASE_DRAINING, .daemon = true};

	(void)state;
	expect(SIGUSR1, CODE_USER, &running, ACTION_REOPEN_LOGS, NULL);
	expect(SIGWINCH, CODE_USER, &running, ACTION_IGNORE, "daemon");
	/* A terminal resize while in the foreground. */
	expect(SIGWINCH, CODE_KERNEL, &running, ACTION_IGNORE, NULL);
	expect(SIGWINCH, CODE_USER, &daemon, ACTION_STOP_WORKERS, NULL);
	expect(SIGWINCH, CODE_USER, &daemon_draining, ACTION_IGNORE, "shutdown");
}

static void test_hup_usr2(void **state)
{
	struct action_context draining = in_phase(PHASE_DRAINING);

	(void)state;
	expect(SIGHUP, CODE_USER, &running, ACTION_RELOAD, NULL);
	expect(SIGUSR2, CODE_USER, &running, ACTION_UPGRADE, NULL);
	expect(SIGHUP, CODE_USER, &draining, ACTION_IGNORE, "shutdown");
	expect(SIGUSR2, CODE_USER, &draining, ACTION_IGNORE, "shutdown");
}

static void test_chld_and_others(void **state)
{
	static const int others[] = {SIGALRM, SIGURG, SIGPROF, SIGVTALRM, SIGCONT, SIGTSTP};
	struct action_context quitting = in_phase(PHASE_QUITTING);

	(void)state;
	/* Reaping never stops, whatever the phase. */
	expect(SIGCHLD, 1 /* CLD_EXITED */, &running, ACTION_REAP, NULL);
	expect(SIGCHLD, 1, &quitting, ACTION_REAP, NULL);
	expect(SIGPIPE, CODE_USER, &running, ACTION_IGNORE, NULL);
	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
		expect(others[i], CODE_USER, &running, ACTION_IGNORE, NULL);
	expect(SIGRTMIN + 2, CODE_QUEUE, &running, ACTION_IGNORE, NULL);
}

static void test_action_names(void **state)
{
	(void)state;
	for (int a = ACTION_IGNORE; a <= ACTION_UPGRADE; a++) {
		assert_non_null(action_name((enum arbiter_action)a));
		assert_true(strlen(action_name((enum arbiter_action)a)) > 0);
	}
	assert_string_equal(action_name(ACTION_REAP), "reap");
}

static void test_signal_names(void **state)
{
	char num[16];

	(void)state;
	assert_string_equal(signal_name(SIGTERM), "TERM");
	assert_string_equal(signal_name(SIGTTIN), "TTIN");
	assert_string_equal(signal_name(SIGWINCH), "WINCH");
	assert_string_equal(signal_name(SIGSYS), "SYS");
	assert_string_equal(signal_name(SIGRTMIN), "RTMIN+0");
	assert_string_equal(signal_name(SIGRTMIN + 2), "RTMIN+2");
	/* The per-signal buffer: an earlier result stays valid. */
	{
		const char *rt3 = signal_name(SIGRTMIN + 3);

		(void)signal_name(SIGRTMIN + 4);
		assert_string_equal(rt3, "RTMIN+3");
	}
	assert_string_equal(signal_name(0), "?");
	assert_string_equal(signal_name(-1), "?");
	assert_string_equal(signal_name(1000), "?");

	assert_int_equal(signal_from_name("SIGTTIN"), SIGTTIN);
	assert_int_equal(signal_from_name("ttin"), SIGTTIN);
	assert_int_equal(signal_from_name("TTIN"), SIGTTIN);
	assert_int_equal(signal_from_name("sigterm"), SIGTERM);
	assert_int_equal(signal_from_name("15"), 15);
	snprintf(num, sizeof(num), "%d", SIGUSR2);
	assert_int_equal(signal_from_name(num), SIGUSR2);
	assert_int_equal(signal_from_name("nope"), -1);
	assert_int_equal(signal_from_name(""), -1);
	assert_int_equal(signal_from_name(NULL), -1);
	assert_int_equal(signal_from_name("SIG"), -1);
	assert_int_equal(signal_from_name("0"), -1);
	assert_int_equal(signal_from_name("-9"), -1);
	assert_int_equal(signal_from_name("15x"), -1);
	assert_int_equal(signal_from_name("100000"), -1);
	/* Every name maps back to its number. */
	for (int sig = 1; sig < SIGRTMIN; sig++) {
		const char *n = signal_name(sig);

		if (strncmp(n, "SIG", 3) != 0)
			assert_int_equal(signal_from_name(n), sig);
	}
}

static void save_dispositions(struct sigaction *saved)
{
	for (int sig = 1; sig < NSIG; sig++)
		(void)sigaction(sig, NULL, &saved[sig]);
}

static void restore_dispositions(const struct sigaction *saved)
{
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			(void)sigaction(sig, &saved[sig], NULL);
}

static void test_block_all(void **state)
{
	static const int blocked[] = {SIGTERM, SIGHUP,	SIGINT,	 SIGQUIT,  SIGTTIN, SIGTTOU,
				      SIGCHLD, SIGUSR1, SIGUSR2, SIGWINCH, SIGALRM};
	/* The faults stay default; PIPE is ignored (a write to a closed log pipe must
	 * not raise a signal whose log line raises the next). */
	static const int not_blocked[] = {SIGSEGV, SIGBUS, SIGFPE,  SIGILL,
					  SIGTRAP, SIGSYS, SIGABRT, SIGPIPE};
	static struct sigaction saved[NSIG];
	struct sigaction ign = {.sa_handler = SIG_IGN}, now, pipe_now;
	sigset_t old, cur, ret;
	int r;

	(void)state;
	assert_int_equal(sigprocmask(SIG_SETMASK, NULL, &old), 0);
	save_dispositions(saved);
	/* As under nohup: an inherited SIG_IGN must not survive. */
	assert_int_equal(sigaction(SIGHUP, &ign, NULL), 0);

	r = signals_block_all(&ret);

	assert_int_equal(sigprocmask(SIG_SETMASK, NULL, &cur), 0);
	assert_int_equal(sigaction(SIGHUP, NULL, &now), 0);
	assert_int_equal(sigaction(SIGPIPE, NULL, &pipe_now), 0);
	restore_dispositions(saved);
	assert_int_equal(sigprocmask(SIG_SETMASK, &old, NULL), 0);

	assert_int_equal(r, 0);
	for (size_t i = 0; i < sizeof(blocked) / sizeof(blocked[0]); i++) {
		if (sigismember(&cur, blocked[i]) != 1)
			print_error("SIG%s is not blocked\n", signal_name(blocked[i]));
		assert_int_equal(sigismember(&cur, blocked[i]), 1);
		assert_int_equal(sigismember(&ret, blocked[i]), 1);
	}
	for (size_t i = 0; i < sizeof(not_blocked) / sizeof(not_blocked[0]); i++) {
		if (sigismember(&cur, not_blocked[i]) != 0)
			print_error("SIG%s is blocked\n", signal_name(not_blocked[i]));
		assert_int_equal(sigismember(&cur, not_blocked[i]), 0);
		assert_int_equal(sigismember(&ret, not_blocked[i]), 0);
	}
	assert_true(now.sa_handler == SIG_DFL);
	assert_true(pipe_now.sa_handler == SIG_IGN);
}

/* The whole intake path with a real signal: blocked, pending, read from the signalfd
 * with the si_code that tells a process sender from the kernel. */
static void test_signalfd_roundtrip(void **state)
{
	struct signalfd_siginfo si;
	sigset_t mask, old;
	char who[128];
	ssize_t n;
	int fd;

	(void)state;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTTIN);
	assert_int_equal(sigprocmask(SIG_BLOCK, &mask, &old), 0);
	fd = signals_open_fd(&mask);
	assert_true(fd >= 0);

	/* Nothing pending: a non-blocking read says so instead of waiting. */
	n = read(fd, &si, sizeof(si));
	assert_int_equal(n, -1);
	assert_int_equal(errno, EAGAIN);

	assert_int_equal(kill(getpid(), SIGTTIN), 0);
	n = read(fd, &si, sizeof(si));
	close(fd);
	assert_int_equal(sigprocmask(SIG_SETMASK, &old, NULL), 0);

	assert_int_equal(n, (ssize_t)sizeof(si));
	assert_int_equal(si.ssi_signo, SIGTTIN);
	assert_int_equal(si.ssi_code, SI_USER);
	assert_int_equal(si.ssi_pid, (uint32_t)getpid());
	expect(SIGTTIN, si.ssi_code, &running, ACTION_SCALE_UP, NULL);
	signal_describe_sender(&si, who, sizeof(who));
	{
		char want[32];

		snprintf(want, sizeof(want), "pid %d", (int)getpid());
		assert_non_null(strstr(who, want));
	}
}

static void test_describe_sender(void **state)
{
	struct signalfd_siginfo si;
	char buf[128];

	(void)state;
	memset(&si, 0, sizeof(si));
	si.ssi_code = CODE_KERNEL;
	signal_describe_sender(&si, buf, sizeof(buf));
	assert_string_equal(buf, "the kernel");

	/* A sender in an ancestor PID namespace shows up as pid 0. */
	memset(&si, 0, sizeof(si));
	si.ssi_code = CODE_USER;
	si.ssi_uid = 1234;
	signal_describe_sender(&si, buf, sizeof(buf));
	assert_non_null(strstr(buf, "outside our PID namespace"));
	assert_non_null(strstr(buf, "1234"));
}

/* The mode table whole: each mode x each control signal, from a process, with --daemon
 * (so WINCH counts). One row per mode, in the columns' order below. */
static void test_mode_table(void **state)
{
	static const int sigs[] = {SIGTERM, SIGINT,   SIGQUIT, SIGTTIN, SIGTTOU,
				   SIGUSR1, SIGWINCH, SIGHUP,  SIGUSR2};
	const enum arbiter_action G = ACTION_SHUTDOWN_GRACEFUL, Q = ACTION_SHUTDOWN_QUICK,
				  UP = ACTION_SCALE_UP, DN = ACTION_SCALE_DOWN,
				  LOG = ACTION_REOPEN_LOGS, W = ACTION_STOP_WORKERS,
				  R = ACTION_RELOAD, RL = ACTION_RELOAD_LATER, U = ACTION_UPGRADE,
				  UL = ACTION_UPGRADE_LATER, I = ACTION_IGNORE;
	static const struct {
		enum arbiter_phase phase;
		bool reloading, upgrading;
		enum arbiter_mode mode;
	} modes[] = {
		{PHASE_RUNNING, false, false, MODE_RUNNING},
		{PHASE_RUNNING, true, false, MODE_RELOADING},
		{PHASE_RUNNING, false, true, MODE_UPGRADING},
		{PHASE_RUNNING, true, true, MODE_RELOADING_UPGRADING},
		{PHASE_DELAYING, true, true, MODE_DELAYING},
		{PHASE_DRAINING, false, true, MODE_DRAINING},
		{PHASE_QUITTING, true, false, MODE_QUITTING},
	};
	/*                              TERM INT QUIT TTIN TTOU USR1 WINCH HUP USR2 */
	const enum arbiter_action want[MODE_MAX][9] = {
		[MODE_RUNNING] = {G, Q, Q, UP, DN, LOG, W, R, U},
		[MODE_RELOADING] = {G, Q, Q, UP, DN, LOG, W, RL, UL},
		[MODE_UPGRADING] = {G, Q, Q, UP, DN, LOG, W, R, I},
		[MODE_RELOADING_UPGRADING] = {G, Q, Q, UP, DN, LOG, W, RL, I},
		[MODE_DELAYING] = {I, Q, Q, I, I, LOG, I, I, I},
		[MODE_DRAINING] = {I, Q, Q, I, I, LOG, I, I, I},
		[MODE_QUITTING] = {I, I, I, I, I, LOG, I, I, I},
	};

	(void)state;
	for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
		struct action_context c = {.phase = modes[m].phase,
					   .reloading = modes[m].reloading,
					   .upgrading = modes[m].upgrading,
					   .daemon = true};

		assert_int_equal(arbiter_mode_of(&c), modes[m].mode);
		for (size_t k = 0; k < 9; k++) {
			if (want[modes[m].mode][k] !=
			    signal_action(sigs[k], CODE_USER, &c, &(const char *){NULL}))
				print_error("mode %s, SIG%s\n", arbiter_mode_name(modes[m].mode),
					    signal_name(sigs[k]));
			expect(sigs[k], CODE_USER, &c, want[modes[m].mode][k], NULL);
		}
	}
	assert_string_equal(arbiter_mode_name(MODE_RELOADING_UPGRADING), "reloading+upgrading");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_term),
		cmocka_unit_test(test_int_quit),
		cmocka_unit_test(test_ttin_ttou),
		cmocka_unit_test(test_usr1_winch),
		cmocka_unit_test(test_hup_usr2),
		cmocka_unit_test(test_mode_table),
		cmocka_unit_test(test_chld_and_others),
		cmocka_unit_test(test_action_names),
		cmocka_unit_test(test_signal_names),
		cmocka_unit_test(test_block_all),
		cmocka_unit_test(test_signalfd_roundtrip),
		cmocka_unit_test(test_describe_sender),
	};

	return cmocka_run_group_tests_name("test_signals", tests, NULL, NULL);
}
