// SPDX-License-Identifier: MIT
/*
 * probe.c - the timing half of scripts/bench/run.sh.
 *
 * Sub-millisecond events (a worker pid appearing under the arbiter, a worker
 * blocking in its event wait, a reaped pid vanishing from /proc, the arbiter
 * exiting) are timed here by spinning on /proc with CLOCK_MONOTONIC: a shell
 * or Python poller would add more latency than the thing being measured.
 *
 *   probe port                           print a free TCP port on 127.0.0.1
 *   probe exec [--cpu C] -- CMD [ARG...] reset signal dispositions and mask,
 *                                        pin to CPU C, exec CMD
 *   probe wait  OPTIONS                  wait until a running server serves
 *   probe scale OPTIONS                  TTIN / TTOU cycles against a running server
 *   probe term  OPTIONS -- CMD [ARG...]  start CMD, wait until it serves, signal it
 *                                        (TERM, INT or QUIT; idle, or with one
 *                                        request in flight) and time its exit
 *   probe responder --port N --workers W the least a pre-fork arbiter can do
 *                                        (signalfd, epoll, fork, waitpid): timed
 *                                        like the real servers it shows the
 *                                        floor of this method on this machine;
 *                                        HUP replaces the workers one for one
 *   probe exec-responder --port N --workers W   the same, each worker this
 *                                        program exec'd: the floor of a server
 *                                        whose workers are fresh images
 *
 * Where the time goes on a small VM: waking a task that sleeps on another,
 * idle vCPU can cost milliseconds of hypervisor latency (measured ~1.9 ms on
 * a 2-vCPU Firecracker guest), which would swamp what we want to see. So with
 * --cpu C --probe-cpu P the server runs on CPU C; the signal is sent by a
 * thread pinned to C (the arbiter is woken on its own CPU, and the sender then
 * blocks so the arbiter runs at once); the observer runs on P and spins while
 * timing, so it never needs waking either.
 *
 * Samples go to stdout as "name value" lines (times in microseconds),
 * progress and failures to stderr. Every wait has a deadline; a missed
 * deadline is a failure (exit status 1), never a hang.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_PROG "probe"
#include "benchutil.h"
#include "benchopt.h"

/* As many pids as there are: a pool scaled to hundreds of workers included. */
struct pidset {
	int n, cap;
	pid_t *pid;
};

static void pidset_add(struct pidset *s, pid_t pid)
{
	if (s->n == s->cap) {
		int cap = s->cap ? s->cap * 2 : 64;
		pid_t *more = realloc(s->pid, (size_t)cap * sizeof(*more));

		if (!more)
			abort();
		s->pid = more;
		s->cap = cap;
	}
	s->pid[s->n++] = pid;
}

static void pidset_free(struct pidset *s)
{
	free(s->pid);
	*s = (struct pidset){0};
}

struct opts {
	pid_t pid;		 /* arbiter (wait, scale) */
	int port;		 /* wait, responder */
	int workers;		 /* expected pool size */
	int count;		 /* scale: cycles; term: runs */
	int cpu;		 /* server (and sender) CPU, -1: no pinning */
	int probe_cpu;		 /* observer CPU, -1: no pinning */
	double timeout;		 /* seconds, per wait */
	double settle;		 /* seconds of idleness before each timed step */
	const char *log;	 /* term: server output */
	int sig;		 /* term: the signal that stops the server */
	const char *busy;	 /* term: path of a request kept in flight, NULL: idle */
	bool http;		 /* require an HTTP answer, not only a connect */
	struct ready_list ready; /* syscalls that mean "worker is waiting" */
};

/* ---- /proc readers ------------------------------------------------------ */

/*
 * Reading a seq_file with pread at offset 0 regenerates it, so one open fd
 * per file keeps the spin loops at one syscall per look.
 */
static int open_proc(pid_t pid, const char *what)
{
	char path[96];

	if (strcmp(what, "children") == 0)
		snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, what);
	return open(path, O_RDONLY | O_CLOEXEC);
}

/*
 * Not atomic: the kernel walks the list one entry per step, so a child reaped
 * mid-read can make a live sibling drop out of one reading. Callers use it to
 * spot new pids and counts, never to conclude that a pid is gone.
 */
