/* Unit tests for reading a config file (options_load_config in arbiter/options_load.c): only
 * a regular file is read, never one that blocks, never ends or is not a file; the size
 * cap; read errors; lines too long for inih, which would cut them, and NUL bytes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "options.h"

static char dir[] = "/tmp/sigvisor-conf-XXXXXX";

/* dir/name; two buffers in turn, so that one call can take two such paths. */
static const char *in_dir(const char *name)
{
	static char paths[2][256];
	static unsigned turn;
	char *path = paths[turn++ % 2];

	snprintf(path, sizeof(paths[0]), "%s/%s", dir, name);
	return path;
}

static void write_file(const char *name, const char *data, size_t len)
{
	FILE *f = fopen(in_dir(name), "we");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* Load path into fresh settings; return the result, the message in err. */
static int load_config(const char *path, struct settings *s, char *err, size_t errlen)
{
	settings_init(s);
	err[0] = '\0';
	return options_load_config(s, path, err, errlen);
}

/* Expect -EINVAL with a message that starts with the path and holds needle. */
static void expect_refused(const char *path, const char *needle)
{
	struct settings s;
	char err[512];
	int r = load_config(path, &s, err, sizeof(err));

	if (r != -EINVAL || strncmp(err, path, strlen(path)) != 0 || !strstr(err, needle))
		print_error("%s: r=%d err='%s', wanted '%s'\n", path, r, err, needle);
	assert_int_equal(r, -EINVAL);
	assert_int_equal(strncmp(err, path, strlen(path)), 0);
	assert_non_null(strstr(err, needle));
	assert_int_equal(s.workers, 2); /* nothing applied */
	settings_free(&s);
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[64];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_regular_file_applied(void **state)
{
	struct settings s;
	char err[512];

	(void)state;
	write_file("ok.conf", "# comment\r\nworkers = 3\r\n", 24);
	assert_int_equal(load_config(in_dir("ok.conf"), &s, err, sizeof(err)), 0);
	assert_int_equal(s.workers, 3);
	settings_free(&s);
	/* Through a symlink: what it points to counts. */
	assert_int_equal(symlink(in_dir("ok.conf"), in_dir("ok.link")), 0);
	assert_int_equal(load_config(in_dir("ok.link"), &s, err, sizeof(err)), 0);
	assert_int_equal(s.workers, 3);
	settings_free(&s);
	write_file("empty.conf", "", 0);
	assert_int_equal(load_config(in_dir("empty.conf"), &s, err, sizeof(err)), 0);
	settings_free(&s);
}

/* Each of these once blocked, spun forever or read as an empty file. */
static void test_not_a_regular_file(void **state)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	(void)state;
	assert_int_equal(mkdir(in_dir("conf.d"), 0700), 0);
	expect_refused(in_dir("conf.d"), "is a directory");
	assert_int_equal(mkfifo(in_dir("fifo"), 0600), 0);
	expect_refused(in_dir("fifo"), "is a FIFO");
	expect_refused("/dev/zero", "is a character device");
	expect_refused("/dev/null", "is a character device");
	assert_int_equal(symlink("/dev/zero", in_dir("zero.link")), 0);
	expect_refused(in_dir("zero.link"), "is a character device");
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_true(strlen(in_dir("sock")) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, in_dir("sock"), strlen(in_dir("sock")) + 1);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	expect_refused(in_dir("sock"), "is a socket");
	close(fd);
	expect_refused(in_dir("missing.conf"), "No such file or directory");
}

static void test_size_cap(void **state)
{
	static char big[CONFIG_MAX_SIZE + 1];
	struct settings s;
	char err[512];
	FILE *f;

	(void)state;
	/* Exactly the cap, in comment lines, with one setting at the very end. */
	memset(big, '#', sizeof(big));
	for (size_t i = 99; i < sizeof(big); i += 100)
		big[i] = '\n';
	memcpy(big + CONFIG_MAX_SIZE - 12, "\nworkers = 5", 12);
	write_file("cap.conf", big, CONFIG_MAX_SIZE);
	assert_int_equal(load_config(in_dir("cap.conf"), &s, err, sizeof(err)), 0);
	assert_int_equal(s.workers, 5);
	settings_free(&s);
	/* One byte more: refused, naming the cap. */
	write_file("over.conf", big, CONFIG_MAX_SIZE + 1);
	expect_refused(in_dir("over.conf"), "larger than 1 MiB (1048576 bytes)");
	/* A sparse file of 1 GiB is refused from its size, without reading it. */
	f = fopen(in_dir("huge.conf"), "we");
	assert_non_null(f);
	assert_int_equal(ftruncate(fileno(f), 1L << 30), 0);
	fclose(f);
	expect_refused(in_dir("huge.conf"), "larger than 1 MiB");
}

/* Read errors, the deadline and pseudo-filesystems are in test_config_read.c. */
static void test_proc_file(void **state)
{
	(void)state;
	/* A /proc file is regular too, and says st_size 0; it is a kernel interface, not
	 * a file (/proc/kmsg would block for ever): refused before it is read. */
	expect_refused("/proc/sys/kernel/ostype", "on procfs, a pseudo-filesystem");
}

static void test_long_lines(void **state)
{
	char line[CONFIG_MAX_LINE + 1], file[512], want[512];
	size_t k;
	struct settings s;
	char err[512];

	(void)state;
	/* The longest line allowed arrives whole: a bind of exactly that length. */
	k = (size_t)snprintf(line, sizeof(line), "bind = unix:/");
	memset(line + k, 'a', CONFIG_MAX_LINE - k);
	line[CONFIG_MAX_LINE] = '\0';
	snprintf(file, sizeof(file), "workers = 4\r\n%s\r\n", line);
	write_file("max.conf", file, strlen(file));
	assert_int_equal(load_config(in_dir("max.conf"), &s, err, sizeof(err)), 0);
	assert_int_equal(s.workers, 4);
	assert_int_equal(s.n_binds, 1);
	assert_int_equal(strlen(s.binds[0]), CONFIG_MAX_LINE - strlen("bind = "));
	settings_free(&s);

	/* One byte longer, and without a final newline: an error naming file:line. */
	snprintf(file, sizeof(file), "workers = 4\n\n%sa", line);
	write_file("over.conf", file, strlen(file));
	snprintf(want, sizeof(want), "%s:3: line too long (%d bytes, at most %d)",
		 in_dir("over.conf"), CONFIG_MAX_LINE + 1, CONFIG_MAX_LINE);
	expect_refused(in_dir("over.conf"), want);

	/* A long comment ending in a setting once set it: inih parsed its tail as a line. */
	memset(file, 'x', 300);
	memcpy(file, "# ", 2);
	memcpy(file + 300 - 11, "workers = 7\n", 12);
	write_file("comment.conf", file, 301);
	expect_refused(in_dir("comment.conf"), ":1: line too long (300 bytes");
}

static void test_line_numbers(void **state)
{
	char line[CONFIG_MAX_LINE + 1], file[1024];

	(void)state;
	/* Lines near the limit count as one line each. */
	memset(line, '#', CONFIG_MAX_LINE);
	line[CONFIG_MAX_LINE] = '\0';
	snprintf(file, sizeof(file), "%s\n%s\nworkers = 2\nfrobnicate = 1\n", line, line);
	write_file("numbers.conf", file, strlen(file));
	expect_refused(in_dir("numbers.conf"), ":4: unknown option 'frobnicate'");
	/* inih's own complaint names the line too. */
	snprintf(file, sizeof(file), "%s\nworkers = 2\njust words\n", line);
	write_file("words.conf", file, strlen(file));
	expect_refused(in_dir("words.conf"), ":3: expected 'key = value'");
}

static void test_nul_byte(void **state)
{
	(void)state;
	/* inih would end the line at the NUL and take "workers = 3" from this one. */
	write_file("nul.conf", "# ok\nworkers = 3\0junk\n", 22);
	expect_refused(in_dir("nul.conf"), ":2: a NUL byte");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_regular_file_applied),
		cmocka_unit_test(test_not_a_regular_file),
		cmocka_unit_test(test_size_cap),
		cmocka_unit_test(test_proc_file),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_line_numbers),
		cmocka_unit_test(test_nul_byte),
	};

	return cmocka_run_group_tests_name("test_config_file", tests, setup, teardown);
}
