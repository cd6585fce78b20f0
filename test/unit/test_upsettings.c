/* Unit tests for the settings of the upgrade state (arbiter/upsettings.c) and their
 * command-line words (settings_words in arbiter/options.c): what an image saves before a
 * USR2 exec, the same image reads back after a rollback, field by field, whatever bytes
 * the COMMAND and the paths hold; the other lines of the state are not its business; a
 * state without settings, or with damaged ones, says so. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "options.h"
#include "upsettings.h"
#include "upstate.h"

static char *save(const struct settings *s)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	assert_int_equal(settings_save(f, s), 0);
	assert_int_equal(fclose(f), 0);
	return buf;
}

static int load(struct settings *s, const char *text, char *err, size_t errlen)
{
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	int r;

	assert_non_null(f);
	err[0] = '\0';
	r = settings_load(s, f, err, errlen);
	fclose(f);
	return r;
}

static void assert_str_same(const char *a, const char *b)
{
	if (!a || !b)
		assert_ptr_equal(a, b);
	else
		assert_string_equal(a, b);
}

/* Every field of struct settings: a field added there belongs here too. */
static void assert_settings_equal(const struct settings *a, const struct settings *b)
{
	assert_int_equal(a->n_binds, b->n_binds);
	for (size_t i = 0; i < a->n_binds; i++)
		assert_string_equal(a->binds[i], b->binds[i]);
	assert_int_equal(a->workers, b->workers);
	assert_str_same(a->config, b->config);
	assert_int_equal(a->timeout_ms, b->timeout_ms);
	assert_int_equal(a->graceful_timeout_ms, b->graceful_timeout_ms);
	assert_int_equal(a->ready_timeout_ms, b->ready_timeout_ms);
	assert_int_equal(a->shutdown_delay_ms, b->shutdown_delay_ms);
	assert_int_equal(a->ready_mode, b->ready_mode);
	assert_int_equal(a->notify_access, b->notify_access);
	assert_str_same(a->pidfile, b->pidfile);
	assert_str_same(a->log_file, b->log_file);
	assert_int_equal(a->log_format, b->log_format);
	assert_str_same(a->control, b->control);
	assert_str_same(a->metrics, b->metrics);
	assert_int_equal(a->loop, b->loop);
	assert_int_equal(a->bpf, b->bpf);
	assert_str_same(a->bpf_pin, b->bpf_pin);
	assert_int_equal(a->bpf_sigaction, b->bpf_sigaction);
	assert_int_equal(a->backlog, b->backlog);
	assert_str_same(a->user, b->user);
	assert_str_same(a->group, b->group);
	assert_int_equal(a->check, b->check);
	assert_int_equal(a->daemon, b->daemon);
	assert_int_equal(a->help, b->help);
	assert_int_equal(a->version, b->version);
	assert_int_equal(a->n_command, b->n_command);
	for (size_t i = 0; i < a->n_command; i++)
		assert_string_equal(a->command[i], b->command[i]);
	if (a->n_command)
		assert_null(b->command[b->n_command]);
}

/* Every option away from its default, from all three sources, and a COMMAND whose words
 * hold what a line cannot: a newline, a backslash, control bytes, an empty word. */
static void settings_everything(struct settings *s)
{
	char *argv[] = {"sigvisor",
			"-b",
			"unix:/tmp/a dir/with space.sock",
			"--bind=[::1]:8080",
			"--config",
			"/etc/sigvisor/sv=1.conf",
			"--timeout=0.25",
			"--ready-timeout",
			"1844674407370.999",
			"--shutdown-delay=18446744073709ms",
			"--ready-mode=start",
			"--notify-access=all",
			"--pid=/run/s\\v.pid",
			"--log-file=/var/log/\xc3\xa9t\xc3\xa9.log",
			"--log-format=json",
			"--control=/run/ctl\tsock",
			"--metrics=127.0.0.1:0",
			"--loop=io_uring",
			"--bpf=off",
			"--bpf-pin=/sys/fs/bpf/x",
			"--bpf-sigaction=off",
			"--backlog=7",
			"--user=nobody",
			"--group=nogroup",
			"--daemon",
			"--",
			"/bin/sh",
			"-c",
			"printf 'a\\n' \"$@\"\nexit 3\r",
			"",
			"--",
			"--check",
			"back\\slash\\x41",
			"\x01\x1f\x7f end",
			NULL};
	char err[512];

	settings_init(s);
	assert_int_equal(option_set(s, SOURCE_ENV, "graceful-timeout", "7.5", err, sizeof(err)), 0);
	assert_int_equal(option_set(s, SOURCE_CONFIG, "workers", "9", err, sizeof(err)), 0);
	assert_int_equal(options_parse_args(s, SOURCE_CMDLINE, 34, argv, 1, true, err, sizeof(err)),
			 0);
}