static int read_children(int fd, struct pidset *s)
{
	/* Grown until the whole list fits (a cut one would end in part of a pid), then
	 * kept. Read until EOF, not until a read comes back short: the kernel fills one
	 * read from one page of the list at most (about 700 pids), so a pool of 1,024
	 * came back cut, never the size asked for. Only the main thread reads. */
	static char *buf;
	static size_t size;
	size_t len = 0;
	ssize_t n;
	char *p;

	s->n = 0;
	if (!size) {
		buf = malloc(4096);
		if (!buf)
			abort();
		size = 4096;
	}
	for (;;) {
		if (len == size - 1) {
			buf = realloc(buf, size * 2);
			if (!buf)
				abort();
			size *= 2;
		}
		n = pread(fd, buf + len, size - 1 - len, (off_t)len);
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	n = (ssize_t)len;
	buf[n] = '\0';
	p = buf;
	while (*p) {
		char *end;
		long v = strtol(p, &end, 10);

		if (end == p)
			break;
		pidset_add(s, (pid_t)v);
		p = end;
		while (*p == ' ' || *p == '\n')
			p++;
	}
	return 0;
}

static int pid_cmp(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return (x > y) - (x < y);
}

/* Membership in O(log n) in a set kept sorted (pidset_sort): a pool of 4,096 is
 * looked up child by child on every poll. */
static void pidset_sort(struct pidset *s)
{
	if (s->n > 1)
		qsort(s->pid, (size_t)s->n, sizeof(*s->pid), pid_cmp);
}

static bool pidset_has(const struct pidset *sorted, pid_t pid)
{
	return sorted->n &&
	       bsearch(&pid, sorted->pid, (size_t)sorted->n, sizeof(*sorted->pid), pid_cmp);
}

/* The first pid of a that is not in b (sorted), or 0. */
static pid_t pidset_first_new(const struct pidset *a, const struct pidset *b)
{
	for (int i = 0; i < a->n; i++)
		if (!pidset_has(b, a->pid[i]))
			return a->pid[i];
	return 0;
}

/* Syscall number the task is blocked in; -1 when running, -2 when gone. */
static long blocked_syscall_fd(int fd)
{
	char buf[256];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	if (n <= 0)
		return -2;
	buf[n] = '\0';
	return syscall_of_proc_line(buf);
}

static bool is_ready_nr(const struct opts *o, long nr)
{
	return ready_has(&o->ready, nr);
}

static bool pid_ready(const struct opts *o, pid_t pid)
{
	int fd = open_proc(pid, "syscall");
	long nr;

	if (fd < 0)
		return false;
	nr = blocked_syscall_fd(fd);
	close(fd);
	return is_ready_nr(o, nr);
}

/* All current children ready, and exactly n of them. seen (sorted, may be NULL): the
 * children already seen waiting, not looked at again: at 4,096 a start is polled
 * hundreds of times, and three syscalls per ready child per poll would make the
 * probe the busiest process on the machine. */
static bool pool_ready_seen(const struct opts *o, int cfd, int n, struct pidset *cur,
			    struct pidset *seen)
{
	struct pidset before = {0};
	bool all = true;

	if (read_children(cfd, cur) < 0 || cur->n != n)
		return false;
	if (seen) /* the sorted part; this round's finds are appended, sorted after */
		before = (struct pidset){seen->n, seen->n, seen->pid};
	for (int i = 0; i < cur->n; i++) {
		if (seen && pidset_has(&before, cur->pid[i]))
			continue;
		if (!pid_ready(o, cur->pid[i])) {
			all = false;
			if (!seen)
				break;
		} else if (seen) {
			pidset_add(seen, cur->pid[i]);
			before.pid = seen->pid; /* moved by realloc */
		}
	}
	if (seen)
		pidset_sort(seen);
	return all;
}

static bool pool_ready(const struct opts *o, int cfd, int n, struct pidset *cur)
{
	return pool_ready_seen(o, cfd, n, cur, NULL);
}

/* ---- serving check ------------------------------------------------------ */

static int free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int port = -1;

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* True when port answers an HTTP request (or, without http, accepts). */
static bool serves(int port, bool http)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {.tv_sec = 1};
	char buf[16];
	size_t got = 0;
	bool ok = false;
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return false;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto out;
	if (!http) {
		ok = true;
		goto out;
	}
	if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(req) - 1)
		goto out;
	while (got < 5 && (n = recv(fd, buf + got, sizeof(buf) - got, 0)) > 0)
		got += (size_t)n;
	ok = got >= 5 && memcmp(buf, "HTTP/", 5) == 0;
out:
	close(fd);
	return ok;
}

/*
 * Wait until pid has exactly o->workers children, all blocked in a ready
 * syscall, and port answers. *ready_at (if given) is when the pool was first
 * seen complete in the round that then answered: spinning (spin) times that
 * closely; the HTTP check is not part of it, since answering involves waking
 * a worker from another CPU. *first_at (if given) is when pid was first seen with a
 * child: its first worker started. Returns 0, -ETIMEDOUT, or -ESRCH when the server
 * died first.
 */
