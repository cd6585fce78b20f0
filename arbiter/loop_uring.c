/* The io_uring backend of the loop (--loop io_uring), readiness-based like the epoll one.
 *
 * Every source has one IORING_OP_POLL_ADD in flight. Changes (add, mod, del, re-arming)
 * are only queued as SQEs and reach the kernel with the io_uring_enter() that waits, so
 * an idle arbiter sleeps in that one call and makes no other.
 *
 * Level-triggered, like epoll here: each poll is one-shot and is armed again once its
 * event has been handed out, with the next wait. Arming checks readiness at once, so a
 * source still ready (a request head read in part, EOF behind it) is reported again in
 * the next batch, as epoll_wait would. A multishot poll (IORING_POLL_ADD_MULTI) reports
 * wakeups, not levels: with it a handler that reads once per event (metrics.c) waited
 * forever for a half-closed client whose data and EOF came in one wakeup. Re-arming
 * costs one SQE per event and no system call.
 *
 * A completion's user_data is never the source but a registration record of ours
 * (struct reg). del and mod retire the record (src = NULL) and queue a cancel for its
 * poll; completions that arrive for a retired record, in this batch or a later one, are
 * dropped, and the record is freed only with its poll's last CQE. So after loop_del the
 * source's memory is never read again, and a record's address cannot be reused while a
 * cancel aimed at it is still unsubmitted.
 *
 * Unlike epoll, io_uring holds its own reference to a polled file: close() without
 * loop_del first leaves the poll armed, the peer of a socket sees no EOF, and a later
 * completion would name freed memory. Callers must loop_del before they close. */
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* SQ entries: room for a burst of spawns and exits between two waits. When it is full
 * the queued entries are submitted early, which costs a system call but loses nothing. */
#define RING_ENTRIES 256

struct reg {
	struct source *src;	 /* NULL once retired by del or mod: its CQEs are dropped */
	struct reg *prev, *next; /* every record not yet freed, for fini */
	int fd;
	uint32_t events; /* LOOP_IN | LOOP_OUT, as asked */
	bool armed;	 /* a POLL_ADD is queued or in the kernel: its CQE is to come */
	bool spent;	 /* retired and completed, kept until no queued SQE can name it */
	uint64_t batch;	 /* the wait call that last gave this record a slot in out[] */
	int slot;
};

struct uring {
	struct io_uring ring;
	struct reg **by_fd; /* the live record of each fd, for mod and del */
	int n_by_fd;
	struct reg *regs;
	unsigned n_spent;
	uint64_t batch;
};

static struct io_uring_sqe *get_sqe(struct uring *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (!sqe) {
		/* Full: hand what is queued to the kernel now, in order. */
		(void)io_uring_submit(&u->ring);
		sqe = io_uring_get_sqe(&u->ring);
	}
	return sqe;
}

static unsigned to_poll(uint32_t events)
{
	return (events & LOOP_IN ? POLLIN : 0u) | (events & LOOP_OUT ? POLLOUT : 0u);
}

static uint32_t from_poll(unsigned mask)
{
	return (mask & POLLIN ? LOOP_IN : 0u) | (mask & POLLOUT ? LOOP_OUT : 0u) |
	       (mask & (POLLERR | POLLHUP) ? LOOP_ERR : 0u);
}

static int arm(struct uring *u, struct reg *g)
{
	struct io_uring_sqe *sqe = get_sqe(u);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_add(sqe, g->fd, to_poll(g->events));
	io_uring_sqe_set_data(sqe, g);
	g->armed = true;
	return 0;
}

static void reg_free(struct uring *u, struct reg *g)
{
	if (g->prev)
		g->prev->next = g->next;
	else
		u->regs = g->next;
	if (g->next)
		g->next->prev = g->prev;
	free(g);
}

