/* libFuzzer target: the config file (options_load_config and inih under it).
 *
 * The input is the file. It goes into a memfd that is read back through
 * /proc/self/fd/N, so the parser opens, reads and closes a real file the way it does at
 * startup and on HUP, and nothing on disk is touched. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "options.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int memfd = -1;
static char path[64];

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_config: invariant failed: %s\n", what);
		abort();
	}
}

static void open_memfd(void)
{
	memfd = memfd_create("fuzz.conf", MFD_CLOEXEC);
	if (memfd < 0) {
		perror("fuzz_config: memfd_create");
		exit(1);
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct settings s;
	char err[1024] = "";
	int r;

	if (memfd < 0)
		open_memfd();
	if (ftruncate(memfd, 0) < 0 || pwrite(memfd, data, size, 0) != (ssize_t)size) {
		perror("fuzz_config: writing the memfd");
		exit(1);
	}

	settings_init(&s);
	r = options_load_config(&s, path, err, sizeof(err));
	check(r == 0 || r == -EINVAL, "returns 0 or -EINVAL");
	if (r < 0)
		check(strncmp(err, path, strlen(path)) == 0, "an error names the file");
	/* Only the command line may set these; a config file cannot name another one. */
	check(!s.check && !s.help && !s.version, "cmdline-only options stay off");
	check(s.config == NULL, "'config' is refused in a config file");
	check(s.n_binds <= MAX_BINDS, "n_binds <= MAX_BINDS");
	check(s.workers >= 1 && s.workers <= 4096, "workers in 1..4096");
	check(s.backlog >= 1 && s.backlog <= 65535, "backlog in 1..65535");
	check(!s.command, "a config file sets no COMMAND");
	settings_free(&s);
	return 0;
}