static int wait_serving(const struct opts *o, pid_t pid, int pidfd, int port, bool spin,
			int64_t deadline, int64_t *ready_at, int64_t *first_at)
{
	struct pidset cur = {0}, seen = {0};
	int cfd = -1, r = -ETIMEDOUT;

	while (now_ns() < deadline) {
		if (pidfd >= 0) {
			struct pollfd p = {.fd = pidfd, .events = POLLIN};

			if (poll(&p, 1, 0) > 0) {
				r = -ESRCH;
				break;
			}
		} else if (!pid_alive(pid)) {
			r = -ESRCH;
			break;
		}
		if (cfd < 0)
			cfd = open_proc(pid, "children");
		if (first_at && !*first_at && cfd >= 0 && read_children(cfd, &cur) == 0 &&
		    cur.n > 0)
			*first_at = now_ns();
		if (cfd >= 0 && pool_ready_seen(o, cfd, o->workers, &cur, &seen)) {
			int64_t t = now_ns();

			if (serves(port, o->http)) {
				if (ready_at)
					*ready_at = t;
				r = 0;
				break;
			}
		}
		if (spin)
			cpu_relax();
		else
			sleep_s(0.002);
	}
	if (cfd >= 0)
		close(cfd);
	pidset_free(&cur);
	pidset_free(&seen);
	return r;
}

/* ---- scale: TTIN / TTOU ------------------------------------------------- */

/* Wait (sleeping: nothing is timed here) for an idle pool of n, then settle. */
static int wait_pool(const struct opts *o, int cfd, int n, struct pidset *cur)
{
	int64_t deadline = deadline_after(o->timeout);
	/* A worker seen waiting counts as waiting from then on: with hundreds of
	 * workers (built-in ones wake every --timeout/2 to ping) some worker is always
	 * briefly awake, and all n in their wait at one look would never be seen. */
	struct pidset seen = {0};
	int r = 0;

	for (;;) {
		while (!pool_ready_seen(o, cfd, n, cur, &seen)) {
			if (now_ns() >= deadline) {
				r = -ETIMEDOUT;
				goto out;
			}
			if (!pid_alive(o->pid)) {
				r = -ESRCH;
				goto out;
			}
			sleep_s(0.001);
		}
		sleep_s(o->settle);
		/* Read twice: one reading of children can miss a sibling. */
		if (pool_ready_seen(o, cfd, n, cur, &seen) &&
		    pool_ready_seen(o, cfd, n, cur, &seen))
			goto out;
	}
out:
	pidset_free(&seen);
	return r;
}

/* ---- the kernel's fork events ------------------------------------------ */

/*
 * TTIN -> visible at 4,096 workers: a reading of /proc/PID/task/PID/children lists
 * every child, so spinning on it sees a new one late by a time that grows with the
 * pool, the probe's cost and not the arbiter's. The proc connector (netlink, root
 * only) reports each fork as it happens, stamped by the kernel (ktime_get_ns, the
 * CLOCK_MONOTONIC of now_ns): the time visible is the clone's own, at any N.
 */
static int forks_open(void)
{
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC};
	union {
		struct nlmsghdr align;
		char buf[NLMSG_SPACE(sizeof(struct cn_msg) + sizeof(enum proc_cn_mcast_op))];
	} req = {0};
	struct nlmsghdr *nl = &req.align;
	struct cn_msg *cn = NLMSG_DATA(nl);
	enum proc_cn_mcast_op op = PROC_CN_MCAST_LISTEN;
	int fd, size = 4 << 20;

	fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_CONNECTOR);
	if (fd < 0)
		return -1;
	/* Every fork, exec and exit of the machine comes here: room for a burst. */
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
	nl->nlmsg_len = NLMSG_LENGTH(sizeof(*cn) + sizeof(op));
	nl->nlmsg_type = NLMSG_DONE;
	cn->id.idx = CN_IDX_PROC;
	cn->id.val = CN_VAL_PROC;
	cn->len = sizeof(op);
	memcpy(cn->data, &op, sizeof(op));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    send(fd, nl, nl->nlmsg_len, 0) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Read the fork events waiting: 1 and the child's pid and fork time once a process
 * (not a thread) forked by parent is among them, 0 if not (yet), -1 when events were
 * lost (ENOBUFS) or the socket failed. */
static int forks_read(int fd, pid_t parent, pid_t *child, int64_t *at_ns)
{
	union {
		struct nlmsghdr align;
		char buf[16384];
	} in;

	for (;;) {
		ssize_t len = recv(fd, &in, sizeof(in), 0);
		struct nlmsghdr *nl = &in.align;

		if (len < 0)
			return errno == EAGAIN ? 0 : -1;
		for (; NLMSG_OK(nl, (size_t)len); nl = NLMSG_NEXT(nl, len)) {
			struct cn_msg *cn = NLMSG_DATA(nl);
			struct proc_event *ev = (struct proc_event *)cn->data;

			if (nl->nlmsg_type != NLMSG_DONE || ev->what != PROC_EVENT_FORK ||
			    ev->event_data.fork.parent_tgid != parent ||
			    ev->event_data.fork.child_pid != ev->event_data.fork.child_tgid)
				continue;
			*child = ev->event_data.fork.child_tgid;
			*at_ns = (int64_t)ev->timestamp_ns;
			return 1;
		}
	}
}

/* Forget the events so far: the next fork seen is one that follows. */
static int forks_drain(int fd)
{
	pid_t child;
	int64_t at;

	return forks_read(fd, -1, &child, &at);
}