/* Stop delivering g's events; the record goes once the kernel is done with it. */
static void retire(struct uring *u, struct reg *g)
{
	struct io_uring_sqe *sqe;

	if (g->fd < u->n_by_fd && u->by_fd[g->fd] == g)
		u->by_fd[g->fd] = NULL;
	g->src = NULL;
	if (!g->armed) {
		reg_free(u, g);
		return;
	}
	sqe = get_sqe(u);
	if (!sqe) {
		/* Cannot happen short of a broken ring; the poll then lives until fini,
		 * still harmless: its completions are dropped. */
		log_warn("io_uring: cannot queue a poll cancel for fd %d, ignoring", g->fd);
		return;
	}
	/* IORING_OP_ASYNC_CANCEL, not POLL_REMOVE: when a wakeup's task work is pending
	 * (with DEFER_TASKRUN: whenever the source became ready since the last wait),
	 * POLL_REMOVE fails with EALREADY and leaves the poll armed, measured on 6.18;
	 * a cancel marks the poll and it ends with -ECANCELED. user_data 0: the cancel's
	 * own completion carries nothing for us. */
	io_uring_prep_cancel64(sqe, (__u64)(uintptr_t)g, 0);
	io_uring_sqe_set_data64(sqe, 0);
}

static struct reg *live_reg(struct uring *u, const struct source *s)
{
	struct reg *g = s->fd >= 0 && s->fd < u->n_by_fd ? u->by_fd[s->fd] : NULL;

	return g && g->src == s ? g : NULL;
}

static int uring_init(struct loop *l)
{
	/* Completions are run only when we ask for them, in io_uring_enter(): the
	 * arbiter's other system calls (clone3 above all) are never interrupted to run
	 * them. Older kernels lack these flags; they refuse them with EINVAL. */
	static const unsigned flag_sets[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	struct uring *u = calloc(1, sizeof(*u));
	int r = -EINVAL;

	if (!u)
		return -ENOMEM;
	for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
		r = io_uring_queue_init(RING_ENTRIES, &u->ring, flag_sets[i]);
		if (r != -EINVAL)
			break;
	}
	if (r < 0) {
		free(u);
		return r;
	}
	l->priv = u;
	l->fd = u->ring.ring_fd;
	return 0;
}

static void uring_fini(struct loop *l)
{
	struct uring *u = l->priv;

	if (!u)
		return;
	/* Tearing down the ring cancels every poll and drops its file references. */
	io_uring_queue_exit(&u->ring);
	while (u->regs)
		reg_free(u, u->regs);
	free(u->by_fd);
	free(u);
	l->priv = NULL;
	l->fd = -1;
}

static int grow_by_fd(struct uring *u, int fd)
{
	int n = u->n_by_fd ? u->n_by_fd : 64;
	struct reg **p;

	while (n <= fd)
		n *= 2;
	p = realloc(u->by_fd, (size_t)n * sizeof(*p));
	if (!p)
		return -ENOMEM;
	memset(p + u->n_by_fd, 0, (size_t)(n - u->n_by_fd) * sizeof(*p));
	u->by_fd = p;
	u->n_by_fd = n;
	return 0;
}

static int uring_add(struct loop *l, struct source *s, uint32_t events)
{
	struct uring *u = l->priv;
	struct reg *g;
	int r;

	if (s->fd < 0)
		return -EBADF;
	if (s->fd >= u->n_by_fd && (r = grow_by_fd(u, s->fd)) < 0)
		return r;
	if (u->by_fd[s->fd]) {
		if (u->by_fd[s->fd]->src == s)
			return -EEXIST;
		/* The fd number was closed without loop_del and reused: the old record
		 * must not hand out its (freed) source, and its poll holds a file. */
		log_warn("io_uring: fd %d was closed without loop_del, dropping its poll", s->fd);
		retire(u, u->by_fd[s->fd]);
	}
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->src = s;
	g->fd = s->fd;
	g->events = events;
	r = arm(u, g);
	if (r < 0) {
		free(g);
		return r;
	}
	g->next = u->regs;
	if (u->regs)
		u->regs->prev = g;
	u->regs = g;
	u->by_fd[s->fd] = g;
	return 0;
}

