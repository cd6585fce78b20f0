/* Readiness by serving: see serving.h. Here the watching: which worker is looked at
 * when, by the probe or by a look at /proc (serving_scan.c) made in a child process
 * with a deadline (serving_look_child), so that a worker that never answers cannot
 * stop the arbiter's loop; what it does not look at, the fallback time covers. */

#include "serving_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bpf.h"
#include "log.h"
#include "loop.h"
#include "timeutil.h"

#ifndef P_PIDFD
#define P_PIDFD 3 /* glibc 2.36 does not define it */
#endif

/* ---- watching ------------------------------------------------------------------------ */

struct serving *serving_new(const struct serving_hooks *hooks, struct loop *loop)
{
	struct serving *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->hooks = *hooks;
	s->loop = loop;
	for (size_t i = 0; i < SERVING_LOOKS; i++) {
		s->lookers[i].src.type = SOURCE_SERVING_LOOK;
		s->lookers[i].src.fd = -1;
		s->lookers[i].out = -1;
	}
	return s;
}

static struct watch *find(const struct serving *s, pid_t pid)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->w[i].pid == pid)
			return &s->w[i];
	return NULL;
}

static void drop(struct serving *s, struct watch *w)
{
	if (w->bpf)
		bpf_probes_serving_unwatch(s->bpf, w->pid);
	*w = s->w[--s->n];
}

/* The slot is free again; the child is gone or, at exit, left to the kernel. */
static void looker_clear(struct serving *s, struct looker *lk)
{
	if (lk->src.fd >= 0) {
		if (s->loop)
			(void)loop_del(s->loop, &lk->src);
		close(lk->src.fd);
	}
	if (lk->out >= 0)
		close(lk->out);
	lk->src.fd = lk->out = -1;
	lk->pid = 0;
	lk->deadline_ms = 0;
	lk->n_pids = lk->n_done = 0;
	s->said_full = false;
}

static void looker_kill(const struct looker *lk)
{
	/* Either names this child: it is not reaped yet, so its pid is not reused. */
	if (lk->src.fd >= 0)
		(void)pidfd_send_signal(lk->src.fd, SIGKILL, NULL, 0);
	else
		(void)kill(lk->pid, SIGKILL);
}

void serving_free(struct serving *s)
{
	if (!s)
		return;
	while (s->n)
		drop(s, &s->w[0]);
	/* Never wait for a look child here: one stuck in the kernel would hold up the
	 * exit. Killed, it is reaped by whoever inherits it. */
	for (size_t i = 0; i < SERVING_LOOKS; i++)
		if (s->lookers[i].pid) {
			looker_kill(&s->lookers[i]);
			looker_clear(s, &s->lookers[i]);
		}
	free(s->w);
	free(s);
}

static void push_sockets(struct serving *s)
{
	int r;

	if (!s->bpf || !bpf_probes_serving(s->bpf))
		return;
	r = bpf_probes_serving_sockets(s->bpf, s->inodes, s->n_inodes);
	if (r < 0)
		log_warn("BPF: cannot give the serving probe the listening sockets, looking at "
			 "/proc instead: %s",
			 strerror(-r));
}

void serving_set_sockets(struct serving *s, const int *fds, size_t n)
{
	uint64_t inodes[MAX_SOCKS];
	size_t k = 0;

	if (!s)
		return;
	for (size_t i = 0; i < n && k < MAX_SOCKS; i++) {
		struct stat st;

		if (fds[i] >= 0 && fstat(fds[i], &st) == 0)
			inodes[k++] = st.st_ino;
	}
	if (k == s->n_inodes && memcmp(inodes, s->inodes, k * sizeof(inodes[0])) == 0)
		return; /* the common case: the same sockets as for the last worker */
	memcpy(s->inodes, inodes, k * sizeof(inodes[0]));
	s->n_inodes = k;
	push_sockets(s);
}