static int cmd_scale(const struct opts *o)
{
	struct pidset before = {0}, cur = {0};
	struct sender snd = {0};
	int base = o->workers, cfd, ffd;

	if (sender_start(&snd, o->cpu) < 0 || pin(o->probe_cpu) < 0 || observer_policy() < 0)
		return 1;
	cfd = open_proc(o->pid, "children");
	if (cfd < 0) {
		say("cannot open /proc/%d/task/%d/children: %m", (int)o->pid, (int)o->pid);
		return 1;
	}
	ffd = forks_open();
	if (ffd < 0)
		say("no fork events (the proc connector: %m): TTIN -> visible is timed by "
		    "reading /proc children, late by a reading's time at large N");
	for (int i = 0; i < o->count; i++) {
		int64_t t0 = 0, t_vis = 0, t_ready = 0, deadline;
		pid_t fresh = 0, gone = 0;
		unsigned ticket;
		int sfd = -1, r;
		long nr = -1;

		/* TTIN: one more worker, visible in children, then waiting. */
		r = wait_pool(o, cfd, base, &before);
		if (r < 0) {
			say("cycle %d: the pool never settled at %d waiting workers (%s)", i, base,
			    strerror(-r));
			fail("ttin_visible");
			return 1;
		}
		pidset_sort(&before);
		/* Events lost in the drain (ENOBUFS): read on, what comes next is new. */
		bool by_event = ffd >= 0 && (forks_drain(ffd) == 0 || forks_drain(ffd) == 0);
		deadline = deadline_after(o->timeout);
		ticket = sender_send(&snd, o->pid, SIGTTIN);
		while (now_ns() < deadline) {
			if (by_event) {
				r = forks_read(ffd, o->pid, &fresh, &t_vis);
				if (r > 0)
					break;
				if (r < 0) {
					/* Lost events, this one maybe among them: /proc says. */
					say("cycle %d: fork events lost: timed by /proc", i);
					by_event = false;
				}
			} else if (read_children(cfd, &cur) == 0 &&
				   (fresh = pidset_first_new(&cur, &before))) {
				t_vis = now_ns();
				break;
			}
			cpu_relax();
		}
		r = sender_wait(&snd, ticket, deadline, &t0);
		if (r < 0) {
			say("cycle %d: kill(%d, SIGTTIN): %s", i, (int)o->pid, strerror(-r));
			fail("ttin_visible");
			return 1;
		}
		if (!fresh) {
			say("cycle %d: TTIN: no new child within %.1f s", i, o->timeout);
			fail("ttin_visible");
			return 1;
		}
		sample("ttin_visible", t_vis - t0);
		while (now_ns() < deadline) {
			/* The child's /proc entry may not open for a moment. */
			if (sfd < 0)
				sfd = open_proc(fresh, "syscall");
			if (sfd >= 0 && is_ready_nr(o, nr = blocked_syscall_fd(sfd))) {
				t_ready = now_ns();
				break;
			}
			cpu_relax();
		}
		if (sfd >= 0)
			close(sfd);
		if (!t_ready) {
			say("cycle %d: TTIN: worker %d not waiting after %.1f s (syscall %ld)", i,
			    (int)fresh, o->timeout, nr);
			fail("ttin_ready");
			return 1;
		}
		sample("ttin_ready", t_ready - t0);

		/* TTOU: one fewer, counted once reaped (gone from /proc, not a zombie). */
		r = wait_pool(o, cfd, base + 1, &before);
		if (r < 0) {
			say("cycle %d: the pool never settled at %d waiting workers (%s)", i,
			    base + 1, strerror(-r));
			fail("ttou_reaped");
			return 1;
		}
		deadline = deadline_after(o->timeout);
		ticket = sender_send(&snd, o->pid, SIGTTOU);
		while (now_ns() < deadline) {
			/* One reading per poll, not a pid_reaped() per worker: the one
			 * missing from it, if reaped, is the one gone. */
			if (read_children(cfd, &cur) == 0 && cur.n == base) {
				pidset_sort(&cur);
				for (int k = 0; k < before.n && !gone; k++)
					if (!pidset_has(&cur, before.pid[k]) &&
					    pid_reaped(before.pid[k]))
						gone = before.pid[k];
				if (gone)
					break;
			}
			cpu_relax();
		}
		t_vis = now_ns();
		r = sender_wait(&snd, ticket, deadline, &t0);
		if (r < 0) {
			say("cycle %d: kill(%d, SIGTTOU): %s", i, (int)o->pid, strerror(-r));
			fail("ttou_reaped");
			return 1;
		}
		if (!gone || cur.n != base) {
			say("cycle %d: TTOU: %s within %.1f s", i,
			    gone ? "the pool did not shrink" : "no worker was reaped", o->timeout);
			fail("ttou_reaped");
			return 1;
		}
		sample("ttou_reaped", t_vis - t0);
	}
	close(cfd);
	if (ffd >= 0)
		close(ffd);
	pidset_free(&before);
	pidset_free(&cur);
	return 0;
}

