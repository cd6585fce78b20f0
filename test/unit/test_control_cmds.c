/* Unit tests for the control commands' pure parts: the "kill-worker" request
 * (arbiter/control_cmd.c) and where each setting came from for `sigvisor config`
 * (settings_describe, arbiter/options.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "control.h"
#include "options.h"

static void test_parse_kill(void **state)
{
	struct control_kill k;

	(void)state;
	assert_true(control_parse_kill("kill-worker 3 TERM", &k));
	assert_false(k.by_pid);
	assert_int_equal(k.n, 3);
	assert_string_equal(k.sig, "TERM");
	assert_false(k.force);
	assert_true(control_parse_kill("kill-worker pid:812 USR2 force", &k));
	assert_true(k.by_pid);
	assert_int_equal(k.n, 812);
	assert_string_equal(k.sig, "USR2");
	assert_true(k.force);
	assert_true(control_parse_kill("kill-worker 0 RTMIN+3", &k));
	assert_string_equal(k.sig, "RTMIN+3");
	assert_int_equal(control_parse_request("kill-worker 0 KILL"), CONTROL_KILL_WORKER);
	/* one spelling per request */
	static const char *const bad[] = {
		"kill-worker",
		"kill-worker 3",
		"kill-worker 3 ",
		"kill-worker 03 TERM",
		"kill-worker -3 TERM",
		"kill-worker 1234567890 TERM",
		"kill-worker 3 term",
		"kill-worker 3 SIGTERMSIGTERMSIGTERM",
		"kill-worker 3 TERM  force",
		"kill-worker 3 TERM force ",
		"kill-worker 3 TERM forced",
		"kill-worker pid: TERM",
		"kill-worker pid:x TERM",
		"kill-worker  3 TERM",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (control_parse_kill(bad[i], &k))
			print_error("'%s' parsed\n", bad[i]);
		assert_false(control_parse_kill(bad[i], &k));
		assert_int_equal(control_parse_request(bad[i]), CONTROL_UNKNOWN);
	}
}

static void test_parse_the_other_words(void **state)
{
	(void)state;
	assert_int_equal(control_parse_request("reopen"), CONTROL_REOPEN);
	assert_int_equal(control_parse_request("stop"), CONTROL_STOP);
	assert_int_equal(control_parse_request("stop quick"), CONTROL_STOP);
	assert_int_equal(control_parse_request("config"), CONTROL_CONFIG_TEXT);
	assert_int_equal(control_parse_request("config json"), CONTROL_CONFIG_JSON);
	assert_int_equal(control_parse_request("stop now"), CONTROL_UNKNOWN);
	assert_int_equal(control_parse_request("reopen "), CONTROL_UNKNOWN);
	assert_string_equal(control_request_name(CONTROL_KILL_WORKER), "kill-worker");
	assert_string_equal(control_request_name(CONTROL_CONFIG_JSON), "config");
	/* "workers" kept its spellings through the shared number parser */
	assert_int_equal(control_parse_request("workers 0"), CONTROL_WORKERS);
	assert_int_equal(control_parse_request("workers +12"), CONTROL_WORKERS);
	assert_int_equal(control_parse_request("workers 012"), CONTROL_UNKNOWN);
	assert_int_equal(control_parse_request("workers 1234567890"), CONTROL_UNKNOWN);
}

/* The origin and value settings_describe gives for name. */
static struct option_origin describe(const struct settings *s, const char *name, char **value)
{
	for (size_t i = 0;; i++) {
		struct option_origin o;
		const char *n;
		int r = settings_describe(s, i, &n, value, &o);

		if (r == -EAGAIN)
			continue;
		assert_int_equal(r, 0);
		if (strcmp(n, name) == 0)
			return o;
		free(*value);
	}
}

static void test_origins(void **state)
{
	char path[] = "/tmp/sv-unit-conf-XXXXXX", err[512], *v;
	char *argv[] = {"sigvisor", "-c", path, "--graceful-timeout", "7", NULL};
	struct settings s;
	struct option_origin o;
	size_t shown = 0;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	assert_true(write(fd, "# x\nworkers = 3\nbacklog = 64\n", 29) == 29);
	close(fd);
	assert_int_equal(options_load(&s, 5, argv, "--backlog 32 --ready-timeout 9 -b unix:/x", err,
				      sizeof(err)),
			 0);
	unlink(path);
	o = describe(&s, "workers", &v);
	assert_int_equal(o.source, SOURCE_CONFIG);
	assert_int_equal(o.line, 2);
	assert_string_equal(v, "3");
	free(v);
	o = describe(&s, "backlog", &v);
	assert_int_equal(o.source, SOURCE_CONFIG);
	assert_int_equal(o.line, 3);
	free(v);
	o = describe(&s, "ready-timeout", &v);
	assert_int_equal(o.source, SOURCE_ENV);
	assert_int_equal(o.line, 0);
	free(v);
	o = describe(&s, "graceful-timeout", &v);
	assert_int_equal(o.source, SOURCE_CMDLINE);
	assert_string_equal(v, "7");
	free(v);
	o = describe(&s, "timeout", &v);
	assert_int_equal(o.source, SOURCE_DEFAULT);
	assert_string_equal(v, "30");
	free(v);
	o = describe(&s, "bind", &v);
	assert_int_equal(o.source, SOURCE_ENV);
	assert_string_equal(v, "unix:/x");
	free(v);
	o = describe(&s, "pid", &v);
	assert_null(v);
	/* every option but --check, --help, --version, then the end */
	for (size_t i = 0;; i++) {
		const char *n;
		int r = settings_describe(&s, i, &n, &v, &o);

		if (r == -ENOENT)
			break;
		if (r == -EAGAIN)
			continue;
		assert_int_equal(r, 0);
		assert_true(strcmp(n, "check") && strcmp(n, "help") && strcmp(n, "version"));
		free(v);
		shown++;
	}
	assert_true(shown > 20);
	settings_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_kill),
		cmocka_unit_test(test_parse_the_other_words),
		cmocka_unit_test(test_origins),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
