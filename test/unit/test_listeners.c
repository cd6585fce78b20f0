/* Unit tests for --bind parsing and listening sockets (arbiter/listeners.c), on loopback only. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
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

#include "listeners.h"

static void test_parse_ipv4(void **state)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	socklen_t len = 0;
	char err[256] = "", host[INET_ADDRSTRLEN];

	(void)state;
	assert_int_equal(listener_parse("127.0.0.1:8000", &ss, &len, err, sizeof(err)), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(len, sizeof(struct sockaddr_in));
	assert_int_equal(ntohs(in->sin_port), 8000);
	assert_non_null(inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host)));
	assert_string_equal(host, "127.0.0.1");

	assert_int_equal(listener_parse("0.0.0.0:65535", &ss, &len, err, sizeof(err)), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(ntohs(in->sin_port), 65535);
	assert_int_equal(in->sin_addr.s_addr, htonl(INADDR_ANY));

	assert_int_equal(listener_parse("127.0.0.1:0", &ss, &len, err, sizeof(err)), 0);
	assert_int_equal(ntohs(in->sin_port), 0);
}

static void test_parse_ipv6(void **state)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	socklen_t len = 0;
	char err[256] = "";

	(void)state;
	assert_int_equal(listener_parse("[::1]:0", &ss, &len, err, sizeof(err)), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(len, sizeof(struct sockaddr_in6));
	assert_int_equal(ntohs(in6->sin6_port), 0);
	assert_memory_equal(&in6->sin6_addr, &in6addr_loopback, sizeof(in6addr_loopback));

	assert_int_equal(listener_parse("[::]:8080", &ss, &len, err, sizeof(err)), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(ntohs(in6->sin6_port), 8080);
	assert_memory_equal(&in6->sin6_addr, &in6addr_any, sizeof(in6addr_any));
}

static void test_parse_unix(void **state)
{
	struct sockaddr_storage ss;
	struct sockaddr_un *un = (struct sockaddr_un *)&ss;
	socklen_t len = 0;
	char err[256] = "", spec[sizeof(un->sun_path) + 8];

	(void)state;
	assert_int_equal(listener_parse("unix:/tmp/x.sock", &ss, &len, err, sizeof(err)), 0);
	assert_int_equal(ss.ss_family, AF_UNIX);
	assert_string_equal(un->sun_path, "/tmp/x.sock");
	assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + strlen("/tmp/x.sock") + 1);

	/* The longest path that fits, with its terminating NUL. */
	snprintf(spec, sizeof(spec), "unix:/%0*d", (int)sizeof(un->sun_path) - 2, 0);
	assert_int_equal(strlen(spec + 5), sizeof(un->sun_path) - 1);
	assert_int_equal(listener_parse(spec, &ss, &len, err, sizeof(err)), 0);
	assert_string_equal(un->sun_path, spec + 5);
}

static void expect_bad(const char *spec, const char *needle)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;
	char err[512] = "";
	int r = listener_parse(spec, &ss, &len, err, sizeof(err));

	if (r != -EINVAL || !strstr(err, spec) || (needle && !strstr(err, needle)))
		print_error("'%s': r=%d err='%s'%s%s\n", spec, r, err, needle ? ", wanted " : "",
			    needle ? needle : "");
	assert_int_equal(r, -EINVAL);
	/* The message names the spec, so a user with several --bind sees which one. */
	assert_non_null(strstr(err, spec));
	if (needle)
		assert_non_null(strstr(err, needle));
}

static void test_parse_errors(void **state)
{
	char spec[sizeof(((struct sockaddr_un *)0)->sun_path) + 16];

	(void)state;
	expect_bad("127.0.0.1", "HOST:PORT");
	expect_bad("127.0.0.1:99999", "port");
	expect_bad("127.0.0.1:65536", "port");
	expect_bad("127.0.0.1:abc", "port");
	expect_bad("127.0.0.1:", "port");
	expect_bad("127.0.0.1:-1", "port");
	expect_bad("127.0.0.1:80x", "port");
	expect_bad("[::1]8000", "[V6ADDR]:PORT");
	expect_bad("[::1", "[V6ADDR]:PORT");
	expect_bad("[::1]:", "port");
	expect_bad("::1:8000", NULL);
	expect_bad("unix:", "path");
	expect_bad(":8000", "host");
	expect_bad("[]:8000", "host");
	expect_bad("[zz]:1", "zz");
	expect_bad("[127.0.0.1]:1", NULL);
	expect_bad("", NULL);
	/* One byte too long for sun_path (no room for the NUL). */
	snprintf(spec, sizeof(spec), "unix:/%0*d",
		 (int)sizeof(((struct sockaddr_un *)0)->sun_path) - 1, 0);
	expect_bad(spec, "longer");
}