/* ---- a request in flight ------------------------------------------------ */

/* Connect to 127.0.0.1:port and send GET path; the fd, and our port in *cport. */
static int request_start(int port, const char *path, int *cport)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	struct timeval tv = {.tv_sec = 2};
	char req[256];
	int n, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (n <= 0 || (size_t)n >= sizeof(req) ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0 ||
	    send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
		close(fd);
		return -1;
	}
	*cport = ntohs(sa.sin_port);
	return fd;
}

/*
 * The receive queue of the server's end of our connection (local port
 * `port`, remote port `cport`) from /proc/net/tcp, or -1 when it is not
 * listed. A connection still in the accept queue is listed too, with the
 * request in its queue; 0 means a worker has read the request.
 */
static long server_rx_queue(int port, int cport)
{
	FILE *f = fopen("/proc/net/tcp", "re");
	char line[256];
	long rx = -1;

	if (!f)
		return -1;
	while (rx < 0 && fgets(line, sizeof(line), f)) {
		unsigned int la, lp, ra, rp, st;
		unsigned long tq, rq;

		if (sscanf(line, " %*d: %x:%x %x:%x %x %lx:%lx", &la, &lp, &ra, &rp, &st, &tq,
			   &rq) == 7 &&
		    (int)lp == port && (int)rp == cport)
			rx = (long)rq;
	}
	fclose(f);
	return rx;
}

/* Wait until a worker has read the request on our connection: 0 or -ETIMEDOUT. */
static int request_taken(int port, int cport, int64_t deadline)
{
	while (server_rx_queue(port, cport) != 0) {
		if (now_ns() >= deadline)
			return -ETIMEDOUT;
		sleep_s(0.0002);
	}
	return 0;
}

/*
 * The client side of the request in flight behaves like a real client: it
 * reads the answer as it comes and closes its end at the server's EOF (or
 * error), so a server that lingers for the client's close is not held up.
 */
struct request {
	int fd;
	size_t got;
	char head[16];
};

/* Read what has arrived; true once the connection is done with (and closed). */
static bool request_read(struct request *rq, bool wait)
{
	char buf[512];
	ssize_t n;

	while (rq->fd >= 0) {
		n = recv(rq->fd, buf, sizeof(buf), wait ? 0 : MSG_DONTWAIT);
		if (n < 0 && !wait && (errno == EAGAIN || errno == EINTR))
			return false;
		if (n <= 0) {
			close(rq->fd);
			rq->fd = -1;
			break;
		}
		for (ssize_t i = 0; i < n && rq->got < sizeof(rq->head); i++)
			rq->head[rq->got++] = buf[i];
	}
	return true;
}

/* Was the request answered with a 2xx status line? */
static bool request_answered(const struct request *rq)
{
	return rq->got >= 12 && memcmp(rq->head, "HTTP/1.", 7) == 0 && rq->head[9] == '2';
}

/* ---- term: start, serve, TERM, exit ------------------------------------- */

static void reset_signals(void)
{
	sigset_t none;

	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			signal(s, SIG_DFL); /* fails harmlessly for glibc's internal ones */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* argv with every "@PORT@" replaced by port; leaks on purpose (short-lived). */
static char **with_port(char **argv, int port)
{
	char **out, ps[16];
	int n = 0;

	while (argv[n])
		n++;
	out = calloc((size_t)n + 1, sizeof(*out));
	if (!out)
		abort();
	snprintf(ps, sizeof(ps), "%d", port);
	for (int i = 0; i < n; i++) {
		char *at = strstr(argv[i], "@PORT@");

		if (!at) {
			out[i] = argv[i];
			continue;
		}
		out[i] = malloc(strlen(argv[i]) + strlen(ps) + 1);
		if (!out[i])
			abort();
		sprintf(out[i], "%.*s%s%s", (int)(at - argv[i]), argv[i], ps, at + 6);
	}
	return out;
}

static pid_t spawn(char **argv, const char *log, int cpu)
{
	pid_t pid = fork();
	int fd;

	if (pid != 0)
		return pid;
	if (log && (fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) >= 0) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
	}
	reset_signals();
	pin(cpu);
	execvp(argv[0], argv);
	_exit(127);
}

/* SIGKILL a server we gave up on, and the workers it has, by pid. */
static void kill_tree(pid_t pid)
{
	struct pidset kids = {0};
	int cfd = open_proc(pid, "children");

	if (cfd >= 0) {
		read_children(cfd, &kids);
		close(cfd);
	}
	kill(pid, SIGKILL);
	for (int i = 0; i < kids.n; i++)
		kill(kids.pid[i], SIGKILL);
	pidset_free(&kids);
}

static int status_of(const siginfo_t *si)
{
	return si->si_code == CLD_EXITED ? si->si_status : 128 + si->si_status;
}

