/* Unit tests for option parsing (arbiter/options.c) and durations (shared/timeutil.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "options.h"
#include "timeutil.h"

/* argv is NULL-terminated and starts with the program name, as main() gets it. */
static int load(struct settings *s, const char *env, char **argv, char *err, size_t errlen)
{
	int argc = 0;

	while (argv[argc])
		argc++;
	err[0] = '\0';
	return options_load(s, argc, argv, env, err, errlen);
}

/* Load, expect -EINVAL, and expect every needle in the message. */
static void expect_error(const char *env, char **argv, const char *needle1, const char *needle2)
{
	struct settings s;
	char err[512];
	int r = load(&s, env, argv, err, sizeof(err));

	if (r != -EINVAL || !strstr(err, needle1) || (needle2 && !strstr(err, needle2)))
		print_error("argv[1]='%s' env='%s': r=%d err='%s', wanted '%s'%s%s\n",
			    argv[1] ? argv[1] : "", env ? env : "", r, err, needle1,
			    needle2 ? " and " : "", needle2 ? needle2 : "");
	assert_int_equal(r, -EINVAL);
	assert_non_null(strstr(err, needle1));
	if (needle2)
		assert_non_null(strstr(err, needle2));
	settings_free(&s);
}

static void test_defaults(void **state)
{
	char *argv[] = {"sigvisor", NULL};
	struct settings s;
	char err[256];

	(void)state;
	assert_int_equal(load(&s, NULL, argv, err, sizeof(err)), 0);
	assert_int_equal(s.workers, 2);
	assert_int_equal(s.timeout_ms, 30000);
	assert_int_equal(s.graceful_timeout_ms, 30000);
	assert_int_equal(s.ready_timeout_ms, 30000);
	assert_int_equal(s.shutdown_delay_ms, 0);
	assert_int_equal(s.backlog, 2048);
	assert_int_equal(s.loop, LOOP_AUTO);
	assert_int_equal(s.bpf, BPF_AUTO);
	assert_true(s.bpf_sigaction);
	assert_int_equal(s.log_format, LOG_FORMAT_TEXT);
	/* The arbiter fills in 127.0.0.1:8000 when no source gave a --bind. */
	assert_int_equal(s.n_binds, 0);
	assert_int_equal(s.binds_source, SOURCE_DEFAULT);
	assert_null(s.config);
	assert_null(s.pidfile);
	assert_null(s.log_file);
	assert_null(s.control);
	assert_null(s.metrics);
	assert_null(s.bpf_pin);
	assert_null(s.user);
	assert_null(s.group);
	assert_false(s.check);
	assert_false(s.daemon);
	assert_false(s.help);
	assert_false(s.version);
	assert_null(s.command);
	assert_int_equal(s.n_command, 0);
	assert_string_equal(loop_kind_name(s.loop), "auto");
	settings_free(&s);

	/* An empty SIGVISOR_ARGS is the same as none. */
	assert_int_equal(load(&s, "", argv, err, sizeof(err)), 0);
	assert_int_equal(s.workers, 2);
	assert_int_equal(s.n_binds, 0);
	settings_free(&s);
}

static void test_workers_forms(void **state)
{
	char *a1[] = {"sigvisor", "--workers", "3", NULL};
	char *a2[] = {"sigvisor", "--workers=3", NULL};
	char *a3[] = {"sigvisor", "-w3", NULL};
	char *a4[] = {"sigvisor", "-w", "3", NULL};
	char *a5[] = {"sigvisor", "-w", "1", NULL};
	char *a6[] = {"sigvisor", "-w", "4096", NULL};
	char **forms[] = {a1, a2, a3, a4};
	struct settings s;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		assert_int_equal(load(&s, NULL, forms[i], err, sizeof(err)), 0);
		assert_int_equal(s.workers, 3);
		settings_free(&s);
	}
	/* The bounds themselves are allowed. */
	assert_int_equal(load(&s, NULL, a5, err, sizeof(err)), 0);
	assert_int_equal(s.workers, 1);
	settings_free(&s);
	assert_int_equal(load(&s, NULL, a6, err, sizeof(err)), 0);
	assert_int_equal(s.workers, 4096);
	settings_free(&s);
}

