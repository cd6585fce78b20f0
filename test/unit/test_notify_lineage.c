/* --notify-access all: who may speak for a worker (arbiter/notify.c). A sender is
 * believed when /proc shows it descends from the worker, or, once it is gone, when the
 * kernel's SCM_CREDENTIALS name the worker's uid. The senders here are real children
 * of the test (the test process stands for the worker) sending on a real socketpair.
 *
 * The race these pin down was seen once in CI: systemd-notify --no-block sent and
 * exited, /proc/PID/stat opened on its zombie, its shell reaped it, and the read of
 * the stat failed with ESRCH, which was taken for "not of the tree": the message was
 * rejected. The wrapped read() reaps the sender right before the real read, every
 * time.
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
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "notify.h"

ssize_t __real_read(int fd, void *buf, size_t count);

/* A child to reap at the next read() (0: none). */
static pid_t reap_at_read;

ssize_t __wrap_read(int fd, void *buf, size_t count)
{
	if (reap_at_read > 0) {
		assert_int_equal(waitpid(reap_at_read, NULL, 0), reap_at_read);
		reap_at_read = 0;
	}
	return __real_read(fd, buf, count);
}

struct seen {
	int calls;
	bool believed;
	char status[64];
};

static bool record(void *ctx, const struct notify_msg *m, bool believed, uint64_t arrived_ms)
{
	struct seen *seen = ctx;

	(void)arrived_ms;
	seen->calls++;
	seen->believed = believed;
	snprintf(seen->status, sizeof(seen->status), "%.*s", (int)m->status_len,
		 m->status ? m->status : "");
	return true;
}

/* A child that sends msg on fd and exits; returned once it is a zombie (not reaped). */
static pid_t send_and_exit(int fd, const char *msg)
{
	siginfo_t info = {0};
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(send(fd, msg, strlen(msg), 0) == (ssize_t)strlen(msg) ? 0 : 1);
	assert_int_equal(waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT), 0);
	assert_int_equal(info.si_status, 0);
	return pid;
}

/* What notify_read made of one message from a child that exited, reaped when told. */
static struct seen one_message(uid_t worker_uid, bool reaped_before_read, uint64_t *rejected)
{
	struct notify n;
	struct seen seen = {0};
	int sv[2], on = 1;
	pid_t child;
	struct notify_sender from = {
		.pid = getpid(), .id = 1, .access = NOTIFY_ACCESS_ALL, .uid = worker_uid};

	unsetenv("NOTIFY_SOCKET");
	notify_init(&n, getpid());
	assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)), 0);
	child = send_and_exit(sv[1], "STATUS=gone\n");
	if (reaped_before_read)
		reap_at_read = child;
	notify_read(&n, sv[0], &from, record, &seen);
	if (!reaped_before_read)
		assert_int_equal(waitpid(child, NULL, 0), child);
	assert_int_equal(reap_at_read, 0); /* the read did look at /proc */
	*rejected = n.rejected;
	close(sv[0]);
	close(sv[1]);
	notify_close(&n);
	return seen;
}

static void test_a_zombie_child_is_of_the_tree(void **state)
{
	uint64_t rejected;
	/* Any uid: the lineage is shown by /proc, the uid is not looked at. */
	struct seen seen = one_message(getuid() + 1, false, &rejected);

	(void)state;
	assert_int_equal(seen.calls, 1);
	assert_true(seen.believed);
	assert_string_equal(seen.status, "gone");
	assert_int_equal(rejected, 0);
}

static void test_reaped_between_open_and_read_is_gone_not_a_stranger(void **state)
{
	uint64_t rejected;
	struct seen seen = one_message(getuid(), true, &rejected);

	(void)state;
	assert_int_equal(seen.calls, 1);
	assert_true(seen.believed);
	assert_string_equal(seen.status, "gone");
	assert_int_equal(rejected, 0);
}

static void test_gone_with_another_uid_is_not_believed(void **state)
{
	uint64_t rejected;
	struct seen seen = one_message(getuid() + 1, true, &rejected);

	(void)state;
	assert_int_equal(seen.calls, 1);
	assert_false(seen.believed);
	assert_int_equal(rejected, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_zombie_child_is_of_the_tree),
		cmocka_unit_test(test_reaped_between_open_and_read_is_gone_not_a_stranger),
		cmocka_unit_test(test_gone_with_another_uid_is_not_believed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