static void test_round_trip_keeps_every_field(void **state)
{
	struct settings in, out;
	char err[512], *text;

	(void)state;
	settings_everything(&in);
	text = save(&in);
	assert_int_equal(load(&out, text, err, sizeof(err)), 0);
	assert_settings_equal(&in, &out);
	assert_int_equal(out.binds_source, SOURCE_CMDLINE);
	settings_free(&in);
	settings_free(&out);
	free(text);
}

static void test_one_escaped_word_a_line(void **state)
{
	struct settings s;
	char *text;

	(void)state;
	settings_everything(&s);
	text = save(&s);
	assert_int_equal(strncmp(text, "settings 35\n", 12), 0);
	assert_non_null(strstr(text, "\nsetting --bind=unix:/tmp/a dir/with space.sock\n"));
	assert_non_null(strstr(text, "\nsetting --workers=9\n"));
	assert_non_null(strstr(text, "\nsetting --timeout=0.250\n"));
	assert_non_null(strstr(text, "\nsetting --graceful-timeout=7.500\n"));
	assert_non_null(strstr(text, "\nsetting --log-file=/var/log/\xc3\xa9t\xc3\xa9.log\n"));
	assert_non_null(strstr(text, "\nsetting --pid=/run/s\\\\v.pid\n"));
	assert_non_null(strstr(text, "\nsetting --control=/run/ctl\\x09sock\n"));
	assert_non_null(strstr(text, "\nsetting --daemon=on\n"));
	assert_non_null(strstr(text, "\nsetting --bpf-sigaction=off\n"));
	assert_non_null(strstr(text, "\nsetting --\nsetting /bin/sh\nsetting -c\n"));
	assert_non_null(strstr(text, "\nsetting printf 'a\\\\n' \"$@\"\\x0aexit 3\\x0d\n"));
	assert_non_null(strstr(text, "\nsetting \nsetting --\nsetting --check\n"));
	assert_non_null(strstr(text, "\nsetting \\x01\\x1f\\x7f end\n"));
	/* --check, --help and --version are never saved, not even as "off" */
	assert_null(strstr(text, "setting --help"));
	assert_null(strstr(text, "setting --version"));
	settings_free(&s);
	free(text);
}

static void test_defaults_and_the_default_bind(void **state)
{
	struct settings in, out;
	char err[512], *text;

	(void)state;
	settings_init(&in);
	text = save(&in);
	assert_int_equal(load(&out, text, err, sizeof(err)), 0);
	assert_settings_equal(&in, &out);
	assert_int_equal(out.binds_source, SOURCE_DEFAULT);
	assert_null(out.command);
	settings_free(&out);
	free(text);
	/* start-up fills in 127.0.0.1:8000 when nothing is bound: that is left to it */
	in.binds[0] = strdup("127.0.0.1:8000");
	in.n_binds = 1;
	text = save(&in);
	assert_null(strstr(text, "--bind"));
	assert_int_equal(load(&out, text, err, sizeof(err)), 0);
	assert_int_equal(out.n_binds, 0);
	settings_free(&in);
	settings_free(&out);
	free(text);
}

/* Saved amid the rest of a state: the lines of others are skipped, and the numbers do not
 * take the settings' lines for theirs. */
