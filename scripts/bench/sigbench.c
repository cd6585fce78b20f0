// SPDX-License-Identifier: MIT
/*
 * sigbench.c - the load, signal-storm, scale and PID-1 half of the benchmark
 * (scripts/bench/hup.sh, storm.sh, pid1.sh; probe.c does the idle and
 * single-signal timings of run.sh).
 *
 *   sigbench hup     --pid P --workers W [--timeout S] [--signals USR2
 *                    [--usr2-mode inplace|gunicorn --ready LIST]]
 *        one HUP (or USR2) to arbiter P; times it -> every worker it had
 *        before is reaped, and -> W workers of the new generation are up;
 *        records how each old worker ended (proc connector). gunicorn's USR2
 *        is followed by TERM to the old master once the new one is ready
 *   sigbench load    --port N [--conns C] [--seconds D] [--bucket-ms B]
 *                    [--pid P [--hup-at T1,T2,...] [--usr2-at T]
 *                    [--usr2-mode inplace|gunicorn] [--workers W --ready LIST]]
 *        a small HTTP/1.1 load client (one thread, epoll, keep-alive when the
 *        server allows it) that counts completed requests per bucket, and
 *        sends HUP / USR2 to P at the given times (seconds after the start),
 *        noting when the workers P had before each are all reaped
 *   sigbench storm   --pid P --signals TTIN[,USR1,TTOU...] --rounds N
 *                    [--gap-us G] [--cpu C] [--quiet-ms Q] [--timeout S]
 *        kill() in a loop (G microseconds between signals, 0: a tight loop),
 *        then watch the arbiter's children until nothing has changed for Q ms:
 *        forks, exits and how each worker ended (proc connector)
 *   sigbench scale   --pid P --from B --to T --ready LIST [--timeout S]
 *                    [--cpu C --probe-cpu C2]
 *        TTIN one step at a time from B to T workers, then TTOU back to B;
 *        time per step (the steps nearest T, a tenth of them, separately as
 *        *_top), and the arbiter's open fds before, at T, and after
 *   sigbench orphans --seconds D --mark DIR
 *        run under an init: make orphans as fast as possible for D seconds,
 *        then wait for TERM (and report who got it) - see pid1.sh
 *   sigbench pid1    --parent U --mark DIR [--timeout S]
 *        watch the init that unshare U started: zombies while the orphan
 *        maker runs, when it stops and 1 s later; then TERM the init and time
 *        its exit
 *
 * Samples go to stdout as "name value..." lines (times in microseconds unless
 * the name says otherwise), progress and failures to stderr. Every wait has a
 * deadline; a missed one is a failure (exit status 1), never a hang. Signals
 * go only to the pid given on the command line, or to processes this program
 * started.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_PROG "sigbench"
#include "benchutil.h"

#define MAX_READY 16
#define MAX_SIGS  16
#define MAX_HUPS  16

struct opts {
	pid_t pid;
	int port;
	int workers;
	int conns;
	int rounds;
	int from, to;
	int cpu, probe_cpu;
	double seconds;
	double timeout;
	int bucket_ms;
	int quiet_ms;
	long gap_us;
	const char *mark;
	int nsigs;
	int sigs[MAX_SIGS];
	int nhups;
	double hup_at[MAX_HUPS];
	double usr2_at;
	bool usr2_gunicorn;
	int nready;
	long ready[MAX_READY];
};

static void poller_policy(void)
{
	struct sched_param sp = {.sched_priority = 1};

	if (sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) < 0)
		say("SCHED_FIFO not available (%m): timings include scheduling delay");
}

/* A spinning observer that must never take CPU time from a server. */
static const struct {
	const char *name;
	int sig;
} signal_names[] = {
	{"HUP", SIGHUP},     {"INT", SIGINT},	{"QUIT", SIGQUIT}, {"TERM", SIGTERM},
	{"TTIN", SIGTTIN},   {"TTOU", SIGTTOU}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2},
	{"WINCH", SIGWINCH}, {"KILL", SIGKILL}, {"ABRT", SIGABRT}, {"PIPE", SIGPIPE},
	{"CHLD", SIGCHLD},   {"ALRM", SIGALRM}, {"SEGV", SIGSEGV}, {"STOP", SIGSTOP},
};

static const char *sig_name(int sig)
{
	static char buf[16];

	for (size_t i = 0; i < sizeof(signal_names) / sizeof(signal_names[0]); i++)
		if (signal_names[i].sig == sig)
			return signal_names[i].name;
	snprintf(buf, sizeof(buf), "%d", sig);
	return buf;
}

static int sig_number(const char *name)
{
	if (strncasecmp(name, "SIG", 3) == 0)
		name += 3;
	for (size_t i = 0; i < sizeof(signal_names) / sizeof(signal_names[0]); i++)
		if (strcasecmp(signal_names[i].name, name) == 0)
			return signal_names[i].sig;
	return -1;
}

/* ---- pid lists and /proc --------------------------------------------------- */

struct pids {
	int n, cap;
	pid_t *v;
};

static void pids_add(struct pids *p, pid_t pid)
{
	if (p->n == p->cap) {
		int cap = p->cap ? p->cap * 2 : 64;
		pid_t *v = realloc(p->v, (size_t)cap * sizeof(*v));

		if (!v)
			abort();
		p->v = v;
		p->cap = cap;
	}
	p->v[p->n++] = pid;
}

