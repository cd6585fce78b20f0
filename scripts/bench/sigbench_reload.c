// SPDX-License-Identifier: MIT
/*
 * sigbench_reload.c - `sigbench hup` and `sigbench load`: one reload signal
 * (HUP, or USR2 sigvisor's way or gunicorn's) timed until the old workers are
 * gone and the new generation is up, alone (hup) or under the small HTTP/1.1
 * load client that counts completed requests per time bucket (load).
 */
#define _GNU_SOURCE
#include "sigbench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static void poller_policy(void)
{
	struct sched_param sp = {.sched_priority = 1};

	if (sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) < 0)
		say("SCHED_FIFO not available (%m): timings include scheduling delay");
}

static pid_t new_master(const struct opts *o, int cfd, const struct pids *old);

/*
 * One reload signal (HUP, or USR2 with --signals USR2) to arbiter P under
 * whatever load the caller runs. Gone: every worker P had before is reaped.
 * Full: W workers that were not there before are up. With --usr2-mode
 * gunicorn, USR2 is gunicorn's documented upgrade: wait for the new master
 * (a child of P) to have W ready workers (that is "full"), TERM the old
 * master, and "gone" also needs the old master to have exited.
 */
int cmd_hup(const struct opts *o)
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
				ready = o->ready.n == 0 || pid_ready(o, grand.v[k]);
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

int cmd_load(const struct opts *o)
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