static const struct {
	int sig;
	const char *name;
} term_signals[] = {{SIGTERM, "term"}, {SIGINT, "int"}, {SIGQUIT, "quit"}};

static const char *term_signal_name(int sig)
{
	for (size_t i = 0; i < sizeof(term_signals) / sizeof(term_signals[0]); i++)
		if (term_signals[i].sig == sig)
			return term_signals[i].name;
	return NULL;
}

/*
 * Samples are named after the signal and the load: term_exit, int_exit,
 * quit_exit when idle, term_busy_exit ... with o->busy in flight, plus
 * NAME_status (exit status) and, busy, NAME_answered (1: the request in
 * flight got a 2xx answer before the server went away).
 */
static int cmd_term(const struct opts *o, char **cmd)
{
	struct sender snd = {0};
	char name[32], what[48];

	snprintf(name, sizeof(name), "%s%s", term_signal_name(o->sig), o->busy ? "_busy" : "");
	snprintf(what, sizeof(what), "%s_exit", name);
	if (sender_start(&snd, o->cpu) < 0 || pin(o->probe_cpu) < 0 || observer_policy() < 0)
		return 1;
	for (int i = 0; i < o->count; i++) {
		int port = free_port(), pidfd, r, cfd, left = 0, cport = 0;
		struct request rq = {.fd = -1};
		char **argv = with_port(cmd, port);
		struct pidset workers = {0};
		int64_t t_fork = now_ns(), t_ready = 0, t_first = 0, t0 = 0, t1 = 0, deadline;
		pid_t pid = spawn(argv, o->log, o->cpu);
		siginfo_t si = {0};
		unsigned ticket;

		if (pid < 0) {
			say("fork: %m");
			return 1;
		}
		pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
		if (pidfd < 0) {
			say("pidfd_open: %m");
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			return 1;
		}
		r = wait_serving(o, pid, pidfd, port, true, deadline_after(o->timeout), &t_ready,
				 &t_first);
		if (r < 0) {
			say("run %d: %s: no %d waiting workers serving 127.0.0.1:%d after %.1f s "
			    "(%s)",
			    i, argv[0], o->workers, port, o->timeout,
			    r == -ESRCH ? "it exited" : "timeout");
			fail("start_serving");
			kill_tree(pid);
			waitid(P_PID, (id_t)pid, &si, WEXITED);
			close(pidfd);
			return 1;
		}
		sample("start_serving", t_ready - t_fork);
		if (t_first)
			sample("start_first_worker", t_first - t_fork);

		/* Idle means idle: let the probe request's worker go back to waiting. */
		cfd = open_proc(pid, "children");
		sleep_s(o->settle);
		if (cfd < 0 || !pool_ready(o, cfd, o->workers, &workers))
			say("run %d: the pool was not idle before TERM, measuring anyway", i);
		if (cfd >= 0)
			close(cfd);
		if (o->busy) {
			rq.fd = request_start(port, o->busy, &cport);
			if (rq.fd < 0 || request_taken(port, cport, deadline_after(2.0)) < 0) {
				say("run %d: GET %s on 127.0.0.1:%d was not taken by a worker "
				    "within 2 s",
				    i, o->busy, port);
				fail(what);
				if (rq.fd >= 0)
					close(rq.fd);
				kill_tree(pid);
				waitid(P_PID, (id_t)pid, &si, WEXITED);
				close(pidfd);
				return 1;
			}
		}

		deadline = deadline_after(o->timeout);
		ticket = sender_send(&snd, pid, o->sig);
		for (;;) {
			struct pollfd p = {.fd = pidfd, .events = POLLIN};

			if (poll(&p, 1, 0) > 0) {
				t1 = now_ns();
				break;
			}
			if (now_ns() >= deadline)
				break;
			if (rq.fd >= 0)
				request_read(&rq, false);
			cpu_relax();
		}
		r = sender_wait(&snd, ticket, deadline, &t0);
		if (!t1 || r < 0) {
			say("run %d: still running %.1f s after SIG%s (%s); killing it", i,
			    o->timeout, term_signal_name(o->sig), r < 0 ? strerror(-r) : "sent");
			fail(what);
			kill_tree(pid);
		}
		waitid(P_PID, (id_t)pid, &si, WEXITED);
		close(pidfd);
		if (t1 && r == 0) {
			sample(what, t1 - t0);
			printf("%s_status %d\n", name, status_of(&si));
			if (status_of(&si) != 0)
				say("run %d: exit status %d after SIG%s (expected 0)", i,
				    status_of(&si), term_signal_name(o->sig));
		}
		if (o->busy) {
			request_read(&rq, true);
			printf("%s_answered %d\n", name, request_answered(&rq));
		}
		/* Workers outliving their arbiter would be a bug: report and remove. */
		for (int w = 0; w < workers.n; w++) {
			int64_t dl = deadline_after(2.0);

			while (pid_alive(workers.pid[w]) && now_ns() < dl)
				sleep_s(0.005);
			if (pid_alive(workers.pid[w])) {
				left++;
				kill(workers.pid[w], SIGKILL);
			}
		}
		if (left) {
			say("run %d: %d worker(s) still ran 2 s after the arbiter exited; killed",
			    i, left);
			printf("leftover_workers %d\n", left);
		}
		pidset_free(&workers);
		fflush(stdout);
		if (!t1)
			return 1;
	}
	return 0;
}

