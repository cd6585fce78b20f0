/* Unit tests for the listen queues read through sock_diag (arbiter/listen_queue.c), against
 * real listening sockets on loopback and in the abstract unix namespace: connections the
 * kernel completed and nobody accepted are counted, accepting one takes it off the count,
 * and the backlog is listen()'s. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "listen_queue.h"

#define N_CONN 5

/* A listener on an ephemeral loopback port (family AF_INET or AF_INET6), or -1 if the
 * family is not there (no ::1). */
static int tcp_listener(int family, int backlog, struct sockaddr_storage *ret, socklen_t *ret_len)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(ret, 0, sizeof(*ret));
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ret;

		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		*ret_len = sizeof(*in);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ret;

		in6->sin6_family = AF_INET6;
		in6->sin6_addr = in6addr_loopback;
		*ret_len = sizeof(*in6);
	}
	if (fd < 0 || bind(fd, (struct sockaddr *)ret, *ret_len) < 0 || listen(fd, backlog) < 0 ||
	    getsockname(fd, (struct sockaddr *)ret, ret_len) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int unix_listener(int backlog, struct sockaddr_un *ret, socklen_t *ret_len)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(ret, 0, sizeof(*ret));
	ret->sun_family = AF_UNIX;
	/* abstract: nothing to clean up */
	snprintf(ret->sun_path + 1, sizeof(ret->sun_path) - 1, "sigvisor-lq-%d", (int)getpid());
	*ret_len =
		(socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(ret->sun_path + 1));
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)ret, *ret_len), 0);
	assert_int_equal(listen(fd, backlog), 0);
	return fd;
}

static void connect_n(const struct sockaddr *sa, socklen_t len, int *out, int n)
{
	for (int i = 0; i < n; i++) {
		out[i] = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(out[i] >= 0);
		assert_int_equal(connect(out[i], sa, len), 0);
	}
}

/* The kernel finishes a loopback handshake in its softirq: the count may lag connect()'s
 * return by a moment. Look again until it is want, for at most 2 s. */
static struct listen_queue read_until(int fd, uint32_t want)
{
	struct listen_queue q = {0};

	for (int i = 0; i < 200; i++) {
		assert_int_equal(listen_queue_read(&fd, 1, &q), 0);
		if (q.found && q.queued == want)
			break;
		nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
	}
	return q;
}

static void check_family(int lfd, const struct sockaddr *sa, socklen_t len, int backlog)
{
	int c[N_CONN], a;
	struct listen_queue q = read_until(lfd, 0);

	assert_true(q.found);
	assert_int_equal(q.queued, 0);
	assert_int_equal(q.backlog, backlog);
	connect_n(sa, len, c, N_CONN);
	q = read_until(lfd, N_CONN);
	assert_true(q.found);
	assert_int_equal(q.queued, N_CONN);
	assert_int_equal(q.backlog, backlog);
	/* an accepted connection is no longer waiting */
	a = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(a >= 0);
	q = read_until(lfd, N_CONN - 1);
	assert_int_equal(q.queued, N_CONN - 1);
	close(a);
	for (int i = 0; i < N_CONN; i++)
		close(c[i]);
}

static void test_tcp4(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd = tcp_listener(AF_INET, 17, &ss, &len);

	(void)state;
	assert_true(fd >= 0);
	check_family(fd, (struct sockaddr *)&ss, len, 17);
	close(fd);
}

static void test_tcp6(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd = tcp_listener(AF_INET6, 23, &ss, &len);

	(void)state;
	if (fd < 0)
		skip(); /* no ::1 here (IPv6 disabled) */
	check_family(fd, (struct sockaddr *)&ss, len, 23);
	close(fd);
}

static void test_unix(void **state)
{
	struct sockaddr_un sun;
	socklen_t len;
	int fd = unix_listener(11, &sun, &len);

	(void)state;
	check_family(fd, (struct sockaddr *)&sun, len, 11);
	close(fd);
}