static const char *method_line(const struct serving *s, char *buf, size_t len)
{
	const char *off = bpf_probes_part_off(s->bpf, BPF_PART_SERVING);

	if (s->bpf && !off)
		snprintf(buf, len,
			 "the eBPF probe (accept, epoll_ctl, poll, select; attached while a "
			 "worker boots)");
	else
		snprintf(buf, len,
			 "a look at /proc every %d ms (epoll interest lists, threads blocked in "
			 "accept, poll, select; eBPF: %s)",
			 SERVING_SCAN_MS, off);
	return buf;
}

static void say_method(struct serving *s)
{
	char m[sizeof(s->said)];

	method_line(s, m, sizeof(m));
	if (strcmp(m, s->said) == 0)
		return;
	snprintf(s->said, sizeof(s->said), "%s", m);
	log_info("--ready-mode auto: a COMMAND worker is ready on READY=1, or once it accepts "
		 "from or waits on a listening socket, seen by %s",
		 m);
}

const char *serving_method(const struct serving *s)
{
	return s->bpf && !bpf_probes_part_off(s->bpf, BPF_PART_SERVING) ? "eBPF" : "/proc";
}

static void to_probe(struct serving *s, struct watch *w)
{
	if (w->bpf || !s->bpf || !bpf_probes_serving(s->bpf))
		return;
	w->bpf = bpf_probes_serving_watch(s->bpf, w->pid) == 0;
}

static void on_probe(void *ctx, pid_t pid, const char *how)
{
	struct serving *s = ctx;
	struct watch *w = find(s, pid);

	if (!w)
		return; /* forgotten meanwhile (READY=1, exit) */
	drop(s, w);
	s->hooks.seen(s->hooks.ctx, pid, how);
}

void serving_set_probes(struct serving *s, struct bpf_probes *p)
{
	if (!s || s->bpf == p)
		return;
	for (size_t i = 0; i < s->n; i++) {
		if (s->w[i].bpf)
			bpf_probes_serving_unwatch(s->bpf, s->w[i].pid);
		s->w[i].bpf = false;
	}
	s->bpf = p;
	if (p) {
		bpf_probes_serving_callback(p, on_probe, s);
		push_sockets(s);
	}
	for (size_t i = 0; i < s->n; i++)
		to_probe(s, &s->w[i]);
	if (s->n)
		say_method(s);
}

static uint64_t next_scan(const struct watch *w, uint64_t now)
{
	if (!w->bpf && now - w->started_ms < SERVING_FAST_MS)
		return now + SERVING_SCAN_MS;
	return now + SERVING_SLOW_MS;
}

int serving_watch(struct serving *s, pid_t pid, uint64_t now_ms, uint64_t fallback_ms)
{
	struct watch *w = find(s, pid);

	if (!w) {
		if (s->n == s->cap) {
			size_t cap = s->cap ? s->cap * 2 : 8;
			struct watch *nw = realloc(s->w, cap * sizeof(*nw));

			if (!nw)
				return -ENOMEM;
			s->w = nw;
			s->cap = cap;
		}
		w = &s->w[s->n++];
		memset(w, 0, sizeof(*w));
		w->pid = pid;
	}
	w->started_ms = now_ms;
	w->fallback_ms = now_ms + fallback_ms;
	/* a look under way is not about this watch */
	w->look = NULL;
	w->no_proc = false;
	w->timeouts = 0;
	to_probe(s, w);
	w->scan_ms = next_scan(w, now_ms);
	say_method(s);
	return 0;
}

void serving_forget(struct serving *s, pid_t pid)
{
	struct watch *w = s ? find(s, pid) : NULL;

	if (w)
		drop(s, w);
}

bool serving_watching(const struct serving *s, pid_t pid)
{
	return s && find(s, pid) != NULL;
}

/* ---- looks: started, read, killed, reaped --------------------------------------------- */

