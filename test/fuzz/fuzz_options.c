/* libFuzzer target: the command line, SIGVISOR_ARGS and the whole options_load().
 *
 * Input: ARGV '\0' ENV '\0' CONFIG. ARGV is the command line, one word per '\n' line
 * (argv[0] is supplied); ENV is SIGVISOR_ARGS, split by options_split_words(); CONFIG
 * is what a config file named "fuzz.conf" holds. open() is wrapped (-Wl,--wrap=open)
 * so that "-c fuzz.conf" reads CONFIG from a memfd and every other path is missing:
 * the fuzzer must never open real files such as /dev/zero or /dev/stdin.
 *
 * Besides the sanitizers (LeakSanitizer included: every settings_free() must free all),
 * the target checks what the parsers promise: ranges of the numbers, cmdline-only
 * options only from the command line, a message in err on every failure, and that the
 * settings loaded survive settings_words() and a parse back. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "options.h"

#define MAX_WORDS 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int __wrap_open(const char *path, int flags, ...);

static const char *config_data;
static size_t config_len;

/* A new memfd each time: options.c opens the file twice (O_PATH to look, then to read)
 * and closes what it opens. A memfd is a regular file, as a config file must be. */
int __wrap_open(const char *path, int flags, ...)
{
	int fd;

	(void)flags;
	if (strcmp(path, "fuzz.conf") != 0) {
		errno = ENOENT;
		return -1;
	}
	fd = memfd_create("fuzz.conf", MFD_CLOEXEC);
	if (fd < 0 || pwrite(fd, config_data, config_len, 0) != (ssize_t)config_len) {
		perror("fuzz_options: the fuzz.conf memfd");
		abort();
	}
	return fd;
}

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_options: invariant failed: %s\n", what);
		abort();
	}
}

static void check_err(int r, const char *err)
{
	check(r == 0 || r == -EINVAL || r == -ENOMEM, "returns 0, -EINVAL or -ENOMEM");
	if (r < 0)
		check(err[0] != '\0', "a failure explains itself in err");
}

static void check_settings(const struct settings *s)
{
	check(s->n_binds <= MAX_BINDS, "n_binds <= MAX_BINDS");
	for (size_t i = 0; i < s->n_binds; i++)
		check(s->binds[i] && s->binds[i][0], "every bind is a non-empty string");
	check(s->workers >= 1 && s->workers <= 4096, "workers in 1..4096");
	check(s->backlog >= 1 && s->backlog <= 65535, "backlog in 1..65535");
	check((unsigned)s->loop <= LOOP_IO_URING, "loop is a known kind");
	check((unsigned)s->bpf <= BPF_OFF, "bpf is a known mode");
	check((unsigned)s->ready_mode <= READY_START, "ready_mode is a known mode");
	check((unsigned)s->log_format <= LOG_FORMAT_JSON, "log_format is a known format");
	check(!s->command == !s->n_command, "command and n_command agree");
	if (s->command) {
		for (size_t i = 0; i < s->n_command; i++)
			check(s->command[i] != NULL, "every COMMAND word is set");
		check(s->command[s->n_command] == NULL, "COMMAND is NULL-terminated");
	}
}

/* Split the ARGV part into words at '\n'; argv[0] is the program name. */
static int make_argv(char *buf, char **argv)
{
	int argc = 0;

	argv[argc++] = "sigvisor";
	if (!*buf)
		goto out;
	for (char *p = buf; argc < MAX_WORDS - 1;) {
		char *nl = strchr(p, '\n');

		argv[argc++] = p;
		if (!nl)
			break;
		*nl = '\0';
		p = nl + 1;
	}
out:
	argv[argc] = NULL;
	return argc;
}