/* Several sockets of different families in one look, each matched to its own fd by its
 * inode, and a socket on the same port that is not ours (SO_REUSEPORT) not mixed in; an
 * fd that is no listener is reported as not found. */
static void test_mixed(void **state)
{
	struct sockaddr_storage ss, other_ss;
	struct sockaddr_un sun;
	socklen_t len, other_len;
	int one = 1, fds[4], c[3], u[2], other, pipefd[2];
	struct listen_queue q[4];
	struct sockaddr_in *in = (struct sockaddr_in *)&other_ss;

	(void)state;
	fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	other = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(setsockopt(fds[0], SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
	assert_int_equal(setsockopt(other, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
	memset(&ss, 0, sizeof(ss));
	((struct sockaddr_in *)&ss)->sin_family = AF_INET;
	((struct sockaddr_in *)&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	len = sizeof(struct sockaddr_in);
	assert_int_equal(bind(fds[0], (struct sockaddr *)&ss, len), 0);
	assert_int_equal(getsockname(fds[0], (struct sockaddr *)&ss, &len), 0);
	other_ss = ss;
	other_len = len;
	assert_int_equal(bind(other, (struct sockaddr *)in, other_len), 0);
	assert_int_equal(listen(other, 5), 0); /* listens first: not ours, stays empty */
	assert_int_equal(listen(fds[0], 9), 0);
	fds[1] = unix_listener(7, &sun, &len);
	assert_int_equal(pipe(pipefd), 0);
	fds[2] = pipefd[0];
	fds[3] = -1;
	/* The reuseport group spreads connections by hash: connect until 3 are ours. */
	connect_n((struct sockaddr *)&sun, len, u, 2);
	for (int i = 0, mine = 0; mine < 3; i++) {
		int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), pair[2] = {fds[0], other};
		struct listen_queue q2[2];

		assert_true(i < 200);
		assert_int_equal(connect(s, (struct sockaddr *)&ss, sizeof(struct sockaddr_in)), 0);
		/* wait until it shows in one of the two (the handshake's end may lag) */
		for (int k = 0; k < 200; k++) {
			assert_int_equal(listen_queue_read(pair, 2, q2), 0);
			if (q2[0].queued + q2[1].queued == (uint32_t)mine + 1)
				break;
			nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
		}
		if (q2[0].queued == (uint32_t)mine + 1) {
			c[mine++] = s;
		} else {
			int a = accept4(other, NULL, NULL, SOCK_CLOEXEC); /* the other one's */

			assert_true(a >= 0);
			close(a);
			close(s);
		}
	}
	assert_int_equal(listen_queue_read(fds, 4, q), 0);
	assert_true(q[0].found);
	assert_int_equal(q[0].queued, 3);
	assert_int_equal(q[0].backlog, 9);
	assert_true(q[1].found);
	assert_int_equal(q[1].queued, 2);
	assert_int_equal(q[1].backlog, 7);
	assert_false(q[2].found);
	assert_false(q[3].found);
	for (int i = 0; i < 3; i++)
		close(c[i]);
	for (int i = 0; i < 2; i++)
		close(u[i]);
	close(fds[0]);
	close(fds[1]);
	close(other);
	close(pipefd[0]);
	close(pipefd[1]);
}

static void test_limits(void **state)
{
	int fds[LISTEN_QUEUE_MAX + 1];
	struct listen_queue q[LISTEN_QUEUE_MAX + 1];

	(void)state;
	for (size_t i = 0; i < LISTEN_QUEUE_MAX + 1; i++)
		fds[i] = -1;
	assert_int_equal(listen_queue_read(fds, LISTEN_QUEUE_MAX + 1, q), -E2BIG);
	/* nothing to look at: no netlink socket either */
	assert_int_equal(listen_queue_read(fds, LISTEN_QUEUE_MAX, q), 0);
	assert_false(q[0].found);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tcp4),   cmocka_unit_test(test_tcp6),
		cmocka_unit_test(test_unix),   cmocka_unit_test(test_mixed),
		cmocka_unit_test(test_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