/* 1 reaped, 0 not exited yet, -errno. */
static int looker_reap(const struct looker *lk)
{
	siginfo_t si;
	int r;

	memset(&si, 0, sizeof(si));
	if (lk->src.fd >= 0)
		r = waitid((idtype_t)P_PIDFD, (id_t)lk->src.fd, &si, WEXITED | WNOHANG);
	else
		r = waitid(P_PID, (id_t)lk->pid, &si, WEXITED | WNOHANG);
	if (r < 0)
		return -errno;
	return si.si_pid != 0;
}

static bool running(const struct looker *lk)
{
	return lk->pid && lk->deadline_ms;
}

/* A record of look lk: the worker seen serving, or looked at again later. */
static void take_record(struct serving *s, const struct looker *lk, const struct look_record *rec,
			uint64_t now)
{
	struct watch *w = find(s, rec->pid);
	pid_t pid = rec->pid;
	char how[sizeof(rec->how)];

	if (!w || w->look != lk)
		return; /* forgotten meanwhile, or watched anew since the look began */
	w->look = NULL;
	w->scan_ms = next_scan(w, now);
	if (rec->r <= 0)
		return;
	if (w->bpf) {
		/* What /proc shows came after the system call's entry, where the probe
		 * wrote its event: let that account (which names the call) be the one
		 * used, if it is there. The poll may report pid and drop it. */
		bpf_probes_poll(s->bpf);
		w = find(s, pid);
		if (!w)
			return;
	}
	snprintf(how, sizeof(how), "%.*s", (int)sizeof(rec->how) - 1, rec->how);
	drop(s, w);
	s->hooks.seen(s->hooks.ctx, pid, how);
}

/* Every record written so far; the pipe is closed at its end. */
static void read_records(struct serving *s, struct looker *lk, uint64_t now)
{
	while (lk->out >= 0) {
		struct look_record rec;
		ssize_t n = read(lk->out, &rec, sizeof(rec));

		if (n == (ssize_t)sizeof(rec)) {
			lk->n_done++;
			take_record(s, lk, &rec, now);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		/* end of file (records are shorter than PIPE_BUF: never read in part) */
		close(lk->out);
		lk->out = -1;
	}
}

/* Look lk is over: the workers it gave no record for are looked at again. */
static void end_look(struct serving *s, const struct looker *lk)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->w[i].look == lk)
			s->w[i].look = NULL;
}

static void looker_done(struct serving *s, struct looker *lk)
{
	if (running(lk)) {
		read_records(s, lk, now_ms());
		end_look(s, lk);
	} else {
		log_info("readiness: the look at /proc killed earlier (pid %d) has ended",
			 (int)lk->pid);
	}
	looker_clear(s, lk);
}

/* A worker whose look did not finish in time is looked at again alone, later, up to
 * LOOK_TRIES times: a look that was only slow (a loaded machine, an exec under way)
 * must not cost it its readiness, one that never answers must not cost the others. */
static void timed_out(struct watch *w, const struct looker *lk, uint64_t now)
{
	w->timeouts++;
	if (w->timeouts < LOOK_TRIES) {
		w->scan_ms = now + (uint64_t)SERVING_LOOK_MS * w->timeouts;
		log_info("readiness: the look at /proc for pid %d did not finish in %.1f s; "
			 "killed it (pid %d), looking again in %.1f s",
			 (int)w->pid, SERVING_LOOK_MS / 1000.0, (int)lk->pid,
			 (double)(w->scan_ms - now) / 1000.0);
		return;
	}
	w->no_proc = true;
	log_warn("readiness: the look at /proc for pid %d did not finish in %.1f s, %d times "
		 "(its memory or /proc files do not answer: userfaultfd, a hung FUSE or NFS "
		 "mapping); killed the look (pid %d), pid %d is not looked at again: it is "
		 "ready on READY=1%s or after its fallback time",
		 (int)w->pid, SERVING_LOOK_MS / 1000.0, LOOK_TRIES, (int)lk->pid, (int)w->pid,
		 w->bpf ? ", by the eBPF probe" : "");
}