static void test_amid_the_state(void **state)
{
	struct settings in, out;
	struct upstate_numbers n = {0};
	char err[512], *text, *state_text;

	(void)state;
	settings_everything(&in);
	text = save(&in);
	assert_int_equal(asprintf(&state_text,
				  "sigvisor-upgrade 2\npool 2 1 1\ncounter spawned 2\n%s"
				  "listener 5 127.0.0.1:0\nworker 0 10 6 1 2 0 0 0 0 1 7 -\nend\n",
				  text),
			 (int)strlen(text) + 107);
	assert_int_equal(load(&out, state_text, err, sizeof(err)), 0);
	assert_settings_equal(&in, &out);
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
		assert_false(upstate_read_line(line, &n));
	settings_free(&in);
	settings_free(&out);
	free(text);
	free(state_text);
}

static void expect(const char *text, int want, const char *needle)
{
	struct settings s;
	char err[512];
	int r = load(&s, text, err, sizeof(err));

	if (r != want || !strstr(err, needle))
		print_error("'%s': r=%d err='%s', wanted %d and '%s'\n", text, r, err, want,
			    needle);
	assert_int_equal(r, want);
	assert_non_null(strstr(err, needle));
	assert_int_equal(strncmp(err, "the settings handed over: ", 26), 0);
	settings_free(&s);
}

static void test_missing_or_damaged(void **state)
{
	(void)state;
	expect("", -ENOENT, "none in the upgrade state");
	expect("sigvisor-upgrade 2\npool 2 1 1\nend\n", -ENOENT, "none");
	/* cut short, or lines added */
	expect("settings 2\nsetting --workers=3\n", -EINVAL, "1 words where the count says 2");
	expect("settings 0\nsetting --workers=3\n", -EINVAL, "1 words where the count says 0");
	expect("setting --workers=3\n", -EINVAL, "where the count says -1");
	expect("settings 1\nsettings 1\nsetting --workers=3\n", -EINVAL, "second count");
	expect("settings x\n", -EINVAL, "a bad or second count");
	expect("settings -1\n", -EINVAL, "a bad or second count");
	expect("settings 99999999999\n", -EINVAL, "a bad or second count");
	/* escapes other than \\ and \xHH, a raw control byte, a NUL */
	expect("settings 1\nsetting --pid=/a\\n\n", -EINVAL, "word 1 is not escaped");
	expect("settings 1\nsetting --pid=/a\\x0\n", -EINVAL, "not escaped");
	expect("settings 1\nsetting --pid=/a\\x00b\n", -EINVAL, "not escaped");
	expect("settings 1\nsetting --pid=/a\\xg1\n", -EINVAL, "not escaped");
	expect("settings 1\nsetting --pid=/a\\\n", -EINVAL, "not escaped");
	expect("settings 1\nsetting --pid=/a\tb\n", -EINVAL, "not escaped");
	/* words the parser refuses, or that would not serve */
	expect("settings 1\nsetting --nope=1\n", -EINVAL, "unknown option '--nope'");
	expect("settings 1\nsetting --workers=0\n", -EINVAL, "'--workers': '0'");
	expect("settings 1\nsetting --\n", -EINVAL, "must be followed by a worker COMMAND");
	expect("settings 1\nsetting --check\n", -EINVAL, "--check, --help or --version is on");
	expect("settings 1\nsetting --help=on\n", -EINVAL, "--check, --help or --version");
	expect("settings 1\nsetting -V\n", -EINVAL, "--check, --help or --version");
}

static void test_a_nul_byte_is_refused(void **state)
{
	static const char text[] = "settings 1\nsetting --pid=/a\0b\n";
	struct settings s;
	char err[512];
	FILE *f = fmemopen((void *)text, sizeof(text) - 1, "r");

	(void)state;
	assert_non_null(f);
	assert_int_equal(settings_load(&s, f, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not escaped"));
	fclose(f);
	settings_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_keeps_every_field),
		cmocka_unit_test(test_one_escaped_word_a_line),
		cmocka_unit_test(test_defaults_and_the_default_bind),
		cmocka_unit_test(test_amid_the_state),
		cmocka_unit_test(test_missing_or_damaged),
		cmocka_unit_test(test_a_nul_byte_is_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