static void test_bind_repeated(void **state)
{
	char *argv[] = {"sigvisor",	 "-b",	    "127.0.0.1:1",
			"--bind",	 "[::1]:2", "--bind=unix:/tmp/s",
			"-b127.0.0.1:4", NULL};
	struct settings s;
	char err[256];

	(void)state;
	assert_int_equal(load(&s, NULL, argv, err, sizeof(err)), 0);
	assert_int_equal(s.n_binds, 4);
	assert_string_equal(s.binds[0], "127.0.0.1:1");
	assert_string_equal(s.binds[1], "[::1]:2");
	assert_string_equal(s.binds[2], "unix:/tmp/s");
	assert_string_equal(s.binds[3], "127.0.0.1:4");
	assert_int_equal(s.binds_source, SOURCE_CMDLINE);
	settings_free(&s);
	assert_int_equal(s.n_binds, 0);
}

static void test_bind_limit(void **state)
{
	struct settings s;
	char err[256];
	int r = 0;

	(void)state;
	settings_init(&s);
	for (int i = 0; i < MAX_BINDS; i++) {
		r = option_set(&s, SOURCE_CMDLINE, "bind", "127.0.0.1:1", err, sizeof(err));
		assert_int_equal(r, 0);
	}
	assert_int_equal(s.n_binds, MAX_BINDS);
	r = option_set(&s, SOURCE_CMDLINE, "bind", "127.0.0.1:1", err, sizeof(err));
	assert_int_equal(r, -EINVAL);
	assert_non_null(strstr(err, "bind"));
	assert_int_equal(s.n_binds, MAX_BINDS);
	settings_free(&s);
}

static void test_other_options(void **state)
{
	char *argv[] = {"sigvisor",
			"-t",
			"0.5",
			"--graceful-timeout=250ms",
			"--ready-timeout",
			"1.25s",
			"--shutdown-delay",
			"5",
			"--loop",
			"io_uring",
			"--bpf=off",
			"--bpf-sigaction",
			"off",
			"--log-format",
			"json",
			"--backlog",
			"16",
			"--pid",
			"/run/a.pid",
			"--pid",
			"/run/b.pid",
			"-c",
			"/etc/sigvisor.conf",
			"--user",
			"nobody",
			"--group",
			"nogroup",
			"--log-file",
			"/var/log/s.log",
			"--control",
			"/run/s.sock",
			"--metrics",
			"127.0.0.1:9000",
			"--bpf-pin",
			"/sys/fs/bpf/x",
			"--daemon",
			"--check",
			"-V",
			"-h",
			NULL};
	struct settings s;
	char err[256];

	(void)state;
	assert_int_equal(load(&s, NULL, argv, err, sizeof(err)), 0);
	assert_int_equal(s.timeout_ms, 500);
	assert_int_equal(s.graceful_timeout_ms, 250);
	assert_int_equal(s.ready_timeout_ms, 1250);
	assert_int_equal(s.shutdown_delay_ms, 5000);
	assert_int_equal(s.loop, LOOP_IO_URING);
	assert_string_equal(loop_kind_name(s.loop), "io_uring");
	assert_int_equal(s.bpf, BPF_OFF);
	assert_false(s.bpf_sigaction);
	assert_int_equal(s.log_format, LOG_FORMAT_JSON);
	assert_int_equal(s.backlog, 16);
	/* A repeated single-valued option: the last one wins (and the first is freed). */
	assert_string_equal(s.pidfile, "/run/b.pid");
	assert_string_equal(s.config, "/etc/sigvisor.conf");
	assert_string_equal(s.user, "nobody");
	assert_string_equal(s.group, "nogroup");
	assert_string_equal(s.log_file, "/var/log/s.log");
	assert_string_equal(s.control, "/run/s.sock");
	assert_string_equal(s.metrics, "127.0.0.1:9000");
	assert_string_equal(s.bpf_pin, "/sys/fs/bpf/x");
	assert_true(s.daemon);
	assert_true(s.check);
	assert_true(s.version);
	assert_true(s.help);
	settings_free(&s);
	assert_null(s.pidfile);
	assert_null(s.config);
}

static void test_flag_values(void **state)
{
	char *argv[] = {"sigvisor", "--daemon=off", "--check=yes", NULL};
	struct settings s;
	char err[256];

	(void)state;
	assert_int_equal(load(&s, NULL, argv, err, sizeof(err)), 0);
	assert_false(s.daemon);
	assert_true(s.check);
	settings_free(&s);
}