static void look_timeout(struct serving *s, struct looker *lk, uint64_t now)
{
	read_records(s, lk, now);
	if (lk->n_done < lk->n_pids) {
		struct watch *w = find(s, lk->pids[lk->n_done]);

		if (w && w->look == lk)
			timed_out(w, lk, now);
	}
	end_look(s, lk);
	looker_kill(lk);
	s->looks_killed++;
	if (lk->out >= 0) {
		close(lk->out);
		lk->out = -1;
	}
	lk->deadline_ms = 0; /* killed: its slot is free once the kernel lets it go */
}

static size_t free_lookers(const struct serving *s)
{
	size_t n = 0;

	for (size_t i = 0; i < SERVING_LOOKS; i++)
		n += !s->lookers[i].pid;
	return n;
}

static bool main_look_running(const struct serving *s)
{
	for (size_t i = 0; i < SERVING_LOOKS; i++)
		if (running(&s->lookers[i]) && !s->lookers[i].alone)
			return true;
	return false;
}

/* Whether a look at w may start now (it is due or not): the look at the workers due
 * needs a free slot, a look alone must leave one for it. */
static bool may_look(const struct serving *s, const struct watch *w)
{
	if (w->no_proc || w->look)
		return false;
	if (!w->timeouts)
		return !main_look_running(s) && free_lookers(s) > 0;
	return free_lookers(s) > (main_look_running(s) ? 0u : 1u);
}

static bool due(const struct watch *w, uint64_t now)
{
	return !w->no_proc && !w->look && w->scan_ms <= now;
}

static void postpone(struct serving *s, uint64_t now)
{
	for (size_t i = 0; i < s->n; i++)
		if (due(&s->w[i], now))
			s->w[i].scan_ms = next_scan(&s->w[i], now);
}

/* One child looks at the workers given, in turn. 0, or -1 (postponed, logged). */
static int start_look(struct serving *s, const pid_t *pids, size_t n, bool alone, uint64_t now)
{
	struct looker *lk = NULL;
	pid_t parent = getpid(), pid;
	int fds[2], pidfd, r;

	for (size_t i = 0; i < SERVING_LOOKS && !lk; i++)
		if (!s->lookers[i].pid)
			lk = &s->lookers[i];
	if (!lk)
		return -1;
	if (pipe2(fds, O_CLOEXEC) < 0) {
		log_warn("readiness: cannot make a pipe for a look at /proc, ignoring: %m");
		return -1;
	}
	/* fork(), not spawn_exec(): the child runs C library code (see
	 * look_child), and fork() runs the C library's own at-fork handlers for it. */
	pid = fork();
	if (pid == 0)
		serving_look_child(s, pids, n, fds[1], parent);
	close(fds[1]);
	if (pid < 0) {
		log_warn("readiness: cannot start a look at /proc, ignoring: %m");
		close(fds[0]);
		return -1;
	}
	/* Not reaped yet, so pid still names it; without a pidfd, SIGCHLD and
	 * serving_reap() see it end. */
	pidfd = pidfd_open(pid, 0);
	(void)fcntl(fds[0], F_SETFL, O_NONBLOCK);
	lk->pid = pid;
	lk->out = fds[0];
	lk->src.fd = pidfd;
	lk->deadline_ms = now + SERVING_LOOK_MS;
	lk->alone = alone;
	memcpy(lk->pids, pids, n * sizeof(pids[0]));
	lk->n_pids = n;
	lk->n_done = 0;
	for (size_t i = 0; i < n; i++) {
		struct watch *w = find(s, pids[i]);

		if (w)
			w->look = lk;
	}
	if (pidfd >= 0 && (r = loop_add(s->loop, &lk->src, LOOP_IN)) < 0)
		log_warn("readiness: cannot watch a look's pidfd (SIGCHLD will do): %s",
			 strerror(-r));
	return 0;
}

