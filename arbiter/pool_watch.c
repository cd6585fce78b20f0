/* What the pool watches each worker by: its sd_notify datagrams (READY=1, WATCHDOG=1,
 * EXTEND_TIMEOUT_USEC, STATUS=) read and acted on, and its deadlines run. Built on
 * pool.c's lifecycle and pool_slots.c's indexes (pool_internal.h); neither calls back
 * here. */
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "pool_internal.h"
#include "serving.h"
#include "timeutil.h"

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
		w->last_ping_ms = arrived_ms > w->last_ping_ms ? arrived_ms : w->last_ping_ms;
	}
	/* Only a serving worker has a watchdog deadline; a booting one has its ready
	 * deadline, a stopping one its kill deadline. It counts from the last ping's
	 * arrival, however late the datagram was read. A worker pinging every
	 * timeout/2 sends a ping exactly when last ping + timeout falls due: the
	 * grace lets that ping arrive before the deadline is read, so an idle
	 * arbiter wakes once per timeout rather than once per ping. */
	if ((m->watchdog || m->ready) && w->watchdog && w->state == WORKER_READY &&
	    p->cfg.timeout_ms && w->hb_slot < 0) /* else its heartbeat is watched */
		slots_set_deadline(p, w,
				   (w->last_ping_ms ? w->last_ping_ms : now_ms()) +
					   pool_watchdog_silent_ms(p));
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
	/* Ours never changes; asked once, not once per socket read (a status reads them
	 * all). */
	static uid_t euid = (uid_t)-1;
	struct notify_read_ctx c = {p, w};
	struct notify_sender from = {w->pid, w->id, p->cfg.notify_access, p->cfg.notify_uid};

	if (from.uid == (uid_t)-1) {
		if (euid == (uid_t)-1)
			euid = geteuid();
		from.uid = euid;
	}

	if (w->notify_src.fd >= 0 && worker_is_alive(w))
		notify_read(p->notify, w->notify_src.fd, &from, on_notify, &c);
}

void pool_drain_all_notify(struct pool *p)
{
	/* A watched socket is read as its datagrams come, and one that came before this
	 * was asked for is ahead of the asking in the loop's queue: only the unwatched
	 * (those pinging through sd_notify, notify.h) may hold something unread. */
	for (size_t i = 0; i < p->n; i++)
		if (!p->workers[i]->notify_watched)
			pool_drain_notify(p, p->workers[i]);
}

static void heartbeat_silent(void *ctx, void *owner, int slot, uint64_t last)
{
	struct pool *p = ctx;
	struct worker *w = owner;

	heartbeats_disarm(&p->hb, slot);
	/* Stopping (a TERM's drain, its own kill deadline), or gone: not ours to judge. */
	if (!w || w->state != WORKER_READY)
		return;
	w->last_ping_ms = last;
	log_warn("worker %u (pid %d) silent for %.1f s since its last heartbeat (--timeout): "
		 "aborting it",
		 w->id, w->pid, (double)(now_ms() - last) / 1000.0);
	(void)pool_apply(p, w, WEV_DEADLINE);
}

/* Every heartbeat slot, when the earliest could have gone silent (heartbeat.h). */
static void sweep_heartbeats(struct pool *p, uint64_t now)
{
	if (!p->hb_sweep_ms || p->hb_sweep_ms > now)
		return;
	if (!p->cfg.timeout_ms) { /* a reload turned --timeout off */
		p->hb_sweep_ms = 0;
		return;
	}
	p->hb_sweep_ms =
		heartbeats_sweep(&p->hb, now, pool_watchdog_silent_ms(p), heartbeat_silent, p);
}

/* While a reload's workers cannot even be started (a pids limit, no fds left), it ends
 * as when a started one is not ready in time: --ready-timeout after the first failed
 * start, the old generation kept. 0: no such deadline. */
static uint64_t trial_spawn_deadline(const struct pool *p)
{
	if (!p->trial || !p->spawn_failures || !p->cfg.ready_timeout_ms || p->draining)
		return 0;
	return p->spawn_failing_since_ms + p->cfg.ready_timeout_ms;
}