/* ---- responder: the floor ------------------------------------------------ */

static int listen_on(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A worker's life: accept and close connections on lfd; TERM (default action) ends it. */
static void responder_serve(int lfd)
{
	struct epoll_event ev = {.events = EPOLLIN};
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
		_exit(1);
	for (;;) {
		int c;

		if (epoll_wait(ep, &ev, 1, -1) == 1)
			while ((c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
				close(c);
	}
}

/* A worker, forked; with exec, this program run again as "probe responder-worker"
 * with the listening socket at fd 3, as a pre-fork server that execs its workers
 * starts them (the image's loading and the dynamic linker's work included). */
static pid_t responder_fork(int lfd, bool exec)
{
	sigset_t none;
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (exec) {
		if (dup2(lfd, 3) < 0)
			_exit(1);
		execl("/proc/self/exe", "probe", "responder-worker", (char *)NULL);
		_exit(127);
	}
	responder_serve(lfd);
	_exit(1);
}

static int cmd_responder(int port, int workers, bool exec)
{
	struct epoll_event ev = {.events = EPOLLIN};
	struct signalfd_siginfo si;
	struct pidset pool = {0};
	bool stopping = false;
	sigset_t set;
	int lfd, sfd, ep;

	sigemptyset(&set);
	for (int s = 1; s < SIGRTMIN; s++)
		if (s != SIGKILL && s != SIGSTOP)
			sigaddset(&set, s);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	lfd = listen_on(port);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (sfd < 0 || lfd < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) < 0) {
		say("responder: setup failed: %m");
		return 1;
	}
	for (int i = 0; i < workers; i++)
		pidset_add(&pool, responder_fork(lfd, exec));
	for (;;) {
		if (epoll_wait(ep, &ev, 1, -1) < 0 && errno != EINTR)
			return 1;
		while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
			switch (si.ssi_signo) {
			case SIGTTIN:
				if (!stopping)
					pidset_add(&pool, responder_fork(lfd, exec));
				break;
			case SIGHUP: {
				/* One for one: a new worker, then one old one told to stop. */
				int n0 = pool.n;
				pid_t *old = malloc((size_t)n0 * sizeof(*old));

				if (stopping || !old) {
					free(old);
					break;
				}
				memcpy(old, pool.pid, (size_t)n0 * sizeof(*old));
				for (int i = 0; i < n0; i++) {
					pidset_add(&pool, responder_fork(lfd, exec));
					kill(old[i], SIGTERM);
				}
				free(old);
				break;
			}
			case SIGTTOU:
				if (!stopping && pool.n > 1)
					kill(pool.pid[pool.n - 1], SIGTERM);
				break;
			case SIGTERM:
			case SIGINT:
			case SIGQUIT:
				stopping = true;
				for (int i = 0; i < pool.n; i++)
					kill(pool.pid[i], SIGTERM);
				break;
			case SIGCHLD:
				for (pid_t p; (p = waitpid(-1, NULL, WNOHANG)) > 0;)
					for (int i = 0; i < pool.n; i++)
						if (pool.pid[i] == p)
							pool.pid[i] = pool.pid[--pool.n];
				break;
			}
		}
		if (stopping && pool.n == 0)
			return 0;
	}
}

/* ---- command line ------------------------------------------------------- */

static int add_ready(void *ready, const char *name)
{
	if (ready_add(ready, name) < 0) {
		say("--ready: unknown syscall name, or too many, at '%s'", name);
		return -1;
	}
	return 0;
}

static int parse_ready(void *ready, const char *list)
{
	return benchopt_each(list, add_ready, ready);
}

static int parse_signal(void *sig, const char *name)
{
	*(int *)sig = 0;
	for (size_t i = 0; i < sizeof(term_signals) / sizeof(term_signals[0]); i++)
		if (strcasecmp(name, term_signals[i].name) == 0)
			*(int *)sig = term_signals[i].sig;
	if (!*(int *)sig) {
		say("--signal %s: TERM, INT or QUIT", name);
		return -1;
	}
	return 0;
}

/* CMD run count times, one after the other, its output to /dev/null: each run's wall
 * time, from the vfork to its exit reaped, as a "run_us US" line. What a shell's user
 * waits for a command; timed from Python, the interpreter's own fork and pipes were a
 * third of a millisecond more (and posix_spawn's stack, mapped and unmapped each time,
 * a quarter). 0 when every run exited 0. */
static int cmd_runs(int count, char **argv)
{
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	int failed = 0;

	if (null < 0) {
		say("/dev/null: %m");
		return 1;
	}
	for (int i = 0; i < count && !failed; i++) {
		int64_t a = now_ns();
		int st;
		pid_t pid = vfork();

		if (pid == 0) {
			if (dup2(null, STDOUT_FILENO) >= 0 && dup2(null, STDERR_FILENO) >= 0)
				execvp(argv[0], argv);
			_exit(127);
		}
		if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			failed = 1;
		sample("run_us", now_ns() - a);
	}
	close(null);
	return failed;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: probe port\n"
		"       probe exec [--cpu C] -- CMD [ARG...]\n"
		"       probe runs --count N -- CMD [ARG...]   (each run's wall time)\n"
		"       probe wait  --pid P --port N --workers W --ready LIST\n"
		"                   [--timeout S] [--no-http]\n"
		"       probe scale --pid P --workers W --ready LIST --count N [--timeout S]\n"
		"                   [--settle S] [--cpu C --probe-cpu C2]\n"
		"       probe term  --workers W --ready LIST --count N --log FILE [--timeout S]\n"
		"                   [--settle S] [--no-http] [--cpu C --probe-cpu C2]\n"
		"                   [--signal TERM|INT|QUIT] [--busy PATH]\n"
		"                   -- CMD [ARG...]\n"
		"                   (\"@PORT@\" in an ARG becomes a free port, new for each run)\n"
		"       probe responder --port N --workers W      (forked workers)\n"
		"       probe exec-responder --port N --workers W (exec'd workers)\n"
		"LIST: comma-separated syscall names, e.g. epoll_wait,epoll_pwait\n");
}