static int pids_find(const struct pids *p, pid_t pid)
{
	for (int i = 0; i < p->n; i++)
		if (p->v[i] == pid)
			return i;
	return -1;
}

static void pids_copy(struct pids *dst, const struct pids *src)
{
	dst->n = 0;
	for (int i = 0; i < src->n; i++)
		pids_add(dst, src->v[i]);
}

static int open_children(pid_t pid)
{
	char path[96];

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
	return open(path, O_RDONLY | O_CLOEXEC);
}

/*
 * All of /proc/PID/task/PID/children (one pread per 64 KiB; re-reading from
 * offset 0 regenerates it). Not atomic: a child reaped mid-read can make a
 * live sibling drop out of one reading, so counts are read twice by callers
 * that conclude anything from them.
 */
static int read_children(int fd, struct pids *out)
{
	static char *buf;
	static size_t cap;
	size_t len = 0;
	char *p;

	if (!buf) {
		cap = 1 << 16;
		buf = malloc(cap);
		if (!buf)
			abort();
	}
	for (;;) {
		ssize_t n;

		if (cap - len < 4096) {
			char *nb = realloc(buf, cap * 2);

			if (!nb)
				abort();
			buf = nb;
			cap *= 2;
		}
		n = pread(fd, buf + len, cap - len - 1, (off_t)len);
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	out->n = 0;
	for (p = buf; *p;) {
		char *end;
		long v = strtol(p, &end, 10);

		if (end == p)
			break;
		pids_add(out, (pid_t)v);
		p = end;
		while (*p == ' ' || *p == '\n')
			p++;
	}
	return 0;
}

/* Two readings in a row with the same count: a settled view of the children. */
static int read_children_stable(int fd, struct pids *out)
{
	struct pids again = {0};
	int r;

	for (int tries = 0; tries < 50; tries++) {
		r = read_children(fd, out);
		if (r < 0)
			break;
		r = read_children(fd, &again);
		if (r < 0)
			break;
		if (again.n == out->n)
			break;
	}
	free(again.v);
	return r;
}

static long blocked_syscall(pid_t pid)
{
	char path[64], buf[256];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -2;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -2;
	buf[n] = '\0';
	return syscall_of_proc_line(buf);
}

static bool pid_ready(const struct opts *o, pid_t pid)
{
	long nr = blocked_syscall(pid);

	for (int i = 0; i < o->nready; i++)
		if (o->ready[i] == nr)
			return true;
	return false;
}

static int count_fds(pid_t pid)
{
	char path[64];
	struct dirent *d;
	int n = 0;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (!dir)
		return -1;
	while ((d = readdir(dir)))
		if (d->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}

/* ---- proc connector: every fork and exit under one parent ------------------ */

struct exitrec {
	pid_t pid;
	int status; /* wait status, -1 while running */
};

struct procwatch {
	int fd;
	pid_t parent;
	int nrec, cap;
	struct exitrec *rec;
	int forks, exits;
	long lost;
	int64_t last_event;
};

static struct exitrec *pw_find(struct procwatch *w, pid_t pid)
{
	for (int i = 0; i < w->nrec; i++)
		if (w->rec[i].pid == pid)
			return &w->rec[i];
	return NULL;
}

static void pw_track(struct procwatch *w, pid_t pid)
{
	if (pw_find(w, pid))
		return;
	if (w->nrec == w->cap) {
		int cap = w->cap ? w->cap * 2 : 256;
		struct exitrec *r = realloc(w->rec, (size_t)cap * sizeof(*r));

		if (!r)
			abort();
		w->rec = r;
		w->cap = cap;
	}
	w->rec[w->nrec++] = (struct exitrec){.pid = pid, .status = -1};
}

/*
 * Subscribe to the kernel's process events (CONFIG_PROC_EVENTS, needs
 * CAP_NET_ADMIN). Independent of what either server logs about itself.
 */
static int pw_open(struct procwatch *w, pid_t parent)
{
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC};
	union {
		struct nlmsghdr nl;
		char buf[NLMSG_SPACE(sizeof(struct cn_msg) + sizeof(enum proc_cn_mcast_op))];
	} msg;
	enum proc_cn_mcast_op op = PROC_CN_MCAST_LISTEN;
	struct cn_msg *cn;
	int sz = 32 << 20;

	memset(w, 0, sizeof(*w));
	w->parent = parent;
	w->last_event = now_ns();
	w->fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_CONNECTOR);
	if (w->fd < 0) {
		say("proc connector: socket: %m");
		return -1;
	}
	if (setsockopt(w->fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
		setsockopt(w->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	if (bind(w->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		say("proc connector: bind: %m");
		close(w->fd);
		w->fd = -1;
		return -1;
	}
	memset(&msg, 0, sizeof(msg));
	msg.nl.nlmsg_len = NLMSG_LENGTH(sizeof(struct cn_msg) + sizeof(op));
	msg.nl.nlmsg_type = NLMSG_DONE;
	cn = NLMSG_DATA(&msg.nl);
	cn->id.idx = CN_IDX_PROC;
	cn->id.val = CN_VAL_PROC;
	cn->len = sizeof(op);
	memcpy(cn->data, &op, sizeof(op));
	if (send(w->fd, &msg, msg.nl.nlmsg_len, 0) < 0) {
		say("proc connector: subscribe: %m");
		close(w->fd);
		w->fd = -1;
		return -1;
	}
	return 0;
}

/* Read every queued event; returns how many concerned our parent's children. */
static int pw_drain(struct procwatch *w)
{
	union {
		struct nlmsghdr nl;
		char buf[16384];
	} u;
	int seen = 0;

	if (w->fd < 0)
		return 0;
	for (;;) {
		ssize_t n = recv(w->fd, u.buf, sizeof(u.buf), 0);
		int len = (int)n;

		if (n < 0) {
			if (errno == ENOBUFS) {
				w->lost++;
				continue;
			}
			break;
		}
		for (struct nlmsghdr *nh = &u.nl; NLMSG_OK(nh, len); nh = NLMSG_NEXT(nh, len)) {
			struct cn_msg *cn = NLMSG_DATA(nh);
			struct proc_event *ev = (struct proc_event *)cn->data;

			if (nh->nlmsg_type != NLMSG_DONE || cn->id.idx != CN_IDX_PROC)
				continue;
			if (ev->what == PROC_EVENT_FORK &&
			    ev->event_data.fork.parent_tgid == w->parent &&
			    ev->event_data.fork.child_pid == ev->event_data.fork.child_tgid) {
				pw_track(w, ev->event_data.fork.child_pid);
				w->forks++;
				seen++;
			} else if (ev->what == PROC_EVENT_EXIT &&
				   ev->event_data.exit.process_pid ==
					   ev->event_data.exit.process_tgid) {
				struct exitrec *r = pw_find(w, ev->event_data.exit.process_pid);

				if (r && r->status < 0) {
					r->status = (int)ev->event_data.exit.exit_code;
					w->exits++;
					seen++;
				}
			}
		}
	}
	if (seen)
		w->last_event = now_ns();
	return seen;
}

/* "PREFIX_clean N", "PREFIX_status S N", "PREFIX_signal NAME N" for pids in only (or all). */
static void pw_report(const struct procwatch *w, const char *prefix, const struct pids *only)
{
	int clean = 0, byst[256] = {0}, bysig[65] = {0};

	if (w->fd < 0) {
		printf("%s_unknown 1\n", prefix);
		fflush(stdout);
		return;
	}
	for (int i = 0; i < w->nrec; i++) {
		int st = w->rec[i].status;

		if (st < 0 || (only && pids_find(only, w->rec[i].pid) < 0))
			continue;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
			clean++;
		else if (WIFEXITED(st))
			byst[WEXITSTATUS(st)]++;
		else if (WIFSIGNALED(st) && WTERMSIG(st) < 65)
			bysig[WTERMSIG(st)]++;
	}
	printf("%s_clean %d\n", prefix, clean);
	for (int i = 1; i < 256; i++)
		if (byst[i])
			printf("%s_status %d %d\n", prefix, i, byst[i]);
	for (int i = 1; i < 65; i++)
		if (bysig[i])
			printf("%s_signal %s %d\n", prefix, sig_name(i), bysig[i]);
	fflush(stdout);
}

/* ---- hup -------------------------------------------------------------------- */

static pid_t new_master(const struct opts *o, int cfd, const struct pids *old);

/*
 * One reload signal (HUP, or USR2 with --signals USR2) to arbiter P under
 * whatever load the caller runs. Gone: every worker P had before is reaped.
 * Full: W workers that were not there before are up. With --usr2-mode
 * gunicorn, USR2 is gunicorn's documented upgrade: wait for the new master
 * (a child of P) to have W ready workers (that is "full"), TERM the old
 * master, and "gone" also needs the old master to have exited.
 */
static int cmd_hup(const struct opts *o)
{
	struct pids old = {0}, cur = {0};
	struct procwatch w;
	int64_t deadline = deadline_after(o->timeout), t0, t_gone = 0, t_full = 0;
	int cfd = open_children(o->pid), gone = 0, sig = o->nsigs ? o->sigs[0] : SIGHUP;
	bool gunicorn = sig == SIGUSR2 && o->usr2_gunicorn;
	pid_t newmaster = 0;
	bool *is_gone;

	if (cfd < 0) {
		say("cannot open the children of %d: %m", (int)o->pid);
		return 1;
	}
	poller_policy();
	/* The pool must be whole before the HUP: exactly W children. */
	for (;;) {
		if (read_children_stable(cfd, &old) == 0 && old.n == o->workers)
			break;
		if (now_ns() >= deadline) {
			say("pid %d: never had exactly %d workers before the SIG%s (has %d)",
			    (int)o->pid, o->workers, sig_name(sig), old.n);
			fail("hup_gone");
			return 1;
		}
		sleep_s(0.002);
	}
	if (pw_open(&w, o->pid) < 0)
		say("no process events (needs CAP_NET_ADMIN): how old workers ended is not "
		    "recorded");
	for (int i = 0; i < old.n; i++)
		pw_track(&w, old.v[i]);
	is_gone = calloc((size_t)old.n, sizeof(*is_gone));
	if (!is_gone)
		abort();
	deadline = deadline_after(o->timeout);
	t0 = now_ns();
	if (kill(o->pid, sig) < 0) {
		say("kill(%d, SIG%s): %m", (int)o->pid, sig_name(sig));
		fail("hup_gone");
		return 1;
	}
	while (!t_gone || !t_full) {
		int64_t t;

		pw_drain(&w);
		if (gunicorn && !newmaster) {
			newmaster = new_master(o, cfd, &old);
			if (newmaster) {
				t_full = now_ns();
				if (kill(o->pid, SIGTERM) < 0)
					say("kill(%d, SIGTERM): %m", (int)o->pid);
			}
		}
		for (int i = 0; i < old.n; i++)
			if (!is_gone[i] && pid_reaped(old.v[i])) {
				is_gone[i] = true;
				gone++;
			}
		t = now_ns();
		if (!t_gone && gone == old.n && (!gunicorn || (newmaster && !pid_alive(o->pid))))
			t_gone = t;
		if (!gunicorn && !t_full && read_children(cfd, &cur) == 0) {
			int fresh = 0;

			for (int i = 0; i < cur.n; i++)
				if (pids_find(&old, cur.v[i]) < 0)
					fresh++;
			if (fresh >= o->workers)
				t_full = t;
		}
		if (t >= deadline)
			break;
		sleep_s(0.0002);
	}
	/* Exit events come before the reap, so they are all queued by now. */
	sleep_s(0.02);
	pw_drain(&w);
	printf("hup_old");
	for (int i = 0; i < old.n; i++)
		printf(" %d", (int)old.v[i]);
	printf("\n");
	if (newmaster)
		printf("hup_newmaster %d\n", (int)newmaster);
	if (t_gone)
		sample("hup_gone", t_gone - t0);
	else
		fail("hup_gone");
	if (t_full)
		sample("hup_full", t_full - t0);
	else
		fail("hup_full");
	pw_report(&w, "hup_old_exit", &old);
	if (w.lost)
		printf("hup_events_lost %ld\n", w.lost);
	if (!t_gone || !t_full)
		say("SIG%s to %d: %d of %d old workers reaped, new generation %s after %.1f s",
		    sig_name(sig), (int)o->pid, gone, old.n, t_full ? "complete" : "incomplete",
		    o->timeout);
	return t_gone && t_full ? 0 : 1;
}

/* ---- load ------------------------------------------------------------------- */

enum cstate { C_IDLE, C_CONNECTING, C_READING };

struct conn {
	int fd;
	enum cstate state;
	size_t have;
	int64_t t_start, t_retry;
	char buf[4096];
};

struct load {
	int ep;
	struct sockaddr_in sa;
	int64_t t0, bucket_ns;
	int nb;
	long *ok, *err;
	long total_ok, e_connect, e_read, e_timeout, e_status;
};

static const char request[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

static void bucket_add(struct load *l, bool ok)
{
	int64_t i = (now_ns() - l->t0) / l->bucket_ns;

	if (i < 0)
		i = 0;
	if (i >= l->nb)
		i = l->nb - 1;
	if (ok) {
		l->ok[i]++;
		l->total_ok++;
	} else {
		l->err[i]++;
	}
}

static void conn_close(struct load *l, struct conn *c, int64_t retry_after)
{
	if (c->fd >= 0) {
		epoll_ctl(l->ep, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	c->fd = -1;
	c->state = C_IDLE;
	c->have = 0;
	c->t_retry = now_ns() + retry_after;
}

static bool conn_send(struct load *l, struct conn *c)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};

	c->have = 0;
	c->t_start = now_ns();
	if (send(c->fd, request, sizeof(request) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(request) - 1)
		return false;
	c->state = C_READING;
	return epoll_ctl(l->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0;
}

static void conn_open(struct load *l, struct conn *c)
{
	struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		l->e_connect++;
		bucket_add(l, false);
		conn_close(l, c, 1000000);
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->t_start = now_ns();
	c->state = C_CONNECTING;
	if (connect(c->fd, (struct sockaddr *)&l->sa, sizeof(l->sa)) < 0 && errno != EINPROGRESS) {
		l->e_connect++;
		bucket_add(l, false);
		conn_close(l, c, 1000000);
		return;
	}
	epoll_ctl(l->ep, EPOLL_CTL_ADD, c->fd, &ev);
}

/*
 * A complete response in c->buf? 1 yes, 0 not yet, 2 the headers are in and
 * the body runs to EOF (no Content-Length); *status and *close_after set.
 */
static int response_done(struct conn *c, int *status, bool *close_after)
{
	char *end, *h;
	size_t hdr;
	long clen = -1;

	c->buf[c->have] = '\0';
	end = strstr(c->buf, "\r\n\r\n");
	if (!end)
		return 0;
	hdr = (size_t)(end - c->buf) + 4;
	*status = c->have > 12 ? atoi(c->buf + 9) : 0;
	*close_after = strncmp(c->buf, "HTTP/1.0", 8) == 0;
	for (h = strstr(c->buf, "\r\n"); h && h < end; h = strstr(h + 2, "\r\n")) {
		if (strncasecmp(h + 2, "content-length:", 15) == 0)
			clen = strtol(h + 17, NULL, 10);
		else if (strncasecmp(h + 2, "connection:", 11) == 0)
			*close_after = strncasecmp(h + 13 + strspn(h + 13, " "), "close", 5) == 0;
	}
	if (clen < 0) {
		*close_after = true;
		return 2;
	}
	return c->have >= hdr + (size_t)clen;
}

static void conn_event(struct load *l, struct conn *c, uint32_t events)
{
	if (c->state == C_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err || (events & (EPOLLERR | EPOLLHUP))) {
			l->e_connect++;
			bucket_add(l, false);
			conn_close(l, c, 1000000);
			return;
		}
		if (!conn_send(l, c)) {
			l->e_read++;
			bucket_add(l, false);
			conn_close(l, c, 0);
		}
		return;
	}
	if (c->state != C_READING)
		return;
	for (;;) {
		ssize_t n = recv(c->fd, c->buf + c->have, sizeof(c->buf) - 1 - c->have, 0);
		int status = 0;
		bool close_after = false;

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			/* EOF: a complete response only if it was read-to-EOF. */
			if (n == 0 && c->have && response_done(c, &status, &close_after) == 2) {
				bool good = status >= 200 && status < 300;

				if (!good)
					l->e_status++;
				bucket_add(l, good);
			} else {
				l->e_read++;
				bucket_add(l, false);
			}
			conn_close(l, c, 0);
			return;
		}
		c->have += (size_t)n;
		if (response_done(c, &status, &close_after) == 1) {
			bool good = status >= 200 && status < 300;

			if (!good)
				l->e_status++;
			bucket_add(l, good);
			if (close_after || c->have >= sizeof(c->buf) - 1) {
				conn_close(l, c, 0);
			} else if (!conn_send(l, c)) {
				l->e_read++;
				bucket_add(l, false);
				conn_close(l, c, 0);
			}
			return;
		}
		if (c->have >= sizeof(c->buf) - 1) {
			l->e_read++;
			bucket_add(l, false);
			conn_close(l, c, 0);
			return;
		}
	}
}

/*
 * One reload during the load: HUP, or USR2. USR2 "inplace" is sigvisor's
 * upgrade (same pid, the old workers are retired like on HUP); "gunicorn" is
 * gunicorn's documented procedure: USR2 starts a new master as a child of the
 * old one; once that has W workers (ready, if --ready is given), TERM goes to
 * the old master, which stops its workers gracefully and exits.
 */
struct reload {
	int sig;
	double at;
	int phase; /* 0 not yet, 1 sent, 2 TERM sent to the old master, 3 done */
	int64_t t_sent, t_term, t_gone;
	pid_t newmaster;
	struct pids old;
};

static bool all_reaped(const struct pids *p)
{
	for (int i = 0; i < p->n; i++)
		if (!pid_reaped(p->v[i]))
			return false;
	return true;
}

/* gunicorn: a child of the old master, not one of its workers, with W workers. */
static pid_t new_master(const struct opts *o, int cfd, const struct pids *old)
{
	struct pids kids = {0}, grand = {0};
	pid_t found = 0;

	if (read_children(cfd, &kids) < 0)
		return 0;
	for (int i = 0; i < kids.n && !found; i++) {
		int gfd;
		bool ready = true;

		if (pids_find(old, kids.v[i]) >= 0)
			continue;
		gfd = open_children(kids.v[i]);
		if (gfd < 0)
			continue;
		if (read_children_stable(gfd, &grand) == 0 && grand.n >= o->workers) {
			for (int k = 0; k < grand.n && ready; k++)
				ready = o->nready == 0 || pid_ready(o, grand.v[k]);
			if (ready)
				found = kids.v[i];
		}
		close(gfd);
	}
	free(kids.v);
	free(grand.v);
	return found;
}

static void reload_step(const struct opts *o, struct load *l, struct reload *r, int cfd,
			bool gunicorn)
{
	int64_t t = now_ns();

	if (r->phase == 0 && t >= l->t0 + (int64_t)(r->at * 1e9)) {
		read_children_stable(cfd, &r->old);
		r->t_sent = now_ns();
		if (kill(o->pid, r->sig) < 0)
			say("kill(%d, SIG%s): %m", (int)o->pid, sig_name(r->sig));
		r->phase = 1;
		return;
	}
	if (r->phase == 1 && r->sig == SIGUSR2 && gunicorn) {
		r->newmaster = new_master(o, cfd, &r->old);
		if (r->newmaster) {
			r->t_term = now_ns();
			if (kill(o->pid, SIGTERM) < 0)
				say("kill(%d, SIGTERM): %m", (int)o->pid);
			r->phase = 2;
		}
		return;
	}
	if (r->phase == 1 || r->phase == 2) {
		/* The old master may stay a zombie until our caller reaps it. */
		if (all_reaped(&r->old) && (r->phase == 1 || !pid_alive(o->pid))) {
			r->t_gone = now_ns();
			r->phase = 3;
		}
	}
}

static int cmd_load(const struct opts *o)
{
	struct load l = {0};
	struct conn *conns = calloc((size_t)o->conns, sizeof(*conns));
	struct epoll_event evs[256];
	struct reload rl[MAX_HUPS + 1];
	int64_t t_end, timeout_ns = 2000000000, t_prev, gap_max = 0, gap_at = 0;
	int cfd = -1, nrl = 0;

	if (!conns)
		abort();
	memset(rl, 0, sizeof(rl));
	for (int i = 0; i < o->nhups; i++)
		rl[nrl++] = (struct reload){.sig = SIGHUP, .at = o->hup_at[i]};
	if (o->usr2_at > 0)
		rl[nrl++] = (struct reload){.sig = SIGUSR2, .at = o->usr2_at};
	l.ep = epoll_create1(EPOLL_CLOEXEC);
	l.sa = (struct sockaddr_in){.sin_family = AF_INET,
				    .sin_port = htons((uint16_t)o->port),
				    .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	l.bucket_ns = (int64_t)o->bucket_ms * 1000000;
	l.nb = (int)(o->seconds * 1000 / o->bucket_ms) + 1;
	l.ok = calloc((size_t)l.nb, sizeof(long));
	l.err = calloc((size_t)l.nb, sizeof(long));
	if (l.ep < 0 || !l.ok || !l.err)
		abort();
	if (nrl && (cfd = open_children(o->pid)) < 0) {
		say("cannot open the children of %d: %m", (int)o->pid);
		return 1;
	}
	l.t0 = now_ns();
	t_end = l.t0 + (int64_t)(o->seconds * 1e9);
	for (int i = 0; i < o->conns; i++) {
		conns[i].fd = -1;
		conn_open(&l, &conns[i]);
	}
	t_prev = now_ns();
	for (;;) {
		int64_t t = now_ns();
		int n;

		/* The client itself not running (a busy or paused VM) shows up here. */
		if (t - t_prev > gap_max) {
			gap_max = t - t_prev;
			gap_at = t_prev;
		}
		t_prev = t;
		if (t >= t_end)
			break;
		for (int i = 0; i < nrl; i++)
			reload_step(o, &l, &rl[i], cfd, o->usr2_gunicorn);
		for (int i = 0; i < o->conns; i++) {
			struct conn *c = &conns[i];

			if (c->state == C_IDLE && t >= c->t_retry) {
				conn_open(&l, c);
			} else if (c->state != C_IDLE && t - c->t_start > timeout_ns) {
				l.e_timeout++;
				bucket_add(&l, false);
				conn_close(&l, c, 0);
			}
		}
		n = epoll_wait(l.ep, evs, 256, 1);
		for (int i = 0; i < n; i++)
			conn_event(&l, evs[i].data.ptr, evs[i].events);
	}
	for (int i = 0; i < nrl; i++) {
		struct reload *r = &rl[i];

		if (!r->phase) {
			printf("# %s never sent\n", sig_name(r->sig));
			continue;
		}
		printf("# %s %.1f\n", sig_name(r->sig), (double)(r->t_sent - l.t0) / 1e6);
		if (r->newmaster)
			printf("# newmaster %d term_old %.1f\n", (int)r->newmaster,
			       (double)(r->t_term - l.t0) / 1e6);
		if (r->t_gone)
			printf("# gone %s %.1f\n", sig_name(r->sig),
			       (double)(r->t_gone - l.t0) / 1e6);
		else
			printf("# gone %s never\n", sig_name(r->sig));
	}
	printf("# client_stall_max_ms %.1f at %.1f\n", (double)gap_max / 1e6,
	       (double)(gap_at - l.t0) / 1e6);
	printf("# total_ok %ld connect_errors %ld read_errors %ld timeouts %ld non2xx %ld\n",
	       l.total_ok, l.e_connect, l.e_read, l.e_timeout, l.e_status);
	for (int i = 0; i < l.nb - 1; i++)
		printf("%d %ld %ld\n", i * o->bucket_ms, l.ok[i], l.err[i]);
	fflush(stdout);
	return 0;
}

/* ---- storm ------------------------------------------------------------------ */

static int cmd_storm(const struct opts *o)
{
	struct procwatch w;
	struct pids cur = {0}, prev = {0};
	int64_t t0, t1, deadline, gap = (int64_t)o->gap_us * 1000, last_change;
	long sent = 0, errs = 0, idx = 0;
	int cfd = open_children(o->pid);
	bool settled = false;

	if (cfd < 0 || read_children_stable(cfd, &prev) < 0) {
		say("cannot read the children of %d: %m", (int)o->pid);
		return 1;
	}
	if (pw_open(&w, o->pid) < 0)
		say("no process events (needs CAP_NET_ADMIN): forks and exits are not recorded");
	for (int i = 0; i < prev.n; i++)
		pw_track(&w, prev.v[i]);
	if (pin(o->cpu) < 0)
		return 1;
	t0 = now_ns();
	for (int r = 0; r < o->rounds; r++) {
		for (int k = 0; k < o->nsigs; k++, idx++) {
			if (gap) {
				int64_t due = t0 + idx * gap;

				while (now_ns() < due)
					cpu_relax();
			}
			if (kill(o->pid, o->sigs[k]) < 0)
				errs++;
			else
				sent++;
		}
	}
	t1 = now_ns();
	printf("storm_sent %ld\n", sent);
	sample("storm_send", t1 - t0);
	if (errs)
		say("%ld kill() calls failed", errs);
	/* Settled: no fork or exit under the arbiter and no change in its children for Q ms. */
	deadline = deadline_after(o->timeout);
	last_change = now_ns();
	for (;;) {
		int64_t t;

		if (pw_drain(&w))
			last_change = now_ns();
		if (read_children_stable(cfd, &cur) == 0 && cur.n != prev.n) {
			last_change = now_ns();
			pids_copy(&prev, &cur);
		}
		t = now_ns();
		if (t - last_change >= (int64_t)o->quiet_ms * 1000000) {
			settled = true;
			break;
		}
		if (t >= deadline) {
			say("the pool of %d was still changing %.1f s after the storm (%d "
			    "children)",
			    (int)o->pid, o->timeout, cur.n);
			fail("storm_settle");
			break;
		}
		if (!pid_alive(o->pid)) {
			say("the arbiter %d died during the storm", (int)o->pid);
			fail("storm_settle");
			break;
		}
		sleep_s(0.005);
	}
	if (w.fd >= 0)
		printf("storm_forks %d\nstorm_exits %d\n", w.forks, w.exits);
	pw_report(&w, "storm_exit", NULL);
	read_children_stable(cfd, &cur);
	printf("storm_final %d\n", cur.n);
	sample("storm_settle", last_change - t1);
	if (w.lost)
		printf("storm_events_lost %ld\n", w.lost);
	fflush(stdout);
	return settled ? 0 : 1;
}

/* ---- scale ------------------------------------------------------------------ */

static int cmd_scale(const struct opts *o)
{
	struct pids before = {0}, cur = {0};
	struct sender snd = {0};
	int cfd = open_children(o->pid), fds_peak = 0, n;
	int top = (o->to - o->from) / 10 > 0 ? (o->to - o->from) / 10 : 1; /* the last 10% */
	int64_t t_all;

	if (cfd < 0 || sender_start(&snd, o->cpu) < 0 || pin(o->probe_cpu) < 0 ||
	    observer_policy() < 0)
		return 1;
	if (read_children_stable(cfd, &before) < 0 || before.n != o->from) {
		say("pid %d has %d workers, expected %d", (int)o->pid, before.n, o->from);
		fail("scale_up");
		return 1;
	}
	printf("fds_base %d\n", count_fds(o->pid));
	t_all = now_ns();
	for (n = o->from; n < o->to; n++) {
		int64_t deadline = deadline_after(o->timeout), t0 = 0, t_ready = 0;
		unsigned ticket = sender_send(&snd, o->pid, SIGTTIN);
		pid_t fresh = 0;

		while (now_ns() < deadline && !t_ready) {
			if (!fresh && read_children(cfd, &cur) == 0)
				for (int i = 0; i < cur.n && !fresh; i++)
					if (pids_find(&before, cur.v[i]) < 0)
						fresh = cur.v[i];
			if (fresh && pid_ready(o, fresh))
				t_ready = now_ns();
			else
				cpu_relax();
		}
		if (sender_wait(&snd, ticket, deadline, &t0) < 0 || !t_ready) {
			say("TTIN at %d workers: %s within %.1f s", n,
			    fresh ? "the new worker never waited" : "no new worker", o->timeout);
			fail("scale_up");
			return 1;
		}
		sample(n >= o->to - top ? "scale_up_top" : "scale_up", t_ready - t0);
		pids_add(&before, fresh);
	}
	sample("scale_up_total", now_ns() - t_all);
	/* The whole pool at the top: every worker alive, and how many fds that costs. */
	if (read_children_stable(cfd, &cur) < 0 || cur.n != o->to)
		say("at the top: %d children, expected %d", cur.n, o->to);
	printf("top_children %d\n", cur.n);
	fds_peak = count_fds(o->pid);
	printf("fds_peak %d\n", fds_peak);
	pids_copy(&before, &cur);
	t_all = now_ns();
	for (n = o->to; n > o->from; n--) {
		int64_t deadline = deadline_after(o->timeout), t0 = 0, t_done = 0;
		unsigned ticket = sender_send(&snd, o->pid, SIGTTOU);
		int gone = -1;

		while (now_ns() < deadline) {
			for (int i = 0; i < before.n && gone < 0; i++)
				if (pid_reaped(before.v[i]))
					gone = i;
			if (gone >= 0 && read_children(cfd, &cur) == 0 && cur.n == n - 1) {
				t_done = now_ns();
				break;
			}
			cpu_relax();
		}
		if (sender_wait(&snd, ticket, deadline, &t0) < 0 || !t_done) {
			say("TTOU at %d workers: %s within %.1f s", n,
			    gone >= 0 ? "the pool did not shrink" : "no worker reaped", o->timeout);
			fail("scale_down");
			return 1;
		}
		sample(n > o->to - top ? "scale_down_top" : "scale_down", t_done - t0);
		before.v[gone] = before.v[--before.n];
	}
	sample("scale_down_total", now_ns() - t_all);
	sleep_s(0.5);
	read_children_stable(cfd, &cur);
	printf("end_children %d\nfds_end %d\n", cur.n, count_fds(o->pid));
	fflush(stdout);
	return 0;
}

/* ---- orphans: the child an init runs ------------------------------------------ */

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
static int cmd_orphans(const struct opts *o)
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

/* ---- pid1: watch an init from outside ----------------------------------------- */

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

static int cmd_pid1(const struct opts *o)
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

/* ---- command line ----------------------------------------------------------- */

static int parse_list(struct opts *o, const char *list, char kind)
{
	char *copy = strdup(list), *save = NULL;

	if (!copy)
		return -1;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (kind == 'r') {
			long nr = syscall_by_name(t);

			if (nr < 0 || o->nready == MAX_READY)
				goto bad;
			o->ready[o->nready++] = nr;
		} else if (kind == 's') {
			int s = sig_number(t);

			if (s < 0 || o->nsigs == MAX_SIGS)
				goto bad;
			o->sigs[o->nsigs++] = s;
		} else {
			if (o->nhups == MAX_HUPS)
				goto bad;
			o->hup_at[o->nhups++] = atof(t);
		}
	}
	free(copy);
	return 0;
bad:
	say("unknown name, or too many, in '%s'", list);
	free(copy);
	return -1;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: sigbench hup     --pid P --workers W [--timeout S] [--signals USR2\n"
		"                        [--usr2-mode inplace|gunicorn --ready LIST]]\n"
		"       sigbench load    --port N [--conns C] [--seconds D] [--bucket-ms B]\n"
		"                        [--pid P [--hup-at T1,T2,...] [--usr2-at T]\n"
		"                        [--usr2-mode inplace|gunicorn] [--workers W --ready "
		"LIST]]\n"
		"       sigbench storm   --pid P --signals LIST --rounds N [--gap-us G] [--cpu C]\n"
		"                        [--quiet-ms Q] [--timeout S]\n"
		"       sigbench scale   --pid P --from B --to T --ready LIST [--timeout S]\n"
		"                        [--cpu C --probe-cpu C2]\n"
		"       sigbench orphans --seconds D --mark DIR\n"
		"       sigbench pid1    --parent U --mark DIR [--timeout S]\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"pid", required_argument, NULL, 'p'},
		{"parent", required_argument, NULL, 'p'},
		{"port", required_argument, NULL, 'P'},
		{"workers", required_argument, NULL, 'w'},
		{"conns", required_argument, NULL, 'c'},
		{"seconds", required_argument, NULL, 'd'},
		{"bucket-ms", required_argument, NULL, 'b'},
		{"hup-at", required_argument, NULL, 'h'},
		{"signals", required_argument, NULL, 's'},
		{"rounds", required_argument, NULL, 'n'},
		{"gap-us", required_argument, NULL, 'g'},
		{"quiet-ms", required_argument, NULL, 'q'},
		{"from", required_argument, NULL, 'f'},
		{"to", required_argument, NULL, 'T'},
		{"ready", required_argument, NULL, 'r'},
		{"cpu", required_argument, NULL, 'C'},
		{"probe-cpu", required_argument, NULL, 'O'},
		{"timeout", required_argument, NULL, 't'},
		{"mark", required_argument, NULL, 'm'},
		{"usr2-at", required_argument, NULL, 'u'},
		{"usr2-mode", required_argument, NULL, 'M'},
		{0},
	};
	struct opts o = {.workers = 4,
			 .conns = 64,
			 .rounds = 1,
			 .cpu = -1,
			 .probe_cpu = -1,
			 .seconds = 3,
			 .timeout = 10,
			 .bucket_ms = 100,
			 .quiet_ms = 1000};
	const char *cmd;
	int c;

	if (argc < 2) {
		usage();
		return 2;
	}
	cmd = argv[1];
	argv++, argc--;
	while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			o.pid = (pid_t)atoi(optarg);
			break;
		case 'P':
			o.port = atoi(optarg);
			break;
		case 'w':
			o.workers = atoi(optarg);
			break;
		case 'c':
			o.conns = atoi(optarg);
			break;
		case 'd':
			o.seconds = atof(optarg);
			break;
		case 'b':
			o.bucket_ms = atoi(optarg);
			break;
		case 'n':
			o.rounds = atoi(optarg);
			break;
		case 'g':
			o.gap_us = atol(optarg);
			break;
		case 'q':
			o.quiet_ms = atoi(optarg);
			break;
		case 'f':
			o.from = atoi(optarg);
			break;
		case 'T':
			o.to = atoi(optarg);
			break;
		case 'C':
			o.cpu = atoi(optarg);
			break;
		case 'O':
			o.probe_cpu = atoi(optarg);
			break;
		case 't':
			o.timeout = atof(optarg);
			break;
		case 'm':
			o.mark = optarg;
			break;
		case 'u':
			o.usr2_at = atof(optarg);
			break;
		case 'M':
			if (strcmp(optarg, "gunicorn") != 0 && strcmp(optarg, "inplace") != 0) {
				usage();
				return 2;
			}
			o.usr2_gunicorn = strcmp(optarg, "gunicorn") == 0;
			break;
		case 'h':
		case 's':
		case 'r':
			if (parse_list(&o, optarg, (char)c) < 0)
				return 2;
			break;
		default:
			usage();
			return 2;
		}
	}
	if (o.timeout <= 0 || o.seconds <= 0) {
		usage();
		return 2;
	}
	if (strcmp(cmd, "hup") == 0 && o.pid > 0 && o.workers > 0)
		return cmd_hup(&o);
	if (strcmp(cmd, "load") == 0 && o.port > 0 && o.conns > 0 && o.bucket_ms > 0 &&
	    ((o.nhups == 0 && o.usr2_at <= 0) || o.pid > 0))
		return cmd_load(&o);
	if (strcmp(cmd, "storm") == 0 && o.pid > 0 && o.nsigs > 0 && o.rounds > 0)
		return cmd_storm(&o);
	if (strcmp(cmd, "scale") == 0 && o.pid > 0 && o.from > 0 && o.to > o.from && o.nready)
		return cmd_scale(&o);
	if (strcmp(cmd, "orphans") == 0 && o.mark)
		return cmd_orphans(&o);
	if (strcmp(cmd, "pid1") == 0 && o.pid > 0 && o.mark)
		return cmd_pid1(&o);
	usage();
	return 2;
}