static void test_bad_values(void **state)
{
	char *workers0[] = {"sigvisor", "--workers", "0", NULL};
	char *workers_abc[] = {"sigvisor", "--workers", "abc", NULL};
	char *workers_big[] = {"sigvisor", "--workers", "5000", NULL};
	char *workers_neg[] = {"sigvisor", "-w", "-1", NULL};
	char *workers_trail[] = {"sigvisor", "--workers=3x", NULL};
	char *timeout_x[] = {"sigvisor", "--timeout", "x", NULL};
	char *timeout_short[] = {"sigvisor", "-t5m", NULL};
	char *loop_poll[] = {"sigvisor", "--loop", "poll", NULL};
	char *bpf_maybe[] = {"sigvisor", "--bpf", "maybe", NULL};
	char *bpfsig_maybe[] = {"sigvisor", "--bpf-sigaction=maybe", NULL};
	char *logfmt_xml[] = {"sigvisor", "--log-format", "xml", NULL};
	char *backlog0[] = {"sigvisor", "--backlog", "0", NULL};
	char *pid_empty[] = {"sigvisor", "--pid", "", NULL};
	char *bind_empty[] = {"sigvisor", "--bind=", NULL};
	char *daemon_maybe[] = {"sigvisor", "--daemon=maybe", NULL};
	char *help_attached[] = {"sigvisor", "-hx", NULL};

	(void)state;
	expect_error(NULL, workers0, "workers", "0");
	expect_error(NULL, workers_abc, "workers", "abc");
	expect_error(NULL, workers_big, "workers", "5000");
	expect_error(NULL, workers_neg, "workers", "-1");
	expect_error(NULL, workers_trail, "workers", "3x");
	expect_error(NULL, timeout_x, "timeout", "'x'");
	expect_error(NULL, timeout_short, "timeout", "5m");
	expect_error(NULL, loop_poll, "loop", "poll");
	expect_error(NULL, bpf_maybe, "bpf", "maybe");
	expect_error(NULL, bpfsig_maybe, "bpf-sigaction", "maybe");
	expect_error(NULL, logfmt_xml, "log-format", "xml");
	expect_error(NULL, backlog0, "backlog", NULL);
	expect_error(NULL, pid_empty, "pid", NULL);
	expect_error(NULL, bind_empty, "bind", NULL);
	expect_error(NULL, daemon_maybe, "daemon", "maybe");
	expect_error(NULL, help_attached, "-h", NULL);
}

static void test_unknown_and_stray(void **state)
{
	char *nope[] = {"sigvisor", "--nope", NULL};
	char *nope_eq[] = {"sigvisor", "--nope=3", NULL};
	char *z[] = {"sigvisor", "-z", NULL};
	char *stray[] = {"sigvisor", "-w", "2", "serve", NULL};
	char *dash[] = {"sigvisor", "-", NULL};
	char *missing[] = {"sigvisor", "--workers", NULL};
	char *missing_short[] = {"sigvisor", "-w", NULL};
	char *missing_bind[] = {"sigvisor", "-b", NULL};

	(void)state;
	expect_error(NULL, nope, "--nope", NULL);
	expect_error(NULL, nope_eq, "--nope", NULL);
	expect_error(NULL, z, "-z", NULL);
	expect_error(NULL, stray, "serve", NULL);
	expect_error(NULL, dash, "'-'", NULL);
	expect_error(NULL, missing, "workers", "value");
	expect_error(NULL, missing_short, "workers", "value");
	expect_error(NULL, missing_bind, "bind", "value");
}

static void test_option_set_direct(void **state)
{
	struct settings s;
	char err[256];

	(void)state;
	settings_init(&s);
	assert_int_equal(option_set(&s, SOURCE_CONFIG, "nope", "1", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "nope"));
	assert_int_equal(option_set(&s, SOURCE_CONFIG, "workers", NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "workers"));
	/* --check, --help and --version make no sense in a config file. */
	assert_int_equal(option_set(&s, SOURCE_CONFIG, "check", NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "check"));
	assert_false(s.check);
	assert_int_equal(option_set(&s, SOURCE_CONFIG, "workers", "7", err, sizeof(err)), 0);
	assert_int_equal(s.workers, 7);
	assert_int_equal(option_set(&s, SOURCE_CMDLINE, "check", NULL, err, sizeof(err)), 0);
	assert_true(s.check);
	settings_free(&s);
}

