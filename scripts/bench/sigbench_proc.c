// SPDX-License-Identifier: MIT
/*
 * sigbench_proc.c - what every sigbench subcommand watches a server with:
 * signal names, pid lists, /proc (children, the blocked syscall that says a
 * worker is ready, open fds), and the proc connector, which records every
 * fork and exit under one parent independently of what the server logs.
 */
#define _GNU_SOURCE
#include "sigbench.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

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

const char *sig_name(int sig)
{
	static char buf[16];

	for (size_t i = 0; i < sizeof(signal_names) / sizeof(signal_names[0]); i++)
		if (signal_names[i].sig == sig)
			return signal_names[i].name;
	snprintf(buf, sizeof(buf), "%d", sig);
	return buf;
}

int sig_number(const char *name)
{
	if (strncasecmp(name, "SIG", 3) == 0)
		name += 3;
	for (size_t i = 0; i < sizeof(signal_names) / sizeof(signal_names[0]); i++)
		if (strcasecmp(signal_names[i].name, name) == 0)
			return signal_names[i].sig;
	return -1;
}

/* ---- pid lists and /proc --------------------------------------------------- */

void pids_add(struct pids *p, pid_t pid)
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

int pids_find(const struct pids *p, pid_t pid)
{
	for (int i = 0; i < p->n; i++)
		if (p->v[i] == pid)
			return i;
	return -1;
}

static int pid_cmp(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return (x > y) - (x < y);
}

void pids_sort(struct pids *p)
{
	if (p->n > 1)
		qsort(p->v, (size_t)p->n, sizeof(*p->v), pid_cmp);
}

bool pids_has_sorted(const struct pids *p, pid_t pid)
{
	return p->n && bsearch(&pid, p->v, (size_t)p->n, sizeof(*p->v), pid_cmp);
}

void pids_insert_sorted(struct pids *p, pid_t pid)
{
	int i;

	pids_add(p, pid);
	for (i = p->n - 1; i > 0 && p->v[i - 1] > pid; i--)
		p->v[i] = p->v[i - 1];
	p->v[i] = pid;
}

void pids_copy(struct pids *dst, const struct pids *src)
{
	dst->n = 0;
	for (int i = 0; i < src->n; i++)
		pids_add(dst, src->v[i]);
}

int open_children(pid_t pid)
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
int read_children(int fd, struct pids *out)
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
int read_children_stable(int fd, struct pids *out)
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

bool pid_ready(const struct opts *o, pid_t pid)
{
	return ready_has(&o->ready, blocked_syscall(pid));
}

int count_fds(pid_t pid)
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

static struct exitrec *pw_find(struct procwatch *w, pid_t pid)
{
	for (int i = 0; i < w->nrec; i++)
		if (w->rec[i].pid == pid)
			return &w->rec[i];
	return NULL;
}

void pw_track(struct procwatch *w, pid_t pid)
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
int pw_open(struct procwatch *w, pid_t parent)
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
int pw_drain(struct procwatch *w)
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
void pw_report(const struct procwatch *w, const char *prefix, const struct pids *only)
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