static void fuzz_split(const char *env)
{
	char err[256] = "";
	int n = -1;
	char **words = options_split_words(env, &n, err, sizeof(err));

	if (!words) {
		check(err[0] != '\0', "options_split_words explains a failure");
		return;
	}
	check(n >= 0 && (size_t)n <= strlen(env) / 2 + 1, "word count fits the input");
	for (int i = 0; i < n; i++)
		check(words[i] != NULL && strlen(words[i]) <= strlen(env), "words are shorter");
	check(words[n] == NULL, "the word list is NULL-terminated");
	options_free_words(words);
}

static void fuzz_parse_args(int argc, char **argv, enum option_source src, bool allow_command)
{
	struct settings s;
	char err[512] = "";
	int r;

	settings_init(&s);
	r = options_parse_args(&s, src, argc, argv, 1, allow_command, err, sizeof(err));
	check_err(r, err);
	if (r == 0) {
		check_settings(&s);
		if (src != SOURCE_CMDLINE)
			check(!s.check && !s.help && !s.version, "cmdline-only stays off");
		if (!allow_command)
			check(!s.command, "no COMMAND where none is allowed");
	}
	settings_free(&s);
}

/* option_set() straight: "name=value" words, and bare words as flags. */
static void fuzz_option_set(int argc, char **argv)
{
	struct settings s;

	settings_init(&s);
	for (int i = 1; i < argc; i++) {
		char name[128], err[512] = "";
		const char *eq = strchr(argv[i], '=');
		size_t len = eq ? (size_t)(eq - argv[i]) : strlen(argv[i]);
		enum option_source src = (enum option_source)(SOURCE_ENV + i % 3);
		int r;

		if (len >= sizeof(name))
			continue;
		memcpy(name, argv[i], len);
		name[len] = '\0';
		r = option_set(&s, src, name, eq ? eq + 1 : NULL, err, sizeof(err));
		check_err(r, err);
	}
	check_settings(&s);
	settings_free(&s);
}

/* settings_words() (the settings a USR2 hands over for a rollback): parsed back, the
 * words give settings that make the same words. */
static void check_words_round_trip(const struct settings *s)
{
	struct settings back;
	char err[512] = "";
	int n, n2, r;
	char **words = settings_words(s, &n), **again;

	check(words != NULL, "settings_words");
	settings_init(&back);
	r = options_parse_args(&back, SOURCE_CMDLINE, n, words, 0, true, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "fuzz_options: words do not parse back: %s\n", err);
	check(r == 0, "the words of settings_words() parse back");
	again = settings_words(&back, &n2);
	check(again != NULL && n2 == n, "as many words again");
	for (int i = 0; i < n; i++)
		check(strcmp(words[i], again[i]) == 0, "the same words again");
	options_free_words(words);
	options_free_words(again);
	settings_free(&back);
}

static void fuzz_load(int argc, char **argv, const char *env)
{
	struct settings s;
	char err[1024] = "";
	int r;

	r = options_load(&s, argc, argv, env, err, sizeof(err));
	check_err(r, err);
	if (r == 0) {
		check_settings(&s);
		if (argc == 1)
			check(!s.check && !s.help && !s.version, "cmdline-only stays off");
		check_words_round_trip(&s);
	}
	settings_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A private NUL-terminated copy: the parts are C strings, and make_argv cuts. */
	char *buf = malloc(size + 1), *argv[MAX_WORDS], *env = NULL, *nul;
	int argc;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	config_data = NULL;
	config_len = 0;
	nul = memchr(buf, '\0', size);
	if (nul) {
		env = nul + 1;
		nul = memchr(env, '\0', size - (size_t)(env - buf));
		if (nul) {
			config_data = nul + 1;
			config_len = size - (size_t)(config_data - buf);
		}
	}

	if (env)
		fuzz_split(env);
	fuzz_load(1, (char *[]){"sigvisor", NULL}, env);
	argc = make_argv(buf, argv);
	fuzz_parse_args(argc, argv, SOURCE_CMDLINE, true);
	fuzz_parse_args(argc, argv, SOURCE_ENV, false);
	fuzz_option_set(argc, argv);
	fuzz_load(argc, argv, env);
	free(buf);
	return 0;
}
