/* The pool's side of sd_notify (pool.h): a worker's datagrams read and acted on, and
 * which workers' sockets the loop watches. Split from pool.c, whose lifecycle it calls
 * through pool_internal.h. */
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "pool_internal.h"
#include "serving.h"
#include "timeutil.h"

/* 1/32 of the timeout, at most 100 ms: far above a timer's jitter, far below
 * anything a user would notice in --timeout. */
static uint64_t watchdog_grace_ms(uint64_t timeout_ms)
{
	return timeout_ms / 32 < 100 ? timeout_ms / 32 : 100;
}

void pool_notify(struct pool *p, struct worker *w, const struct notify_msg *m, uint64_t arrived_ms)
{
	if (m->status)
		snprintf(w->status, sizeof(w->status), "%.*s", (int)m->status_len, m->status);
	else if (m->stopping)
		snprintf(w->status, sizeof(w->status), "stopping");
	if (m->ready) {
		serving_forget(p->serving, w->pid);
		if (w->state == WORKER_BOOTING)
			log_info("worker %u (pid %d, generation %u) ready after %.3f s", w->id,
				 w->pid, w->generation,
				 (double)(now_ms() - w->started_ms) / 1000.0);
		pool_apply(p, w, WEV_READY);
		pool_watch_for_pings(p, w);
	}
	/* systemd's EXTEND_TIMEOUT_USEC: a slow start asks for more time, counted from
	 * now; the ready deadline only ever moves later. */
	if (m->extend_usec && w->state == WORKER_BOOTING && w->deadline_ms) {
		uint64_t until = now_ms() + m->extend_usec / 1000;

		if (until > w->deadline_ms) {
			slots_set_deadline(p, w, until);
			log_info("worker %u (pid %d) asked for %.3f s more to get ready", w->id,
				 w->pid, (double)m->extend_usec / 1e6);
		}
	}
	if (m->watchdog) {
		w->watchdog = true;
		w->watchdog_probe = false;
		w->last_ping_ms = arrived_ms > w->last_ping_ms ? arrived_ms : w->last_ping_ms;
	}
	/* Only a serving worker has a watchdog deadline; a booting one has its ready
	 * deadline, a stopping one its kill deadline. It counts from the last ping's
	 * arrival, however late the datagram was read. A worker pinging every
	 * timeout/2 sends a ping exactly when last ping + timeout falls due: the
	 * grace lets that ping arrive before the deadline is read, so an idle
	 * arbiter wakes once per timeout rather than once per ping. */
	if ((m->watchdog || m->ready) && w->watchdog && w->state == WORKER_READY &&
	    p->cfg.timeout_ms)
		slots_set_deadline(p, w,
				   (w->last_ping_ms ? w->last_ping_ms : now_ms()) +
					   p->cfg.timeout_ms +
					   watchdog_grace_ms(p->cfg.timeout_ms));
}

struct notify_read_ctx {
	struct pool *p;
	struct worker *w;
};

static bool on_notify(void *ctx, const struct notify_msg *m, bool believed, uint64_t arrived_ms)
{
	struct notify_read_ctx *c = ctx;

	/* After READY=1 the socket stays watched for what comes next: a BARRIER=1
	 * (its fd closed as it was read) or the first WATCHDOG=1 ends that. */
	c->w->notify_linger_ms = m->ready ? now_ms() + NOTIFY_LINGER_MS : 0;
	pool_mark_watch(c->p, c->w);
	if (believed)
		pool_notify(c->p, c->w, m, arrived_ms);
	return worker_is_alive(c->w);
}

void pool_drain_notify(struct pool *p, struct worker *w)
{
	struct notify_read_ctx c = {p, w};
	struct notify_sender from = {w->pid, w->id, p->cfg.notify_access,
				     p->cfg.notify_uid == (uid_t)-1 ? geteuid()
								    : p->cfg.notify_uid};

	if (w->notify_src.fd >= 0 && worker_is_alive(w))
		notify_read(p->notify, w->notify_src.fd, &from, on_notify, &c);
}

void pool_drain_all_notify(struct pool *p)
{
	for (size_t i = 0; i < p->n; i++)
		pool_drain_notify(p, p->workers[i]);
}

/* The worker's socket may need (un)watching: looked at by the next pool_watch_notify. */
void pool_mark_watch(struct pool *p, struct worker *w)
{
	if (w->watch_dirty)
		return;
	if (p->n_dirty == p->dirty_cap) {
		size_t cap = p->dirty_cap ? p->dirty_cap * 2 : 64;
		struct worker **d = realloc(p->watch_dirty, cap * sizeof(*d));

		if (!d)
			return; /* stays as it is: its messages are read at its deadline */
		p->watch_dirty = d;
		p->dirty_cap = cap;
	}
	p->watch_dirty[p->n_dirty++] = w;
	w->watch_dirty = true;
}

void pool_watch_notify(struct pool *p)
{
	uint64_t now = now_ms();
	size_t k = 0;

	/* Only the workers marked since (mark_watch): no pass over all of them per loop
	 * iteration. One lingering after its READY=1 stays marked until that ends. */
	for (size_t i = 0; i < p->n_dirty; i++) {
		struct worker *w = p->watch_dirty[i];
		bool lingering = now < w->notify_linger_ms && w->notify_src.fd >= 0;
		bool want =
			(w->state == WORKER_BOOTING || p->cfg.notify_watch_always || lingering) &&
			w->notify_src.fd >= 0;
		int r;

		p->slots.steps++;
		if (lingering)
			p->watch_dirty[k++] = w;
		else
			w->watch_dirty = false;
		if (want == w->notify_watched)
			continue;
		r = want ? loop_add(p->loop, &w->notify_src, LOOP_IN)
			 : loop_del(p->loop, &w->notify_src);
		if (r < 0)
			log_warn("cannot %s worker %u's notify socket, ignoring: %s",
				 want ? "watch" : "unwatch", w->id, strerror(-r));
		else
			w->notify_watched = want;
	}
	p->n_dirty = k;
}