/* While the current generation is short of workers (the old generation of a reload
 * does not count, it is on its way out whatever happens): the retry of a failed start
 * or the next start after a boot failure, or the next look at the workers holding the
 * places to boot in (boot_gate.h). 0: none. */
static uint64_t spawn_deadline(struct pool *p)
{
	if (p->draining || pool_count_gen(p, worker_is_active, true) >= p->target)
		return 0;
	return earlier_deadline(p->respawn_at_ms, boot_gate_deadline(&p->boot));
}

void pool_run_deadlines(struct pool *p, uint64_t now)
{
	uint64_t give_up = trial_spawn_deadline(p);

	if (give_up && give_up <= now) {
		char why[160];

		snprintf(why, sizeof(why),
			 "the new generation's workers could not be started within %.1f s "
			 "(--ready-timeout): %s",
			 (double)p->cfg.ready_timeout_ms / 1000.0, strerror(p->spawn_error));
		p->spawn_failures = 0;
		p->hooks.trial_failed(p->hooks.ctx, why);
	}

	serving_run(p->serving, now); /* calls pool_serving() */
	sweep_heartbeats(p, now);
	if (p->reap_sweep_ms && p->reap_sweep_ms <= now)
		pool_reap_children(p);

	/* Earliest first, and only the workers whose time has come (pool_slots.c), and
	 * those due within half a --timeout: a worker pinging every timeout/2 has sent
	 * its next ping by then, and reading it now moves its deadline a timeout on,
	 * so an idle pool wakes about once per half timeout, not once per worker. */
	for (struct worker *w;
	     (w = slots_earliest(p)) && w->deadline_ms <= now + p->cfg.timeout_ms / 2;) {
		uint64_t due = w->deadline_ms;

		if (!worker_is_alive(w)) {
			slots_set_deadline(p, w, 0);
			continue;
		}
		/* Its WATCHDOG=1 or READY=1 may wait unread in its socket (notify.h): read
		 * it before judging. A ping moves the deadline on. */
		pool_drain_notify(p, w);
		if (due > now && w->deadline_ms == due)
			break; /* not due, and nothing read: wake at its time */
		if (w->deadline_ms && w->deadline_ms <= now && w->state == WORKER_READY &&
		    !w->watchdog) {
			/* on probe (pool_watch_for_pings), and no ping: no watchdog */
			slots_set_deadline(p, w, 0);
			continue;
		}
		if (w->deadline_ms && w->deadline_ms <= now && worker_is_alive(w)) {
			enum worker_state was = w->state;
			unsigned actions;

			slots_set_deadline(p, w, 0);
			if (was == WORKER_BOOTING)
				log_warn("worker %u (pid %d) not ready after %.1f s "
					 "(--ready-timeout)",
					 w->id, w->pid, (double)p->cfg.ready_timeout_ms / 1000.0);
			else if (was == WORKER_READY)
				log_warn("worker %u (pid %d) silent for %.1f s since its last "
					 "WATCHDOG=1 "
					 "(--timeout): aborting it",
					 w->id, w->pid, (double)p->cfg.timeout_ms / 1000.0);
			actions = pool_apply(p, w, WEV_DEADLINE);
			if (!(actions & WACT_BOOT_FAILED))
				continue;
			if (p->trial && w->generation == p->generation)
				p->hooks.trial_failed(
					p->hooks.ctx,
					"a worker of the new generation did not get ready");
			else
				pool_record_boot_failure(p, w, now);
		}
	}
}

uint64_t pool_next_deadline(struct pool *p)
{
	struct worker *first = slots_earliest(p);
	uint64_t next = first ? first->deadline_ms : 0;

	next = earlier_deadline(next, p->reap_sweep_ms);
	next = earlier_deadline(next, p->hb_sweep_ms);
	next = earlier_deadline(next, serving_next_deadline(p->serving));
	next = earlier_deadline(next, spawn_deadline(p));
	return earlier_deadline(next, trial_spawn_deadline(p));
}