static void test_open_tcp(void **state)
{
	struct listener l, l2;
	struct sockaddr_in in;
	socklen_t len = sizeof(in);
	char err[512] = "", want[64];
	int r, one = 0, c;

	(void)state;
	r = listener_open(&l, "127.0.0.1:0", 16, err, sizeof(err));
	if (r < 0)
		print_error("listener_open: %s\n", err);
	assert_int_equal(r, 0);
	assert_true(l.fd >= 0);
	assert_string_equal(l.spec, "127.0.0.1:0");
	assert_null(l.unix_path);

	/* address shows the port the kernel chose, not 0. */
	assert_int_equal(getsockname(l.fd, (struct sockaddr *)&in, &len), 0);
	assert_int_not_equal(ntohs(in.sin_port), 0);
	snprintf(want, sizeof(want), "127.0.0.1:%u", ntohs(in.sin_port));
	assert_string_equal(l.address, want);
	assert_null(strchr(l.fdname, ':'));
	snprintf(want, sizeof(want), "127.0.0.1-%u", ntohs(in.sin_port));
	assert_string_equal(l.fdname, want);

	/* Listening, close-on-exec, blocking. */
	len = sizeof(one);
	assert_int_equal(getsockopt(l.fd, SOL_SOCKET, SO_ACCEPTCONN, &one, &len), 0);
	assert_int_equal(one, 1);
	assert_true(fcntl(l.fd, F_GETFD) & FD_CLOEXEC);
	assert_false(fcntl(l.fd, F_GETFL) & O_NONBLOCK);

	/* It answers: a connection waits in the backlog. */
	c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(c >= 0);
	assert_int_equal(connect(c, (struct sockaddr *)&in, sizeof(in)), 0);
	close(c);

	/* The same real address again: in use, and the message says so. */
	r = listener_open(&l2, l.address, 16, err, sizeof(err));
	if (r != -EADDRINUSE)
		print_error("second open: r=%d err='%s'\n", r, err);
	assert_int_equal(r, -EADDRINUSE);
	assert_non_null(strstr(err, "already in use"));
	assert_non_null(strstr(err, l.address));
	assert_int_equal(l2.fd, -1);
	listener_close(&l2, false); /* safe on a failed open */

	listener_close(&l, false);
	assert_int_equal(l.fd, -1);
	assert_null(l.spec);
	assert_null(l.address);
	assert_null(l.fdname);
	listener_close(&l, false); /* and twice */
}

static void test_open_bad_spec(void **state)
{
	struct listener l;
	char err[512] = "";

	(void)state;
	assert_int_equal(listener_open(&l, "127.0.0.1", 16, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "127.0.0.1"));
	assert_int_equal(l.fd, -1);
	listener_close(&l, false);
}

static void test_open_unix(void **state)
{
	char dir[] = "/tmp/sigvisor-test-XXXXXX", spec[160], path[128], err[512] = "";
	struct listener l, l2;
	struct stat st;
	int fd, r;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/s.sock", dir);
	snprintf(spec, sizeof(spec), "unix:%s", path);

	r = listener_open(&l, spec, 16, err, sizeof(err));
	if (r < 0)
		print_error("listener_open(%s): %s\n", spec, err);
	assert_int_equal(r, 0);
	assert_string_equal(l.unix_path, path);
	assert_string_equal(l.address, spec);
	assert_null(strchr(l.fdname, ':'));
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));

	/* A live server answers there: not removed, refused. */
	r = listener_open(&l2, spec, 16, err, sizeof(err));
	assert_int_equal(r, -EADDRINUSE);
	assert_non_null(strstr(err, "already in use"));
	assert_int_equal(lstat(path, &st), 0);
	listener_close(&l2, true); /* a failed open owns no path: nothing unlinked */
	assert_int_equal(lstat(path, &st), 0);

	/* Closed without unlinking, the file is stale: the next open replaces it. */
	listener_close(&l, false);
	assert_int_equal(lstat(path, &st), 0);
	r = listener_open(&l, spec, 16, err, sizeof(err));
	if (r < 0)
		print_error("reopen over a stale socket: %s\n", err);
	assert_int_equal(r, 0);
	listener_close(&l, true);
	assert_int_equal(lstat(path, &st), -1);
	assert_int_equal(errno, ENOENT);

	/* Something that is not a socket is never removed. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	r = listener_open(&l, spec, 16, err, sizeof(err));
	assert_int_equal(r, -EEXIST);
	assert_non_null(strstr(err, "not a socket"));
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	listener_close(&l, true);

	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

/* A connection made before the freeze can still be accepted and talks. */
static void expect_queued_alive(int lfd, int client)
{
	char c = 0;
	int s;

	assert_int_equal(fcntl(lfd, F_SETFL, O_NONBLOCK), 0);
	s = accept(lfd, NULL, NULL);
	assert_true(s >= 0);
	assert_int_equal(write(s, "x", 1), 1);
	assert_int_equal(read(client, &c, 1), 1);
	assert_int_equal(c, 'x');
	close(s);
	/* and nothing else entered the queue */
	assert_int_equal(accept(lfd, NULL, NULL), -1);
	assert_int_equal(errno, EAGAIN);
}

