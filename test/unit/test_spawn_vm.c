/* arbiter/spawn_vm.c with real children: a child that shares the arbiter's memory
 * until its exec runs the plan it was given even when the caller changes or frees its
 * own at once, writes nothing of the caller's (errno: a C-library wrapper failing in
 * the child would set the caller's, the two share their thread-local storage), and
 * gives its stack back once it has exec'd or exited. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "spawn_vm.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* Waits for the child by its pidfd; its exit status. */
static int wait_child(int pidfd)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	assert_int_equal(waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED), 0);
	close(pidfd);
	return si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
}

/* What fd has to say until EOF, within 10 s. */
static size_t read_all(int fd, char *buf, size_t cap)
{
	size_t len = 0;

	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ssize_t n;

		assert_int_equal(poll(&pfd, 1, 10000), 1);
		n = read(fd, buf + len, cap - 1 - len);
		assert_true(n >= 0);
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return len;
}

static void test_runs_its_own_copy_of_the_plan(void **state)
{
	char *pid_var = strdup("LISTEN_PID=                    "), *foo = strdup("FOO=bar");
	char *argv[] = {"sh", "-c", "printf '%s %s' \"$LISTEN_PID\" \"$FOO\"", NULL};
	char *envp[] = {pid_var, foo, NULL};
	int out[2], pidfd = -1;
	struct exec_plan plan;
	char buf[256], want[64];
	pid_t pid;

	(void)state;
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	plan = (struct exec_plan){
		.path = "/bin/sh",
		.argv = argv,
		.envp = envp,
		.listen_pid_digits = pid_var + strlen("LISTEN_PID="),
		.parent = getpid(),
		.stdout_fd = &out[1],
	};
	pid = spawn_exec(&plan, &pidfd);
	assert_true(pid > 0);
	/* the caller's plan changes and goes at once; the child has its copy */
	memcpy(foo, "FOO=xyz", 7);
	free(pid_var);
	free(foo);
	close(out[1]);
	read_all(out[0], buf, sizeof(buf));
	close(out[0]);
	snprintf(want, sizeof(want), "%d bar", (int)pid);
	assert_string_equal(buf, want);
	assert_int_equal(wait_child(pidfd), 0);
#if defined(__x86_64__) || defined(__aarch64__)
	assert_true(spawn_vm_shared());
#endif
	assert_int_equal(spawn_vm_in_flight(), 0);
}

static void test_failed_exec_leaves_our_errno(void **state)
{
	char *argv[] = {"missing", NULL}, *envp[] = {NULL};
	int err_pipe[2], pidfd = -1, child_errno = 0;
	struct exec_plan plan;
	pid_t pid;

	(void)state;
	assert_int_equal(pipe2(err_pipe, O_CLOEXEC), 0);
	plan = (struct exec_plan){
		.path = "/nonexistent/sigvisor-test",
		.argv = argv,
		.envp = envp,
		.parent = getpid(),
		.errno_fd = &err_pipe[1],
	};
	errno = 4242; /* spawn_exec leaves it alone when it succeeds */
	pid = spawn_exec(&plan, &pidfd);
	assert_true(pid > 0);
	/* the exit status alone, not a wait that could touch errno on failure */
	assert_int_equal(wait_child(pidfd), 127);
	assert_int_equal(errno, 4242);
	close(err_pipe[1]);
	assert_int_equal(read(err_pipe[0], &child_errno, sizeof(child_errno)),
			 (ssize_t)sizeof(child_errno));
	assert_int_equal(child_errno, ENOENT);
	close(err_pipe[0]);
	assert_int_equal(spawn_vm_in_flight(), 0);
}

/* The child starts on the caller's fd table (CLONE_FILES) and takes a copy of the low
 * fds it needs before it moves any: its dup2 onto fd 3 must not touch the caller's
 * fd 3, and none of the caller's fds above its socket reach it, not even one left
 * without close-on-exec. */
