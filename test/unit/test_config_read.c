/* Unit tests for how a config file is read (config_file_read in arbiter/config_file.c): in a
 * child process, within CONFIG_READ_TIMEOUT_MS, never from a pseudo-filesystem. read()
 * is wrapped so that a file named eio.conf fails as a dying disk would and one named
 * hang.conf never answers, as a stalled NFS or FUSE server would; the wrapper runs in
 * the reader child, where the real read happens.
 *
 * wrap: read
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "options.h"

ssize_t __real_read(int fd, void *buf, size_t n);
ssize_t __wrap_read(int fd, void *buf, size_t n);

static char dir[] = "/tmp/sigvisor-confread-XXXXXX";

static bool fd_is(int fd, const char *name)
{
	char link[64], target[512];
	ssize_t k;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	k = readlink(link, target, sizeof(target) - 1);
	if (k <= 0)
		return false;
	target[k] = '\0';
	return strlen(target) >= strlen(name) &&
	       strcmp(target + strlen(target) - strlen(name), name) == 0;
}

ssize_t __wrap_read(int fd, void *buf, size_t n)
{
	if (fd_is(fd, "/eio.conf")) {
		errno = EIO;
		return -1;
	}
	if (fd_is(fd, "/hang.conf"))
		for (;;)
			pause(); /* only SIGKILL ends this: the reader is killed at the deadline */
	return __real_read(fd, buf, n);
}

static const char *in_dir(const char *name)
{
	static char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return path;
}

static void write_file(const char *name, const char *data)
{
	FILE *f = fopen(in_dir(name), "we");

	assert_non_null(f);
	assert_int_equal(fputs(data, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Load path; return the result, the message in err, the time taken in *ms. */
static int load(const char *path, char *err, size_t errlen, uint64_t *ms)
{
	struct settings s;
	uint64_t t0 = mono_ms();
	int r;

	settings_init(&s);
	err[0] = '\0';
	r = options_load_config(&s, path, err, errlen);
	*ms = mono_ms() - t0;
	if (r < 0)
		assert_int_equal(s.workers, 2); /* nothing applied */
	settings_free(&s);
	return r;
}

static void expect(const char *path, const char *needle, uint64_t max_ms)
{
	char err[512];
	uint64_t ms;
	int r = load(path, err, sizeof(err), &ms);

	if (r != -EINVAL || !strstr(err, needle) || strncmp(err, path, strlen(path)) != 0 ||
	    ms > max_ms)
		print_error("%s: r=%d err='%s' in %llu ms, wanted '%s' within %llu ms\n", path, r,
			    err, (unsigned long long)ms, needle, (unsigned long long)max_ms);
	assert_int_equal(r, -EINVAL);
	assert_int_equal(strncmp(err, path, strlen(path)), 0);
	assert_non_null(strstr(err, needle));
	assert_true(ms <= max_ms);
}

static void test_read_error(void **state)
{
	(void)state;
	write_file("eio.conf", "workers = 3\n");
	expect(in_dir("eio.conf"), "cannot read the config file: Input/output error", 1000);
}

/* The reader is killed at the deadline, and the load says why. */
static void test_a_read_that_never_returns(void **state)
{
	char err[512];
	uint64_t ms;

	(void)state;
	write_file("hang.conf", "workers = 3\n");
	expect(in_dir("hang.conf"), "reading the config file took longer than 3 s",
	       CONFIG_READ_TIMEOUT_MS + 1000);
	/* No reader left behind: the next load is as quick as ever. */
	write_file("ok.conf", "workers = 3\n");
	assert_int_equal(load(in_dir("ok.conf"), err, sizeof(err), &ms), 0);
	assert_true(ms < 1000);
}

static void test_pseudo_filesystems(void **state)
{
	(void)state;
	expect("/proc/kmsg",
	       "/proc/kmsg: on procfs, a pseudo-filesystem; a config file must be "
	       "on a real filesystem",
	       1000);
	expect("/proc/self/mem", "on procfs", 1000);
	expect("/sys/kernel/uevent_seqnum", "on sysfs, a pseudo-filesystem", 1000);
	if (access("/sys/fs/cgroup/pids/tasks", F_OK) == 0)
		expect("/sys/fs/cgroup/pids/tasks", "on cgroupfs, a pseudo-filesystem", 1000);
}

static void test_regular_file_read_whole(void **state)
{
	struct settings s;
	char err[512];

	(void)state;
	write_file("ok.conf", "workers = 5\nbind = 127.0.0.1:9\n");
	settings_init(&s);
	assert_int_equal(options_load_config(&s, in_dir("ok.conf"), err, sizeof(err)), 0);
	assert_int_equal(s.workers, 5);
	assert_int_equal(s.n_binds, 1);
	assert_string_equal(s.binds[0], "127.0.0.1:9");
	settings_free(&s);
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[80];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_regular_file_read_whole),
		cmocka_unit_test(test_read_error),
		cmocka_unit_test(test_pseudo_filesystems),
		cmocka_unit_test(test_a_read_that_never_returns),
	};

	return cmocka_run_group_tests_name("test_config_read", tests, setup, teardown);
}
