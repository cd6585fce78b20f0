/* What runs in a new worker between clone3() and execve().
 *
 * The child runs in the arbiter's own memory (spawn_vm.h), or in a copy of it taken at
 * an arbitrary point where memory cannot be shared: only raw system calls there
 * (rawsys.h, no errno) and no writes but to its own stack and plan. Everything is
 * prepared by the arbiter before the clone: argv, envp, the fds to hand over. The
 * child only fills in its own pid, moves fds, cleans its signal state and exec's. */
#pragma once

#include <stdbool.h>
#include <sys/resource.h>
#include <sys/types.h>

#define LISTEN_PID_DIGITS 20
/* The most fds a plan may hand over: every listening socket (options.h's MAX_BINDS,
 * 64) and the built-in worker's heartbeat memfd after them. */
#define POSTFORK_MAX_FDS 65

struct exec_plan {
	const char *path; /* absolute path, or /proc/self/exe for the built-in worker */
	/* The signals whose disposition is not SIG_DFL in the arbiter
	 * (signal_dispositions_set, sigreset.h): the child resets these only. NULL: every
	 * one (62 system calls, each seen by the rt_sigaction probe). */
	const unsigned long long *reset_only;
	/* The built-in worker's static image (worker_image.h): exec'd from this fd, and
	 * path only if that fails. NULL: path. */
	const int *exec_fd;
	char *const *argv;
	char *const *envp;
	/* Points at the digits of "LISTEN_PID=" inside envp; at least LISTEN_PID_DIGITS
	 * + 1 bytes long. The child writes its own pid there, in the copy spawn_exec()
	 * made for it. */
	char *listen_pid_digits;
	const int *fds; /* placed at 3, 4, ... in this order */
	unsigned n_fds;
	pid_t parent; /* the arbiter's pid, to detect that it died before PDEATHSIG was set */
	bool drop_privileges;
	uid_t uid;
	gid_t gid;
	bool json_log; /* --log-format json: a failure is said as a JSON line */
	/* The upgrade's --check child: when set, its stdout goes to *stdout_fd, and a
	 * failure also writes its errno (an int) to *errno_fd (close-on-exec, so an exec
	 * that works writes nothing there). */
	const int *stdout_fd;
	const int *errno_fd;
	/* RLIMIT_NOFILE to set before the exec: the one the arbiter was given, which it
	 * raised for itself (spawn.h). NULL: leave it. */
	const struct rlimit *nofile;
	/* Set by spawn_vm.c when the child starts on the arbiter's own fd table
	 * (CLONE_FILES): first thing, the child takes a copy of fds 0 ..
	 * keep_fds_below - 1 only (close_range with CLOSE_RANGE_UNSHARE), then stores 1
	 * here. NULL: the child has a copy of its own already. */
	int *fds_unshared;
	int keep_fds_below;
};

/* Never returns: exec's the worker or _exit(127)s with a message on stderr. */
_Noreturn void postfork_exec(const struct exec_plan *plan);

/* For what calls a function that does not return in a child on a stack of its own
 * (spawn_vm.c): AddressSanitizer's bookkeeping before such a call assumes the main
 * thread's stack and warns on stderr, in the worker's log. */
#if defined(__SANITIZE_ADDRESS__)
#define POSTFORK_NO_ASAN __attribute__((no_sanitize_address))
#else
#define POSTFORK_NO_ASAN
#endif
