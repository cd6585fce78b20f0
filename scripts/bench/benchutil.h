/* SPDX-License-Identifier: MIT */
/*
 * benchutil.h - what probe.c and sigbench.c share: messages and samples,
 * the monotonic clock, CPU pinning and scheduling policy for observers, and
 * the sender thread (a signal sent from the server's CPU; see probe.c for why).
 * Included by exactly one .c file per program, after BENCH_PROG is defined;
 * everything is static inline so a program that does not use a helper does
 * not trip -Wunused-function.
 */
#ifndef SIGVISOR_BENCHUTIL_H
#define SIGVISOR_BENCHUTIL_H

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
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

#endif