static void test_child_moves_fds_in_a_table_of_its_own(void **state)
{
	char *argv[] = {"sh", "-c", "exec ls /proc/self/fd >&3", NULL}, *envp[] = {NULL};
	int out[2], fd3, many[300], pidfd = -1;
	struct stat before, after;
	struct exec_plan plan;
	char buf[512], name[16];

	(void)state;
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	/* Our fd 3, the pipe's read end, not the child's socket. */
	fd3 = fcntl(out[0], F_DUPFD_CLOEXEC, 3);
	assert_true(fd3 >= 3);
	if (fd3 != 3) {
		assert_int_equal(dup3(fd3, 3, O_CLOEXEC), 3);
		close(fd3);
	}
	assert_int_equal(fstat(3, &before), 0);
	/* A large table above the child's socket, inheritable on purpose. */
	for (int i = 0; i < 300; i++)
		assert_true((many[i] = open("/dev/null", O_RDONLY)) > out[1]);
	plan = (struct exec_plan){
		.path = "/bin/sh", .argv = argv, .envp = envp, .fds = &out[1], .n_fds = 1};
	plan.parent = getpid();
	assert_true(spawn_exec(&plan, &pidfd) > 0);
	/* The fd is the child's to copy until it has a table of its own: closing it
	 * here at once failed the child's dup (EBADF) before it waited for that. */
	spawn_vm_settle();
	close(out[1]);
	read_all(out[0], buf, sizeof(buf));
	assert_int_equal(wait_child(pidfd), 0);
	assert_non_null(strstr(buf, "\n3\n"));
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "\n%d\n", many[i]);
		if (strstr(buf, name))
			fail_msg("fd %d reached the child:\n%s", many[i], buf);
		close(many[i]);
	}
	assert_int_equal(fstat(3, &after), 0);
	assert_true(before.st_ino == after.st_ino && before.st_dev == after.st_dev);
	close(out[0]);
	close(3);
	assert_int_equal(spawn_vm_in_flight(), 0);
}

/* Runs plan with the write end of a new pipe as its only fd (3), sets *clobber (if
 * any) to -1 as soon as the child is started, and waits for what it writes there and
 * for its exit: its exit status, its output in buf. */
static int run_read(struct exec_plan *plan, int *clobber, char *buf, size_t cap)
{
	int out[2], pidfd = -1;

	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	plan->fds = &out[1];
	plan->n_fds = 1;
	assert_true(spawn_exec(plan, &pidfd) > 0);
	if (clobber)
		*clobber = -1;
	spawn_vm_settle();
	close(out[1]);
	read_all(out[0], buf, cap);
	close(out[0]);
	return wait_child(pidfd);
}

/* The built-in worker's way (worker_image.h): a plan with exec_fd runs what that fd
 * holds, not its path, even when the fd sits where the child places its sockets (3)
 * and the caller's int changes at once; an fd that cannot be run leaves the path. */
static void test_runs_the_exec_fd_then_the_path(void **state)
{
	char *argv[] = {"sh", "-c", "echo from-fd >&3", NULL}, *envp[] = {NULL};
	char *argv2[] = {"sh", "-c", "echo from-path >&3", NULL};
	struct exec_plan plan;
	char buf[64];
	int image;

	(void)state;
	/* fd 3 is free here (the tests before close theirs): the image takes it. */
	image = open("/bin/sh", O_RDONLY | O_CLOEXEC);
	assert_int_equal(image, 3);
	plan = (struct exec_plan){.path = "/nonexistent/sigvisor-test",
				  .exec_fd = &image,
				  .argv = argv,
				  .envp = envp,
				  .parent = getpid()};
	/* The child has its copy of the int: ours changed at once changes nothing. */
	assert_int_equal(run_read(&plan, &image, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "from-fd\n");

	/* Not an executable (/dev/null): the path runs. */
	image = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(image >= 0);
	plan.path = "/bin/sh";
	plan.argv = argv2;
	assert_int_equal(run_read(&plan, NULL, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "from-path\n");
	close(3);
	close(image);
	assert_int_equal(spawn_vm_in_flight(), 0);
}

/* Stacks are reused: 200 children one after the other leave no mapping behind. */
static void test_stacks_come_back(void **state)
{
	char *argv[] = {"true", NULL}, *envp[] = {NULL};
	struct exec_plan plan = {.path = "/bin/true", .argv = argv, .envp = envp};
	int pidfds[8];

	(void)state;
	plan.parent = getpid();
	for (int round = 0; round < 25; round++) {
		for (int i = 0; i < 8; i++)
			assert_true(spawn_exec(&plan, &pidfds[i]) > 0);
		for (int i = 0; i < 8; i++)
			assert_int_equal(wait_child(pidfds[i]), 0);
		assert_int_equal(spawn_vm_in_flight(), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_runs_its_own_copy_of_the_plan),
		cmocka_unit_test(test_failed_exec_leaves_our_errno),
		cmocka_unit_test(test_stacks_come_back),
		cmocka_unit_test(test_child_moves_fds_in_a_table_of_its_own),
		cmocka_unit_test(test_runs_the_exec_fd_then_the_path),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
