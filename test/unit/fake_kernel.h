/* A fake kernel for unit tests that run the pool (and what drives it) without a
 * process: the test links with --wrap for spawn_process or spawn_worker,
 * pidfd_send_signal, waitid, clock_gettime, notify_open_worker and notify_close_worker
 * (its " * wrap:" line), then scripts who exits and when, moves the monotonic clock,
 * and reads which signals went where. Included, after cmocka.h, by one test file per
 * binary. */
#pragma once

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"
#include "notify.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#ifndef MAX_PROCS
#define MAX_PROCS 64
#endif

struct proc {
	pid_t pid;
	int pidfd;
	bool exited, reaped;
	int code; /* CLD_EXITED or CLD_KILLED */
	int status;
	int signals[8];
	unsigned n_signals;
};

static struct proc procs[MAX_PROCS];
static unsigned n_procs;
static uint64_t clock_ms = 1000000;
static int spawn_errno; /* nonzero: the next spawn_process fails with it */

/* The newest first: a reaped worker's pidfd was closed and its number reused. */
static struct proc *proc_of_fd(int fd)
{
	for (unsigned i = n_procs; i-- > 0;)
		if (procs[i].pidfd == fd && !procs[i].reaped)
			return &procs[i];
	return NULL;
}

static struct proc *proc_of_pid(pid_t pid)
{
	for (unsigned i = 0; i < n_procs; i++)
		if (procs[i].pid == pid)
			return &procs[i];
	return NULL;
}

/* A new fake process: its pid, and a real fd as its pidfd, so the pool's close() of
 * a pidfd closes nothing of the test's. */
static pid_t fake_spawn(int *ret_pidfd)
{
	struct proc *p;

	if (spawn_errno) {
		errno = spawn_errno;
		return -1;
	}
	assert_true(n_procs < MAX_PROCS);
	p = &procs[n_procs++];
	memset(p, 0, sizeof(*p));
	p->pid = (pid_t)(1000 + n_procs);
	p->pidfd = eventfd(0, EFD_CLOEXEC);
	assert_true(p->pidfd >= 0);
	*ret_pidfd = p->pidfd;
	return p->pid;
}

int __wrap_pidfd_send_signal(int pidfd, int sig, siginfo_t *info, unsigned flags);
int __wrap_pidfd_send_signal(int pidfd, int sig, siginfo_t *info, unsigned flags)
{
	struct proc *p = proc_of_fd(pidfd);

	(void)info;
	(void)flags;
	assert_non_null(p);
	if (p->exited) {
		errno = ESRCH;
		return -1;
	}
	assert_true(p->n_signals < 8);
	p->signals[p->n_signals++] = sig;
	return 0;
}

static void fill(siginfo_t *si, const struct proc *p)
{
	si->si_pid = p->pid;
	si->si_code = p->code;
	si->si_status = p->status;
}

int __wrap_waitid(idtype_t type, id_t id, siginfo_t *si, int options);
/* waitid(P_ALL) calls: each walks every child in the kernel. */
static unsigned waitid_all_calls;

int __wrap_waitid(idtype_t type, id_t id, siginfo_t *si, int options)
{
	memset(si, 0, sizeof(*si));
	if (type == P_ALL)
		waitid_all_calls++;
	if ((int)type == P_PIDFD) {
		struct proc *p = proc_of_fd((int)id);

		assert_non_null(p);
		if (p->exited && !p->reaped) {
			fill(si, p);
			if (!(options & WNOWAIT))
				p->reaped = true;
		}
		return 0;
	}
	for (unsigned i = 0; i < n_procs; i++) {
		struct proc *p = &procs[i];

		if (p->exited && !p->reaped && (type == P_ALL || (id_t)p->pid == id)) {
			fill(si, p);
			if (!(options & WNOWAIT))
				p->reaped = true;
			return 0;
		}
	}
	if (type == P_ALL && !n_procs) {
		errno = ECHILD;
		return -1;
	}
	return 0;
}

int __real_clock_gettime(clockid_t clk, struct timespec *ts);
int __wrap_clock_gettime(clockid_t clk, struct timespec *ts);
int __wrap_clock_gettime(clockid_t clk, struct timespec *ts)
{
	if (clk != CLOCK_MONOTONIC)
		return __real_clock_gettime(clk, ts);
	ts->tv_sec = (time_t)(clock_ms / 1000);
	ts->tv_nsec = (long)(clock_ms % 1000) * 1000000;
	return 0;
}

/* The loop: a backend that only counts what is watched (no epoll needed). */
static int watched;

static int fake_add(struct loop *l, struct source *s, uint32_t events)
{
	(void)l;
	(void)s;
	(void)events;
	watched++;
	return 0;
}

static int fake_mod(struct loop *l, struct source *s, uint32_t events)
{
	(void)l;
	(void)s;
	(void)events;
	return 0;
}

static int fake_del(struct loop *l, struct source *s)
{
	(void)l;
	(void)s;
	watched--;
	return 0;
}

static const struct loop_backend fake_backend = {
	.name = "fake",
	.add = fake_add,
	.mod = fake_mod,
	.del = fake_del,
};

static int fake_notify_fd = -1;

int __wrap_notify_open_worker(struct notify *n, uid_t uid, gid_t gid, int *ret_fd, char *env,
			      size_t envlen);
int __wrap_notify_open_worker(struct notify *n, uid_t uid, gid_t gid, int *ret_fd, char *env,
			      size_t envlen)
{
	(void)n;
	(void)uid;
	(void)gid;
	/* READY=1 comes through pool_notify() in these tests; a test that wraps
	 * notify_read sets fake_notify_fd to some open fd, to see the sockets read. */
	*ret_fd = fake_notify_fd;
	if (envlen)
		env[0] = '\0';
	return 0;
}

void __wrap_notify_close_worker(struct notify *n, int fd);
void __wrap_notify_close_worker(struct notify *n, int fd)
{
	(void)n;
	(void)fd;
}

/* After a test: the pidfds the code under test did not close. */
static void fake_reset(void)
{
	for (unsigned i = 0; i < n_procs; i++)
		if (!procs[i].reaped)
			close(procs[i].pidfd);
	n_procs = 0;
	spawn_errno = 0;
}

/* The process of pid exits (status for CLD_EXITED, a signal for CLD_KILLED). */
static void fake_exit(pid_t pid, int code, int status)
{
	struct proc *p = proc_of_pid(pid);

	assert_non_null(p);
	p->exited = true;
	p->code = code;
	p->status = status;
}

static unsigned signals_to(pid_t pid, int sig)
{
	struct proc *p = proc_of_pid(pid);
	unsigned n = 0;

	for (unsigned i = 0; p && i < p->n_signals; i++)
		n += p->signals[i] == sig;
	return n;
}
