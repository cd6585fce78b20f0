/* libFuzzer target: the settings of the upgrade state (settings_load, the words' escapes,
 * and options_parse_args under them).
 *
 * The input is a whole upgrade state as the rolled-back image reads it. Besides the
 * sanitizers: what parsed is what a running arbiter may have, and saving it and reading
 * that back gives the same settings (compared as the text each saves). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "upsettings.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_upsettings: invariant failed: %s\n", what);
		abort();
	}
}

static char *save(const struct settings *s)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f) {
		perror("fuzz_upsettings: open_memstream");
		exit(1);
	}
	check(settings_save(f, s) == 0, "what loaded saves");
	check(fclose(f) == 0, "the save is written");
	return buf;
}

static int load(struct settings *s, const void *data, size_t size, char *err, size_t errlen)
{
	/* A copy: fmemopen takes a buffer it could write to. Size 0 reads as empty. */
	char *copy = malloc(size + 1);
	FILE *f;
	int r;

	if (!copy) {
		perror("fuzz_upsettings: malloc");
		exit(1);
	}
	memcpy(copy, data, size);
	f = fmemopen(copy, size, "r");
	if (!f) {
		perror("fuzz_upsettings: fmemopen");
		exit(1);
	}
	r = settings_load(s, f, err, errlen);
	fclose(f);
	free(copy);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct settings s, again;
	char err[1024] = "", *first, *second;
	int r;

	r = load(&s, data, size, err, sizeof(err));
	check(r == 0 || r == -ENOENT || r == -EINVAL || r == -ENOMEM,
	      "returns 0, -ENOENT, -EINVAL or -ENOMEM");
	if (r < 0) {
		check(strncmp(err, "the settings handed over: ", 26) == 0,
		      "an error says what it is about");
		settings_free(&s);
		return 0;
	}
	check(!s.check && !s.help && !s.version, "--check, --help and --version stay off");
	check(s.n_binds <= MAX_BINDS, "n_binds <= MAX_BINDS");
	check(s.n_binds == 0 || s.binds_source == SOURCE_CMDLINE, "binds come as the command's");
	check(s.workers >= 1 && s.workers <= 4096, "workers in 1..4096");
	check(s.backlog >= 1 && s.backlog <= 65535, "backlog in 1..65535");
	check(!s.command == !s.n_command, "a COMMAND has words");

	first = save(&s);
	r = load(&again, first, strlen(first), err, sizeof(err));
	check(r == 0, "what was saved loads");
	second = save(&again);
	check(strcmp(first, second) == 0, "a round trip keeps the settings");
	free(first);
	free(second);
	settings_free(&again);
	settings_free(&s);
	return 0;
}
