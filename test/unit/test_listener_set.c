/* Unit tests for sets of listening sockets (arbiter/listener_set.c): what a reload
 * builds from the current set, replaces and restores, on loopback and in a temporary
 * directory only. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "listener_set.h"

static char dir[64], spec_a[128], spec_b[128];

static int make_dir(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/sv-lset-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(spec_a, sizeof(spec_a), "unix:%s/a.sock", dir);
	snprintf(spec_b, sizeof(spec_b), "unix:%s/b.sock", dir);
	return 0;
}

static int remove_dir(void **state)
{
	(void)state;
	return rmdir(dir);
}

static bool exists(const char *spec)
{
	struct stat st;

	return lstat(spec + 5, &st) == 0;
}

static ino_t inode(int fd)
{
	struct stat st;

	assert_int_equal(fstat(fd, &st), 0);
	return st.st_ino;
}

/* The first set: from nothing, everything is opened; fds and names follow refresh. */
static void first_set(struct listener_set *set)
{
	static const struct listener_set none;
	char *binds[] = {"127.0.0.1:0", spec_a};
	char err[512] = "", want[256];

	memset(set, 0, sizeof(*set));
	assert_int_equal(listener_set_build(set, &none, binds, 2, 16, err, sizeof(err)), 0);
	assert_int_equal(set->n, 2);
	assert_null(set->fdnames);
	assert_int_equal(listener_set_refresh(set), 0);
	assert_int_equal(set->fds[0], set->l[0].fd);
	assert_int_equal(set->fds[1], set->l[1].fd);
	snprintf(want, sizeof(want), "%s:%s", set->l[0].fdname, set->l[1].fdname);
	assert_string_equal(set->fdnames, want);
	assert_true(listener_set_has(set, "127.0.0.1:0"));
	assert_true(listener_set_has(set, spec_a));
	assert_false(listener_set_has(set, spec_b));
	assert_true(exists(spec_a));
}

/* A reload keeps a (the same socket, its queue with it), adds b, drops the TCP one; a
 * rollback closes the new set without removing the path the old one still uses. */
static void test_reload_and_rollback(void **state)
{
	struct listener_set cur, saved = {0}, fresh;
	char *binds[] = {spec_a, spec_b};
	char err[512] = "";
	ino_t ino_a;

	(void)state;
	first_set(&cur);
	ino_a = inode(cur.l[1].fd);
	assert_int_equal(listener_set_build(&fresh, &cur, binds, 2, 16, err, sizeof(err)), 0);
	assert_int_equal(fresh.n, 2);
	assert_int_not_equal(fresh.l[0].fd, cur.l[1].fd);
	assert_true(inode(fresh.l[0].fd) == ino_a); /* a dup, not a new socket */
	assert_true(exists(spec_b));

	listener_set_replace(&cur, &saved, &fresh);
	assert_int_equal(fresh.n, 0);
	assert_null(fresh.fdnames);
	assert_int_equal(saved.n, 2);
	assert_non_null(saved.fdnames);
	assert_true(listener_set_has(&saved, "127.0.0.1:0"));
	assert_int_equal(listener_set_refresh(&cur), 0);
	assert_true(listener_set_has(&cur, spec_b));

	listener_set_restore(&cur, &saved);
	assert_int_equal(saved.n, 0);
	assert_null(saved.fdnames);
	assert_int_equal(cur.n, 2);
	assert_true(listener_set_has(&cur, "127.0.0.1:0"));
	assert_false(exists(spec_b)); /* only the new set used it */
	assert_true(exists(spec_a));  /* the old set's socket, still listening */
	assert_true(inode(cur.l[1].fd) == ino_a);

	listener_set_close(&cur, NULL);
	assert_int_equal(cur.n, 0);
	assert_null(cur.fdnames);
	assert_false(exists(spec_a));
}

/* A reload whose new set cannot be opened leaves nothing open and the old set whole. */
static void test_build_fails(void **state)
{
	struct listener_set cur, fresh;
	char *binds[] = {spec_a, spec_b, "127.0.0.1"};
	char err[512] = "";

	(void)state;
	first_set(&cur);
	assert_int_equal(listener_set_build(&fresh, &cur, binds, 3, 16, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "127.0.0.1"));
	assert_int_equal(fresh.n, 0);
	assert_false(exists(spec_b)); /* opened, then closed and removed */
	assert_true(exists(spec_a));  /* shared with the old set: kept */
	assert_int_equal(cur.n, 2);

	/* The reload after that closes the old set with the new one's paths kept. */
	binds[2] = "127.0.0.1:0";
	assert_int_equal(listener_set_build(&fresh, &cur, binds, 2, 16, err, sizeof(err)), 0);
	listener_set_close(&cur, &fresh);
	assert_true(exists(spec_a));
	listener_set_close(&fresh, NULL);
	assert_false(exists(spec_a));
	assert_false(exists(spec_b));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_reload_and_rollback, make_dir, remove_dir),
		cmocka_unit_test_setup_teardown(test_build_fails, make_dir, remove_dir),
	};

	return cmocka_run_group_tests_name("test_listener_set", tests, NULL, NULL);
}