static void start_looks(struct serving *s, uint64_t now)
{
	pid_t pids[LOOK_PIDS];
	size_t n = 0, taken;
	bool blocked = false;

	for (size_t i = 0; i < s->n; i++) {
		struct watch *w = &s->w[i];

		if (!w->timeouts && n < LOOK_PIDS && due(w, now) && may_look(s, w))
			pids[n++] = w->pid;
	}
	if (n && start_look(s, pids, n, false, now) < 0)
		postpone(s, now);
	for (size_t i = 0; i < s->n; i++) {
		struct watch *w = &s->w[i];

		if (!due(w, now) || (!w->timeouts && main_look_running(s)))
			continue; /* not due, or in the next look at the others */
		if (!may_look(s, w))
			blocked = true;
		else if (w->timeouts && start_look(s, &w->pid, 1, true, now) < 0)
			w->scan_ms = next_scan(w, now);
	}
	if (!blocked || s->said_full)
		return;
	taken = SERVING_LOOKS - free_lookers(s);
	log_warn("readiness: %zu looks at /proc are under way or stuck in the kernel (killed, "
		 "not gone yet); no new look%s until one ends",
		 taken, taken < SERVING_LOOKS ? " at a worker whose look timed out" : "");
	s->said_full = true;
}

void serving_on_look(struct serving *s, struct source *src)
{
	struct looker *lk = (struct looker *)src;
	int r = looker_reap(lk);

	if (r == 0)
		return; /* not exited: a spurious wakeup */
	if (r < 0)
		log_warn("waitid on a look at /proc (pid %d), ignoring: %s", (int)lk->pid,
			 strerror(-r));
	looker_done(s, lk); /* either way: a pidfd that stays readable must not spin */
}

int serving_reap(struct serving *s, pid_t pid)
{
	struct looker *lk = NULL;
	int r;

	for (size_t i = 0; s && i < SERVING_LOOKS && !lk; i++)
		if (s->lookers[i].pid == pid)
			lk = &s->lookers[i];
	if (!lk)
		return 0;
	r = looker_reap(lk);
	if (r <= 0)
		return -1; /* the caller saw it exit: cannot happen; never spin on it */
	looker_done(s, lk);
	return 1;
}

uint64_t serving_looks_killed(const struct serving *s)
{
	return s ? s->looks_killed : 0;
}

void serving_run(struct serving *s, uint64_t now_ms)
{
	if (!s)
		return;
	for (size_t i = 0; i < SERVING_LOOKS; i++)
		if (running(&s->lookers[i]) && s->lookers[i].deadline_ms <= now_ms)
			look_timeout(s, &s->lookers[i], now_ms);
	/* One at a time: the hook may start or stop watching others. */
	for (size_t i = 0; i < s->n;) {
		pid_t pid = s->w[i].pid;

		if (s->w[i].fallback_ms > now_ms) {
			i++;
			continue;
		}
		drop(s, &s->w[i]);
		s->hooks.seen(s->hooks.ctx, pid, NULL);
		i = 0;
	}
	start_looks(s, now_ms);
}

uint64_t serving_next_deadline(const struct serving *s)
{
	uint64_t next = 0;

	if (!s)
		return 0;
	for (size_t i = 0; i < s->n; i++) {
		next = earlier_deadline(next, s->w[i].fallback_ms);
		/* a look that may not start yet is not due: no timer spins on it */
		if (may_look(s, &s->w[i]))
			next = earlier_deadline(next, s->w[i].scan_ms);
	}
	for (size_t i = 0; i < SERVING_LOOKS; i++)
		if (running(&s->lookers[i]))
			next = earlier_deadline(next, s->lookers[i].deadline_ms);
	return next;
}