static int uring_del(struct loop *l, struct source *s)
{
	struct uring *u = l->priv;
	struct reg *g = live_reg(u, s);

	if (!g)
		return -ENOENT;
	retire(u, g);
	return 0;
}

/* Like EPOLL_CTL_MOD: a fresh poll with the new mask, so readiness is checked again
 * at once; the old poll's completions, even ones already in the CQ ring, are dropped. */
static int uring_mod(struct loop *l, struct source *s, uint32_t events)
{
	struct uring *u = l->priv;
	struct reg *g = live_reg(u, s);

	if (!g)
		return -ENOENT;
	retire(u, g);
	return uring_add(l, s, events);
}

/* A poll ended in an error while its source is still registered. */
static void on_poll_error(struct uring *u, struct reg *g, int res, struct loop_event *out, int *n)
{
	if (res == -EBADF) {
		/* Closed before the poll reached the kernel, without loop_del: the
		 * source may be gone already, so it must not be handed out. */
		log_warn("io_uring: fd %d was closed without loop_del, dropping it", g->fd);
		retire(u, g);
		return;
	}
	/* Nothing else is expected; epoll would have refused the fd at add time. Say so
	 * once and let the owner see an error event; the poll stays off until mod. */
	log_error("io_uring: polling fd %d failed, ignoring: %s", g->fd, strerror(-res));
	if (g->batch == u->batch) {
		out[g->slot].events |= LOOP_ERR;
		return;
	}
	out[*n].source = g->src;
	out[*n].events = LOOP_ERR;
	g->batch = u->batch;
	g->slot = (*n)++;
}

static void free_spent(struct uring *u)
{
	for (struct reg *g = u->regs, *next; g; g = next) {
		next = g->next;
		if (g->spent)
			reg_free(u, g);
	}
	u->n_spent = 0;
}

/* Enter the kernel once: submit what is queued and wait for a completion. */
static int enter(struct uring *u, int timeout_ms)
{
	struct __kernel_timespec ts;
	struct io_uring_cqe *cqe;
	int r;

	/* Completions left over from a full batch and nothing to submit: no need. */
	if (io_uring_cq_ready(&u->ring) && !io_uring_sq_ready(&u->ring))
		return 0;
	if (timeout_ms < 0) {
		r = io_uring_submit_and_wait(&u->ring, 1);
		return r < 0 ? r : 0;
	}
	ts.tv_sec = timeout_ms / 1000;
	ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
	r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
	return r == -ETIME ? 0 : r < 0 ? r : 0;
}