static void test_freeze_tcp(void **state)
{
	struct listener l;
	struct sockaddr_in in;
	socklen_t len = sizeof(in);
	char err[512] = "";
	struct pollfd p;
	int queued, late, r;

	(void)state;
	assert_int_equal(listener_open(&l, "127.0.0.1:0", 16, err, sizeof(err)), 0);
	assert_int_equal(getsockname(l.fd, (struct sockaddr *)&in, &len), 0);
	queued = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(queued, (struct sockaddr *)&in, sizeof(in)), 0);

	assert_int_equal(listener_freeze(l.fd), 0);
	/* A new SYN is dropped: no handshake completes (the client would retry). */
	late = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	r = connect(late, (struct sockaddr *)&in, sizeof(in));
	assert_true(r == -1 && errno == EINPROGRESS);
	p = (struct pollfd){.fd = late, .events = POLLOUT};
	assert_int_equal(poll(&p, 1, 100), 0);
	expect_queued_alive(l.fd, queued);
	close(late);

	/* Thawed, it takes connections again. */
	l.frozen = true;
	assert_int_equal(listener_thaw(&l, 16, err, sizeof(err)), 0);
	assert_false(l.frozen);
	late = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	r = connect(late, (struct sockaddr *)&in, sizeof(in));
	assert_true(r == 0 || errno == EINPROGRESS);
	p = (struct pollfd){.fd = late, .events = POLLOUT};
	assert_int_equal(poll(&p, 1, 5000), 1);
	len = sizeof(r);
	assert_int_equal(getsockopt(late, SOL_SOCKET, SO_ERROR, &r, &len), 0);
	assert_int_equal(r, 0);
	close(late);
	close(queued);
	listener_close(&l, false);
}

static void test_freeze_unix(void **state)
{
	char dir[] = "/tmp/sigvisor-test-XXXXXX", spec[160], err[512] = "";
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	struct listener l;
	int queued, late, old_fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(un.sun_path, sizeof(un.sun_path), "%s/s.sock", dir);
	snprintf(spec, sizeof(spec), "unix:%s", un.sun_path);
	assert_int_equal(listener_open(&l, spec, 16, err, sizeof(err)), 0);
	queued = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(queued, (struct sockaddr *)&un, sizeof(un)), 0);

	/* A new connection is refused at once; the queued one is still there. */
	assert_int_equal(listener_freeze(l.fd), 0);
	late = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(late, (struct sockaddr *)&un, sizeof(un)), -1);
	assert_int_equal(errno, ECONNREFUSED);
	close(late);
	expect_queued_alive(l.fd, queued);

	/* Thawed while a worker still has the old socket: a new one takes the path. */
	old_fd = dup(l.fd);
	l.frozen = true;
	assert_int_equal(listener_thaw(&l, 16, err, sizeof(err)), 0);
	assert_false(l.frozen);
	assert_string_equal(l.spec, spec);
	assert_string_equal(l.unix_path, un.sun_path);
	late = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(late, (struct sockaddr *)&un, sizeof(un)), 0);
	close(late);
	close(old_fd);
	close(queued);
	listener_close(&l, true);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_ipv4),  cmocka_unit_test(test_parse_ipv6),
		cmocka_unit_test(test_parse_unix),  cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_open_tcp),    cmocka_unit_test(test_open_bad_spec),
		cmocka_unit_test(test_open_unix),   cmocka_unit_test(test_freeze_tcp),
		cmocka_unit_test(test_freeze_unix),
	};

	return cmocka_run_group_tests_name("test_listeners", tests, NULL, NULL);
}
