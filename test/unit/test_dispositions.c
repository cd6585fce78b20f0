/* What a signal does to a process, from its /proc/PID/status masks
 * (arbiter/dispositions.c): every case of disposition_of, its names, and the parsing of
 * a status text. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dispositions.h"

#define BIT(sig) (1ULL << ((sig)-1))

static const char *name_of(uint64_t blk, uint64_t ign, uint64_t cgt, int sig)
{
	struct sigmasks m = {.blk = blk, .ign = ign, .cgt = cgt};

	return disposition_name(disposition_of(&m, sig));
}

static void test_a_caught_signal_is_handler(void **state)
{
	(void)state;
	assert_string_equal(name_of(0, 0, BIT(SIGUSR2), SIGUSR2), "handler");
	/* a default-stop or default-ignore signal caught is a handler too */
	assert_string_equal(name_of(0, 0, BIT(SIGTTIN), SIGTTIN), "handler");
	assert_string_equal(name_of(0, 0, BIT(SIGWINCH), SIGWINCH), "handler");
	/* only its own bit counts */
	assert_string_equal(name_of(0, 0, BIT(SIGUSR1), SIGUSR2), "default: kills");
}

static void test_an_ignored_signal_is_ignored(void **state)
{
	(void)state;
	assert_string_equal(name_of(0, BIT(SIGHUP), 0, SIGHUP), "ignored");
	assert_string_equal(name_of(0, BIT(SIGTTOU), 0, SIGTTOU), "ignored");
}

static void test_default_kills(void **state)
{
	static const int kills[] = {SIGHUP,  SIGINT,  SIGQUIT, SIGTERM, SIGUSR1,
				    SIGUSR2, SIGALRM, SIGPIPE, SIGABRT, SIGKILL};

	(void)state;
	for (size_t i = 0; i < sizeof(kills) / sizeof(kills[0]); i++)
		assert_string_equal(name_of(0, 0, 0, kills[i]), "default: kills");
	/* a real-time signal's default is to terminate */
	assert_string_equal(name_of(0, 0, 0, SIGRTMIN + 3), "default: kills");
	assert_string_equal(name_of(0, 0, 0, 64), "default: kills");
}

static void test_default_ignored(void **state)
{
	(void)state;
	assert_string_equal(name_of(0, 0, 0, SIGCHLD), "default: ignored");
	assert_string_equal(name_of(0, 0, 0, SIGWINCH), "default: ignored");
	assert_string_equal(name_of(0, 0, 0, SIGURG), "default: ignored");
	assert_string_equal(name_of(0, 0, 0, SIGCONT), "default: ignored");
}

static void test_default_stops(void **state)
{
	(void)state;
	assert_string_equal(name_of(0, 0, 0, SIGTSTP), "default: stops");
	assert_string_equal(name_of(0, 0, 0, SIGTTIN), "default: stops");
	assert_string_equal(name_of(0, 0, 0, SIGTTOU), "default: stops");
	assert_string_equal(name_of(0, 0, 0, SIGSTOP), "default: stops");
}

static void test_blocked_says_what_happens_once_unblocked(void **state)
{
	(void)state;
	assert_string_equal(name_of(BIT(SIGTERM), 0, 0, SIGTERM), "blocked (then: default: kills)");
	assert_string_equal(name_of(BIT(SIGUSR2), 0, BIT(SIGUSR2), SIGUSR2),
			    "blocked (then: handler)");
	/* blocked, an ignored signal waits pending too */
	assert_string_equal(name_of(BIT(SIGHUP), BIT(SIGHUP), 0, SIGHUP),
			    "blocked (then: ignored)");
	assert_string_equal(name_of(BIT(SIGWINCH), 0, 0, SIGWINCH),
			    "blocked (then: default: ignored)");
	assert_string_equal(name_of(BIT(SIGTTIN), 0, 0, SIGTTIN), "blocked (then: default: stops)");
}

static void test_kill_and_stop_cannot_be_changed(void **state)
{
	(void)state;
	/* whatever a (forged) status says */
	assert_string_equal(name_of(~0ULL, ~0ULL, ~0ULL, SIGKILL), "default: kills");
	assert_string_equal(name_of(~0ULL, ~0ULL, ~0ULL, SIGSTOP), "default: stops");
}

static void test_caught_wins_over_ignored(void **state)
{
	(void)state;
	/* the kernel never shows both; caught is what a handler being set means */
	assert_string_equal(name_of(0, BIT(SIGUSR1), BIT(SIGUSR1), SIGUSR1), "handler");
}

static void test_parse_status(void **state)
{
	const char *text = "Name:\tgunicorn: work\n"
			   "Umask:\t0022\n"
			   "State:\tS (sleeping)\n"
			   "Tgid:\t125\n"
			   "Pid:\t125\n"
			   "PPid:\t124\n"
			   "ShdPnd:\t0000000000000000\n"
			   "SigBlk:\t0000000000004000\n"
			   "SigIgn:\t0000000001001000\n"
			   "SigCgt:\t0000000180000a02\n";
	struct sigmasks m;
	pid_t ppid;
	char st, comm[8];

	(void)state;
	assert_int_equal(dispositions_parse_status(text, &m, &ppid, &st, comm, sizeof(comm)), 0);
	assert_int_equal(ppid, 124);
	assert_int_equal(st, 'S');
	assert_string_equal(comm, "gunicor"); /* cut to the buffer */
	assert_true(m.blk == BIT(SIGTERM));
	assert_true(m.ign == (BIT(SIGPIPE) | 0x1000000ULL));
	assert_true(m.cgt == 0x180000a02ULL);
	assert_string_equal(disposition_name(disposition_of(&m, SIGTERM)),
			    "blocked (then: default: kills)");
	assert_string_equal(disposition_name(disposition_of(&m, SIGUSR1)), "handler");
	assert_string_equal(disposition_name(disposition_of(&m, SIGUSR2)), "handler");
	assert_string_equal(disposition_name(disposition_of(&m, SIGHUP)), "default: kills");
	/* a line missing: no masks */
	assert_int_equal(dispositions_parse_status("Name:\tx\nState:\tS\nPPid:\t1\n", &m, &ppid,
						   &st, comm, sizeof(comm)),
			 -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_caught_signal_is_handler),
		cmocka_unit_test(test_an_ignored_signal_is_ignored),
		cmocka_unit_test(test_default_kills),
		cmocka_unit_test(test_default_ignored),
		cmocka_unit_test(test_default_stops),
		cmocka_unit_test(test_blocked_says_what_happens_once_unblocked),
		cmocka_unit_test(test_kill_and_stop_cannot_be_changed),
		cmocka_unit_test(test_caught_wins_over_ignored),
		cmocka_unit_test(test_parse_status),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
