/* SPDX-License-Identifier: MIT */
/*
 * benchutil.h - what probe.c and sigbench share: messages and samples,
 * the monotonic clock, CPU pinning and scheduling policy for observers, and
 * the sender thread (a signal sent from the server's CPU; see probe.c for why).
 * Included after BENCH_PROG is defined (by probe.c, and through sigbench.h by
 * every sigbench*.c); everything is static inline so a file that does not use
 * a helper does not trip -Wunused-function.
 */
#ifndef SIGVISOR_BENCHUTIL_H
#define SIGVISOR_BENCHUTIL_H

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static inline void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void say(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	fputs(BENCH_PROG ": ", stderr);
	va_start(ap, fmt);
	errno = saved;
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	errno = saved;
}

static inline int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t deadline_after(double s)
{
	return now_ns() + (int64_t)(s * 1e9);
}

static inline void sleep_s(double s)
{
	struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (time_t)s) * 1e9)};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * Spin loops pause instead of calling sched_yield(): on a Firecracker guest a
 * sched_yield() from an otherwise idle vCPU was measured to take ~1.8 ms.
 */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

static inline void sample(const char *name, int64_t ns)
{
	printf("%s %.1f\n", name, (double)ns / 1000.0);
	fflush(stdout);
}

static inline void fail(const char *name)
{
	printf("fail %s\n", name);
	fflush(stdout);
}

/* Pin the calling thread; cpu < 0 leaves it alone. */
static inline int pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return 0;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0) {
		say("cannot pin to CPU %d: %m", cpu);
		return -1;
	}
	return 0;
}

/*
 * The observer spins, so it runs as SCHED_IDLE: any server task that wakes
 * preempts it at once, and the servers get every CPU they would have had
 * without it. SCHED_RESET_ON_FORK keeps the servers it spawns out of that class.
 */
static inline int observer_policy(void)
{
	struct sched_param sp = {0};

	if (sched_setscheduler(0, SCHED_IDLE | SCHED_RESET_ON_FORK, &sp) < 0) {
		say("cannot switch to SCHED_IDLE: %m");
		return -1;
	}
	return 0;
}

struct sender {
	pthread_t thread;
	int efd;
	int cpu;
	_Atomic pid_t target;
	_Atomic int sig;
	_Atomic int64_t t0;
	_Atomic int err;
	_Atomic unsigned seq;
};

static inline void *sender_main(void *arg)
{
	struct sender *s = arg;
	uint64_t v;

	pin(s->cpu);
	for (;;) {
		int64_t t;
		int r;

		if (read(s->efd, &v, sizeof(v)) != (ssize_t)sizeof(v))
			continue;
		t = now_ns();
		r = kill(atomic_load(&s->target), atomic_load(&s->sig));
		atomic_store(&s->err, r < 0 ? errno : 0);
		atomic_store(&s->t0, t);
		atomic_fetch_add(&s->seq, 1);
	}
	return NULL;
}

static inline int sender_start(struct sender *s, int cpu)
{
	s->cpu = cpu;
	s->efd = eventfd(0, EFD_CLOEXEC);
	if (s->efd < 0 || pthread_create(&s->thread, NULL, sender_main, s) != 0) {
		say("cannot start the sender thread: %m");
		return -1;
	}
	return 0;
}

/* Ask the sender to signal pid; returns the ticket for sender_wait. */
static inline unsigned sender_send(struct sender *s, pid_t pid, int sig)
{
	unsigned seq = atomic_load(&s->seq);
	uint64_t one = 1;

	atomic_store(&s->target, pid);
	atomic_store(&s->sig, sig);
	if (write(s->efd, &one, sizeof(one)) != (ssize_t)sizeof(one))
		say("eventfd write: %m");
	return seq;
}

/* When the signal was sent (spinning until it has been); 0 or -errno. */
static inline int sender_wait(struct sender *s, unsigned ticket, int64_t deadline, int64_t *t0)
{
	while (atomic_load(&s->seq) == ticket) {
		if (now_ns() >= deadline)
			return -ETIMEDOUT;
		cpu_relax();
	}
	if (atomic_load(&s->err))
		return -atomic_load(&s->err);
	*t0 = atomic_load(&s->t0);
	return 0;
}

/* 'Z' for a zombie, 0 when there is no such pid. */
static inline char pid_state(pid_t pid)
{
	char path[64], buf[512], *rp;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	rp = strrchr(buf, ')');
	return rp && rp[1] == ' ' ? rp[2] : '?';
}

static inline bool pid_alive(pid_t pid)
{
	char st = pid_state(pid);

	return st != 0 && st != 'Z' && st != 'X';
}

/* Reaped: kill(pid, 0) fails with ESRCH (a zombie would still answer). */
static inline bool pid_reaped(pid_t pid)
{
	return kill(pid, 0) < 0 && errno == ESRCH;
}

/* What "a worker is waiting" can mean: the syscalls --ready names. */
static const struct {
	const char *name;
	long nr;
} syscall_names[] = {
#ifdef SYS_select
	{"select", SYS_select},
#endif
#ifdef SYS_poll
	{"poll", SYS_poll},
#endif
#ifdef SYS_epoll_wait
	{"epoll_wait", SYS_epoll_wait},
#endif
	{"pselect6", SYS_pselect6},
	{"ppoll", SYS_ppoll},
	{"epoll_pwait", SYS_epoll_pwait},
#ifdef SYS_epoll_pwait2
	{"epoll_pwait2", SYS_epoll_pwait2},
#endif
#ifdef SYS_accept
	{"accept", SYS_accept},
#endif
	{"accept4", SYS_accept4},
#ifdef SYS_io_uring_enter
	{"io_uring_enter", SYS_io_uring_enter},
#endif
};

/* The number of a syscall in syscall_names, or -1. */
static inline long syscall_by_name(const char *name)
{
	for (size_t i = 0; i < sizeof(syscall_names) / sizeof(syscall_names[0]); i++)
		if (strcmp(name, syscall_names[i].name) == 0)
			return syscall_names[i].nr;
	return -1;
}

/* The syscall a task is blocked in, from the text of /proc/PID/syscall: -1 when
 * it is running, or blocked outside a syscall ("running", "-1 ..."). */
static inline long syscall_of_proc_line(const char *buf)
{
	if (!isdigit((unsigned char)buf[0]))
		return -1;
	return strtol(buf, NULL, 10);
}

#endif