int main(int argc, char **argv)
{
	struct opts o = {.workers = 2,
			 .count = 10,
			 .cpu = -1,
			 .probe_cpu = -1,
			 .timeout = 5.0,
			 .settle = 0.05,
			 .sig = SIGTERM,
			 .http = true};
	const struct benchopt opts[] = {
		{"pid", BO_PID, &o.pid, NULL},
		{"port", BO_INT, &o.port, NULL},
		{"workers", BO_INT, &o.workers, NULL},
		{"count", BO_INT, &o.count, NULL},
		{"timeout", BO_DOUBLE, &o.timeout, NULL},
		{"settle", BO_DOUBLE, &o.settle, NULL},
		{"log", BO_STRING, &o.log, NULL},
		{"ready", BO_FUNC, &o.ready, parse_ready},
		{"cpu", BO_INT, &o.cpu, NULL},
		{"probe-cpu", BO_INT, &o.probe_cpu, NULL},
		{"no-http", BO_OFF, &o.http, NULL},
		{"signal", BO_FUNC, &o.sig, parse_signal},
		{"busy", BO_STRING, &o.busy, NULL},
		{0},
	};
	const char *cmd = benchopt_cmd(&argc, &argv, usage);
	int r;

	if (!cmd)
		return 2;
	if (strcmp(cmd, "responder-worker") == 0) {
		responder_serve(3);
		return 1;
	}
	if (strcmp(cmd, "port") == 0) {
		int port = free_port();

		if (port < 0)
			return 1;
		printf("%d\n", port);
		return 0;
	}
	r = benchopt_parse(argc, argv, opts, usage);
	if (r)
		return r;
	if (strcmp(cmd, "exec") == 0) {
		if (optind >= argc) {
			usage();
			return 2;
		}
		reset_signals();
		if (pin(o.cpu) < 0)
			return 1;
		execvp(argv[optind], argv + optind);
		say("exec %s: %m", argv[optind]);
		return 127;
	}
	if (strcmp(cmd, "runs") == 0) {
		if (optind >= argc || o.count < 1) {
			usage();
			return 2;
		}
		return cmd_runs(o.count, argv + optind);
	}
	if (strcmp(cmd, "responder") == 0 || strcmp(cmd, "exec-responder") == 0) {
		if (o.port <= 0 || o.workers < 1) {
			usage();
			return 2;
		}
		return cmd_responder(o.port, o.workers, cmd[0] == 'e');
	}
	if (o.ready.n == 0 || o.workers < 1 || o.timeout <= 0) {
		usage();
		return 2;
	}
	if (strcmp(cmd, "wait") == 0 && o.pid > 0 && o.port > 0) {
		int r = wait_serving(&o, o.pid, -1, o.port, false, deadline_after(o.timeout), NULL,
				     NULL);

		if (r < 0)
			say("pid %d: no %d waiting workers serving 127.0.0.1:%d after %.1f s (%s)",
			    (int)o.pid, o.workers, o.port, o.timeout,
			    r == -ESRCH ? "it exited" : "timeout");
		return r < 0 ? 1 : 0;
	}
	if (strcmp(cmd, "scale") == 0 && o.pid > 0)
		return cmd_scale(&o);
	if (strcmp(cmd, "term") == 0 && optind < argc)
		return cmd_term(&o, argv + optind);
	usage();
	return 2;
}