static int uring_wait(struct loop *l, struct loop_event *out, int max, int timeout_ms)
{
	struct uring *u = l->priv;
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	bool flushed;
	int n = 0, r;

	r = enter(u, timeout_ms);
	if (r < 0 && r != -EBUSY && r != -EAGAIN)
		return r;
	/* EBUSY/EAGAIN (old kernels, a full CQ ring): nothing was submitted, so the CQ
	 * ring must be reaped to make room, but a cancel still queued may name a record
	 * whose poll completes now: such records are freed only after a full submit. */
	flushed = !io_uring_sq_ready(&u->ring);
	if (flushed && u->n_spent)
		free_spent(u);
	u->batch++;
	/* Walk the CQ ring in place (io_uring_peek_cqe may enter the kernel again to
	 * flush or run task work: one enter per wakeup is the point of this backend). */
	io_uring_for_each_cqe(&u->ring, head, cqe)
	{
		struct reg *g = io_uring_cqe_get_data(cqe);
		int res = cqe->res;

		if (!g || cqe->user_data == LIBURING_UDATA_TIMEOUT) {
			seen++;
			continue;
		}
		/* A new source but no room left: its CQE waits for the next call. */
		if (g->src && g->batch != u->batch && n == max)
			break;
		seen++;
		/* One-shot: this was the poll's only CQE (a poll never completes twice). */
		g->armed = false;
		if (!g->src) {
			/* Retired: its completion is dropped, and the record goes with it. */
			if (flushed) {
				reg_free(u, g);
			} else {
				g->spent = true;
				u->n_spent++;
			}
			continue;
		}
		if (res < 0) {
			on_poll_error(u, g, res, out, &n);
			continue;
		}
		if (g->batch == u->batch) {
			/* Two completions for one source in one batch (its re-arm went in
			 * early, with a full SQ ring): one event. */
			out[g->slot].events |= from_poll((unsigned)res);
		} else {
			g->batch = u->batch;
			g->slot = n;
			out[n].source = g->src;
			out[n].events = from_poll((unsigned)res);
			n++;
		}
		/* Level-triggered: poll again, submitted with the next wait. If the
		 * handler deletes the source first, the cancel follows this SQE. */
		if (arm(u, g) < 0)
			log_error("io_uring: cannot poll fd %d again, ignoring", g->fd);
	}
	io_uring_cq_advance(&u->ring, seen);
	return n;
}

const struct loop_backend loop_backend_io_uring = {
	.name = "io_uring",
	.init = uring_init,
	.fini = uring_fini,
	.add = uring_add,
	.mod = uring_mod,
	.del = uring_del,
	.wait = uring_wait,
};

/* Whether a seccomp filter runs on us: "Seccomp: 2" in /proc/self/status. */
static bool seccomp_filtered(void)
{
	char line[128];
	bool filtered = false;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "Seccomp:", 8) == 0) {
			filtered = atoi(line + 8) == 2;
			break;
		}
	fclose(f);
	return filtered;
}

int loop_uring_probe(char *why, unsigned long whylen)
{
	struct io_uring ring;
	char disabled[8] = "";
	int r = io_uring_queue_init(2, &ring, 0), fd;

	if (r == 0) {
		io_uring_queue_exit(&ring);
		return 0;
	}
	if (r == -ENOSYS) {
		/* Docker's and podman's default seccomp profiles answer io_uring_setup with
		 * ENOSYS, the same errno as a kernel built without io_uring. */
		if (seccomp_filtered())
			snprintf(why, whylen,
				 "io_uring_setup is refused by a seccomp filter (ENOSYS, and "
				 "/proc/self/status says Seccomp: 2; the default profiles of "
				 "docker and podman block io_uring)");
		else
			snprintf(why, whylen,
				 "the kernel has no io_uring (ENOSYS: built without "
				 "CONFIG_IO_URING)");
		return r;
	}
	if (r != -EPERM) {
		snprintf(why, whylen, "io_uring_setup failed: %s", strerror(-r));
		return r;
	}
	fd = open("/proc/sys/kernel/io_uring_disabled", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t len = read(fd, disabled, sizeof(disabled) - 1);

		disabled[len > 0 ? len : 0] = '\0';
		close(fd);
	}
	if (disabled[0] == '2')
		snprintf(why, whylen, "io_uring is disabled by kernel.io_uring_disabled=2 (EPERM)");
	else if (disabled[0] == '1')
		snprintf(why, whylen,
			 "io_uring is limited by kernel.io_uring_disabled=1 to the group in "
			 "kernel.io_uring_group, and we are not in it (EPERM)");
	else if (seccomp_filtered())
		snprintf(why, whylen,
			 "io_uring_setup is refused by a seccomp filter (EPERM, and "
			 "/proc/self/status says Seccomp: 2)");
	else
		snprintf(why, whylen, "io_uring_setup failed: %s (kernel.io_uring_disabled is %s)",
			 strerror(-r), disabled[0] ? "0" : "not there");
	return r;
}