static void test_command(void **state)
{
	char *argv[] = {"sigvisor", "-w", "1", "--", "/bin/echo", "hi", "--workers", "9", NULL};
	struct settings s;
	char err[256];

	(void)state;
	assert_int_equal(load(&s, NULL, argv, err, sizeof(err)), 0);
	/* Everything after "--" belongs to COMMAND, even words that look like options. */
	assert_int_equal(s.workers, 1);
	assert_int_equal(s.n_command, 4);
	assert_non_null(s.command);
	assert_string_equal(s.command[0], "/bin/echo");
	assert_string_equal(s.command[1], "hi");
	assert_string_equal(s.command[2], "--workers");
	assert_string_equal(s.command[3], "9");
	assert_null(s.command[4]); /* ready for execv */
	/* A copy, not argv's own strings. */
	assert_ptr_not_equal(s.command[0], argv[4]);
	settings_free(&s);
	assert_null(s.command);
	assert_int_equal(s.n_command, 0);
}

static void test_command_errors(void **state)
{
	char *empty[] = {"sigvisor", "-w", "1", "--", NULL};
	char *argv0[] = {"sigvisor", NULL};

	(void)state;
	expect_error(NULL, empty, "--", "COMMAND");
	/* SIGVISOR_ARGS may not carry a COMMAND. */
	expect_error("-w 2 -- /bin/true", argv0, "SIGVISOR_ARGS", "--");
}

static void test_cmdline_only(void **state)
{
	char *argv0[] = {"sigvisor", NULL};
	char *check[] = {"sigvisor", "--check", NULL};
	char *help[] = {"sigvisor", "--help", NULL};
	struct settings s;
	char err[256];

	(void)state;
	expect_error("--check", argv0, "SIGVISOR_ARGS", "check");
	expect_error("--help", argv0, "SIGVISOR_ARGS", "help");
	expect_error("-h", argv0, "SIGVISOR_ARGS", "help");
	expect_error("--version", argv0, "SIGVISOR_ARGS", "version");
	assert_int_equal(load(&s, NULL, check, err, sizeof(err)), 0);
	assert_true(s.check);
	settings_free(&s);
	assert_int_equal(load(&s, NULL, help, err, sizeof(err)), 0);
	assert_true(s.help);
	settings_free(&s);
}

/* Split and compare with a NULL-terminated list of expected words. */
static void expect_words(const char *in, const char *const *want)
{
	char err[256] = "";
	int n = -1, nwant = 0;
	char **w = options_split_words(in, &n, err, sizeof(err));

	if (!w)
		print_error("split '%s' failed: %s\n", in, err);
	assert_non_null(w);
	while (want[nwant])
		nwant++;
	assert_int_equal(n, nwant);
	for (int i = 0; i < nwant; i++)
		assert_string_equal(w[i], want[i]);
	assert_null(w[n]);
	options_free_words(w);
}

static void test_split_words(void **state)
{
	static const char *const none[] = {NULL};
	static const char *const simple[] = {"-w", "3", "--bind", "127.0.0.1:1", NULL};
	static const char *const quoted[] = {"a", "b c", "d e", "f g", "h\"i", "", "xy", NULL};
	static const char *const single[] = {"a\\b", "c\"d", NULL};
	static const char *const trailing_bs[] = {"abc\\", NULL};
	static const char *const escaped_quote[] = {"'", "it's", NULL};
	char err[256];
	int n = -1;

	(void)state;
	expect_words("", none);
	expect_words(" \t\n ", none);
	expect_words("  -w 3\t--bind\n127.0.0.1:1  ", simple);
	expect_words("a \"b c\" 'd e' f\\ g \"h\\\"i\" '' x''y", quoted);
	/* Inside single quotes a backslash is literal, as in sh. */
	expect_words("'a\\b' 'c\"d'", single);
	expect_words("abc\\", trailing_bs);
	expect_words("\\' it\\'s", escaped_quote);

	assert_null(options_split_words("-w \"3", &n, err, sizeof(err)));
	assert_non_null(strstr(err, "unterminated"));
	assert_null(options_split_words("--pid 'a b", &n, err, sizeof(err)));
	assert_non_null(strstr(err, "unterminated"));
	options_free_words(NULL);
}

static void test_env(void **state)
{
	char *argv0[] = {"sigvisor", NULL};
	struct settings s;
	char err[256];

	(void)state;
	assert_int_equal(load(&s, "--workers \"7\"  --bind 'unix:/tmp/a b.sock' --daemon", argv0,
			      err, sizeof(err)),
			 0);
	assert_int_equal(s.workers, 7);
	assert_true(s.daemon);
	assert_int_equal(s.n_binds, 1);
	assert_string_equal(s.binds[0], "unix:/tmp/a b.sock");
	assert_int_equal(s.binds_source, SOURCE_ENV);
	settings_free(&s);

	expect_error("-w \"3", argv0, "SIGVISOR_ARGS", "unterminated");
	expect_error("--workers 0", argv0, "SIGVISOR_ARGS", "workers");
	expect_error("serve", argv0, "SIGVISOR_ARGS", "serve");
}

