// SPDX-License-Identifier: MIT
/*
 * sigbench_pid1.c - `sigbench orphans` and `sigbench pid1` (see pid1.sh): the
 * orphan maker that runs under an init in a new pid namespace, and the
 * observer outside it that counts the init's zombies and times its exit on
 * TERM.
 */
#define _GNU_SOURCE
#include "sigbench.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t term_from = -1;

static void on_term(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	term_from = si->si_pid;
}

static void write_mark(const char *dir, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void write_mark(const char *dir, const char *name, const char *fmt, ...)
{
	char path[4096], tmp[4200];
	va_list ap;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	f = fopen(tmp, "w");
	if (!f)
		return;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	if (fclose(f) == 0)
		rename(tmp, path);
}

static bool term_blocked(void)
{
	sigset_t cur;

	sigprocmask(SIG_BLOCK, NULL, &cur);
	return sigismember(&cur, SIGTERM);
}

/*
 * Phase 1: for D seconds, fork a child that forks a grandchild and exits at
 * once; the grandchild exits at once too, so every round leaves one orphan
 * (a zombie whose parent is gone) for the init to reap.
 * Phase 2: fork one more process in our process group, then wait for TERM.
 * Who got TERM, and from whom, is written to files in DIR. The mask is left
 * as the init gave it to us (a blocked TERM is reported, not repaired).
 */
int cmd_orphans(const struct opts *o)
{
	struct sigaction sa = {.sa_sigaction = on_term, .sa_flags = SA_SIGINFO};
	int64_t t0, end;
	long made = 0, failed = 0;
	pid_t member;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	write_mark(o->mark, "start", "pid %d pgid %d term_blocked %d\n", (int)getpid(),
		   (int)getpgrp(), term_blocked());
	t0 = now_ns();
	end = t0 + (int64_t)(o->seconds * 1e9);
	while (now_ns() < end && term_from < 0) {
		int st;
		pid_t c = fork();

		if (c == 0) {
			pid_t g = fork();

			_exit(g < 0 ? 1 : 0);
		}
		if (c < 0) {
			failed++;
			sleep_s(0.001);
			continue;
		}
		while (waitpid(c, &st, 0) < 0 && errno == EINTR)
			;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
			made++;
		else
			failed++;
	}
	member = fork();
	if (member == 0) {
		/* Same process group as the child; does the init signal the group? */
		int64_t dl = deadline_after(8.0);

		sigaction(SIGTERM, &sa, NULL);
		while (term_from < 0 && now_ns() < dl)
			sleep_s(0.001);
		if (term_from >= 0)
			write_mark(o->mark, "group-term", "from %d\n", (int)term_from);
		_exit(0);
	}
	write_mark(o->mark, "made", "made %ld failed %ld us %.0f\n", made, failed,
		   (double)(now_ns() - t0) / 1000.0);
	{
		int64_t dl = deadline_after(30.0);

		while (term_from < 0 && now_ns() < dl)
			sleep_s(0.002);
	}
	if (term_from >= 0)
		write_mark(o->mark, "child-term", "from %d\n", (int)term_from);
	/*
	 * Exit 20 ms after TERM, not at once: an init that signals the whole
	 * group reaches the member at the same moment, and the member needs a
	 * moment to write that down before PID 1 exits and the kernel kills
	 * what is left in the namespace. (So TERM -> init exit includes 20 ms.)
	 */
	sleep_s(0.02);
	if (member > 0)
		waitpid(member, NULL, WNOHANG);
	return 0;
}

static int zombies_of(int cfd)
{
	struct pids kids = {0};
	int z = 0;

	if (read_children(cfd, &kids) < 0)
		return -1;
	for (int i = 0; i < kids.n; i++)
		if (pid_state(kids.v[i]) == 'Z')
			z++;
	free(kids.v);
	return z;
}

static bool mark_exists(const char *dir, const char *name)
{
	char path[4096];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) == 0;
}

int cmd_pid1(const struct opts *o)
{
	struct pids kids = {0};
	int64_t deadline = deadline_after(o->timeout), t0, t1 = 0;
	pid_t init = 0;
	int cfd = -1, z, zmax = 0, pidfd;

	/* The init is unshare's only child (pid 1 in the new namespace). */
	while (!init) {
		int ufd = open_children(o->pid);

		if (ufd >= 0 && read_children(ufd, &kids) == 0 && kids.n > 0)
			init = kids.v[0];
		if (ufd >= 0)
			close(ufd);
		if (init)
			break;
		if (now_ns() >= deadline || pid_reaped(o->pid)) {
			say("unshare %d never started an init", (int)o->pid);
			fail("pid1_init");
			return 1;
		}
		sleep_s(0.002);
	}
	printf("init_pid %d\n", (int)init);
	cfd = open_children(init);
	pidfd = (int)syscall(SYS_pidfd_open, init, 0);
	if (cfd < 0 || pidfd < 0) {
		say("cannot watch init %d: %m", (int)init);
		fail("pid1_init");
		return 1;
	}
	/* While the orphan maker runs: the largest zombie backlog seen. */
	while (!mark_exists(o->mark, "made")) {
		if (now_ns() >= deadline || !pid_alive(init)) {
			say("the orphan maker under init %d never finished", (int)init);
			fail("pid1_made");
			return 1;
		}
		z = zombies_of(cfd);
		if (z > zmax)
			zmax = z;
		sleep_s(0.05);
	}
	z = zombies_of(cfd);
	printf("zombies_max %d\nzombies_end %d\n", z > zmax ? z : zmax, z);
	sleep_s(1.0);
	printf("zombies_1s %d\n", zombies_of(cfd));
	fflush(stdout);
	/* TERM from outside the namespace, to the init only. */
	t0 = now_ns();
	if (kill(init, SIGTERM) < 0) {
		say("kill(%d, SIGTERM): %m", (int)init);
		fail("pid1_term");
		return 1;
	}
	deadline = deadline_after(o->timeout);
	for (;;) {
		struct pollfd p = {.fd = pidfd, .events = POLLIN};

		if (poll(&p, 1, 1) > 0) {
			t1 = now_ns();
			break;
		}
		if (now_ns() >= deadline)
			break;
	}
	if (t1) {
		sample("term_exit", t1 - t0);
	} else {
		say("init %d still running %.1f s after TERM", (int)init, o->timeout);
		fail("term_exit");
	}
	return t1 ? 0 : 1;
}