static void test_precedence(void **state)
{
	char *w3[] = {"sigvisor", "-w", "3", NULL};
	char *b2c3[] = {"sigvisor", "-b", "b:2", "-b", "c:3", NULL};
	char *pid_b[] = {"sigvisor", "--pid", "/b", NULL};
	struct settings s;
	char err[256];

	(void)state;
	/* argv beats env for a single value; env's binds stay when argv gives none. */
	assert_int_equal(load(&s, "-w 5 -b 127.0.0.1:1", w3, err, sizeof(err)), 0);
	assert_int_equal(s.workers, 3);
	assert_int_equal(s.n_binds, 1);
	assert_string_equal(s.binds[0], "127.0.0.1:1");
	settings_free(&s);

	/* argv's binds replace env's list rather than extend it. */
	assert_int_equal(load(&s, "-b a:1", b2c3, err, sizeof(err)), 0);
	assert_int_equal(s.n_binds, 2);
	assert_string_equal(s.binds[0], "b:2");
	assert_string_equal(s.binds[1], "c:3");
	assert_int_equal(s.binds_source, SOURCE_CMDLINE);
	settings_free(&s);

	/* Two binds in env, one on argv: exactly argv's. */
	assert_int_equal(load(&s, "-b a:1 -b a:2 -w 4", b2c3, err, sizeof(err)), 0);
	assert_int_equal(s.n_binds, 2);
	assert_string_equal(s.binds[0], "b:2");
	assert_int_equal(s.workers, 4); /* env still beats the default */
	settings_free(&s);

	/* A string option from both: argv wins and env's copy is not leaked. */
	assert_int_equal(load(&s, "--pid /a", pid_b, err, sizeof(err)), 0);
	assert_string_equal(s.pidfile, "/b");
	settings_free(&s);
}

static void test_durations(void **state)
{
	static const struct {
		const char *in;
		uint64_t ms;
	} good[] = {
		{"30", 30000}, {"0.5", 500}, {"250ms", 250}, {"1.25s", 1250}, {"0", 0},
		{"0ms", 0},    {"2s", 2000}, {"0.001", 1},   {"1.5ms", 1},    {"86400", 86400000},
	};
	static const char *const bad[] = {"",	"x",	 "1.", "-1",   "5m",  ".5", "1s ",
					  " 1", "1.5.2", "ms", "1 ms", "1e3", "+1", "0x10"};
	uint64_t ms;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ms = UINT64_MAX;
		if (parse_duration_ms(good[i].in, &ms) != 0 || ms != good[i].ms)
			print_error("duration '%s' -> %llu, wanted %llu\n", good[i].in,
				    (unsigned long long)ms, (unsigned long long)good[i].ms);
		assert_int_equal(parse_duration_ms(good[i].in, &ms), 0);
		assert_int_equal(ms, good[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r;

		ms = 12345;
		r = parse_duration_ms(bad[i], &ms);
		if (r >= 0)
			print_error("duration '%s' accepted as %llu\n", bad[i],
				    (unsigned long long)ms);
		assert_true(r == -EINVAL || r == -ERANGE);
		assert_int_equal(ms, 12345); /* untouched on failure */
	}
	assert_int_equal(parse_duration_ms(NULL, &ms), -EINVAL);
	/* Far too large to be a number of milliseconds in 64 bits. */
	assert_int_equal(parse_duration_ms("99999999999999999999999", &ms), -ERANGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),	  cmocka_unit_test(test_workers_forms),
		cmocka_unit_test(test_bind_repeated),	  cmocka_unit_test(test_bind_limit),
		cmocka_unit_test(test_other_options),	  cmocka_unit_test(test_flag_values),
		cmocka_unit_test(test_bad_values),	  cmocka_unit_test(test_unknown_and_stray),
		cmocka_unit_test(test_option_set_direct), cmocka_unit_test(test_command),
		cmocka_unit_test(test_command_errors),	  cmocka_unit_test(test_cmdline_only),
		cmocka_unit_test(test_split_words),	  cmocka_unit_test(test_env),
		cmocka_unit_test(test_precedence),	  cmocka_unit_test(test_durations),
	};

	return cmocka_run_group_tests_name("test_options", tests, NULL, NULL);
}
