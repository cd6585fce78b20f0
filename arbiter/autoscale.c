/* The pool sized by its listen queues (autoscale.h). */
#include "autoscale.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

typedef unsigned long long ull;

const char *autoscale_direction_name(enum autoscale_direction d)
{
	return d == AUTOSCALE_UP ? "up" : "down";
}

unsigned autoscale_bound(unsigned cur, unsigned min, unsigned max)
{
	return cur < min ? min : max && cur > max ? max : cur;
}

void autoscale_configure(struct autoscale *as, unsigned min, unsigned max, uint64_t up_ms,
			 uint64_t down_ms, bool ask_idle, uint64_t now)
{
	bool was_on = as->on;

	as->ask_idle = ask_idle;
	as->on = max > 0;
	as->min = min;
	as->max = max;
	as->up_ms = up_ms;
	as->down_ms = down_ms;
	if (!as->on) {
		autoscale_unwatch(as, now);
		as->next_ms = 0;
		as->busy_since_ms = as->idle_since_ms = 0;
		return;
	}
	/* Turned on (at start, or by a reload): the first look comes --scale-up-after from
	 * now, and finding nothing queued it watches the sockets. Already on: the next look
	 * stays where it was (none while watching), unless the new delays bring it in. */
	if (!was_on)
		as->next_ms = now + up_ms;
	else if (!as->n_watch && (!as->next_ms || as->next_ms > now + down_ms))
		as->next_ms = now + (as->busy_since_ms ? up_ms / 2 : down_ms);
}

void autoscale_unwatch(struct autoscale *as, uint64_t now)
{
	if (!as->n_watch)
		return;
	for (size_t i = 0; i < as->n_watch; i++)
		(void)loop_del(as->loop, &as->watch[i].src);
	as->n_watch = 0;
	if (as->on && !as->next_ms)
		as->next_ms = now + as->up_ms;
}

void autoscale_on_connection(struct autoscale *as, uint64_t now)
{
	as->woken++;
	autoscale_unwatch(as, now);
	/* A connection queued now: waiting from now on, if the look finds it still there. */
	as->busy_since_ms = now;
	as->idle_since_ms = 0;
	as->next_ms = now + as->up_ms;
}

/* At the minimum with nothing queued: watch every socket instead of looking on a timer.
 * False if the loop would not take them (then the timer it is, once per delay). */
static bool watch(struct autoscale *as, const struct listener_set *ls, size_t n)
{
	if (!as->loop || !n)
		return false;
	for (size_t i = 0; i < n; i++) {
		as->watch[i].src = (struct source){SOURCE_LISTEN_WATCH, ls->fds[i]};
		if (loop_add(as->loop, &as->watch[i].src, LOOP_IN) < 0) {
			as->n_watch = i;
			autoscale_unwatch(as, 0);
			return false;
		}
		as->n_watch = i + 1;
	}
	return true;
}

uint64_t autoscale_next_deadline(const struct autoscale *as)
{
	return as->on ? as->next_ms : 0;
}

/* How long the queues must stay empty for a down step (see the backoff in
 * autoscale.h). */
static uint64_t down_delay(const struct autoscale *as)
{
	return as->down_ms << as->backoff;
}

/* The next look: soon while connections wait, less often while the pool has workers to
 * give back. At the minimum with nothing waiting the sockets are watched instead
 * (watch()); once per --scale-down-after only when the loop would not take them. */
static uint64_t period(const struct autoscale *as, const struct pool *p)
{
	uint64_t fast = as->up_ms / 2 ? as->up_ms / 2 : 1, slow;

	if (as->busy_since_ms)
		return fast;
	if (p->target <= as->min)
		return as->down_ms;
	slow = as->down_ms / 4 < 1000 ? as->down_ms / 4 : 1000;
	return slow > fast ? slow : fast;
}

/* The built-in workers, asked whether they are idle: their last STATUS= is cleared, so
 * that only an answer to this question counts (answers() reads them). */
static void ask(struct pool *p)
{
	for (size_t i = 0; i < p->n; i++) {
		struct worker *w = p->workers[i];

		if (!worker_is_ready(w))
			continue;
		w->status[0] = '\0';
		(void)pool_send_worker(w, SIGWINCH);
	}
}

static void answers(struct pool *p, unsigned *ret_idle, unsigned *ret_ready)
{
	/* their answers wait in the notify sockets, which are read only when needed */
	pool_drain_all_notify(p);
	for (size_t i = 0; i < p->n; i++) {
		const struct worker *w = p->workers[i];

		if (!worker_is_ready(w))
			continue;
		(*ret_ready)++;
		if (strcmp(w->status, "idle") == 0)
			(*ret_idle)++;
	}
}

static void decide(struct autoscale *as, struct pool *p, enum autoscale_direction d,
		   const char *reason)
{
	unsigned before = p->target, after = d == AUTOSCALE_UP ? before + 1 : before - 1;

	as->decisions[d]++;
	log_fields(LOG_LEVEL_INFO,
		   LOG_FIELDS(LOG_STR("autoscale", autoscale_direction_name(d)),
			      LOG_INT("workers_before", before), LOG_INT("workers_after", after)),
		   "autoscale: %s: %u -> %u workers", reason, before, after);
	p->target = after;
	pool_reconcile(p);
}

void autoscale_tick(struct autoscale *as, struct pool *p, const struct listener_set *ls,
		    bool paused, uint64_t now)
{
	struct listen_queue q[LISTEN_QUEUE_MAX];
	size_t n = ls->n < LISTEN_QUEUE_MAX ? ls->n : LISTEN_QUEUE_MAX, longest = 0;
	uint32_t queued = 0;
	char reason[256];
	int r;

	if (!as->on || !as->next_ms || now < as->next_ms)
		return;
	autoscale_unwatch(as, now);
	as->looks++;
	r = listen_queue_read(ls->fds, n, q);
	if (r < 0) {
		if (!as->said_unreadable)
			log_warn("autoscale: cannot read the listen queues (sock_diag: %s): the "
				 "pool "
				 "stays at %u workers until they can be read",
				 strerror(-r), p->target);
		as->said_unreadable = true;
		as->busy_since_ms = as->idle_since_ms = 0;
		as->next_ms = now + as->down_ms;
		return;
	}
	as->said_unreadable = false;
	for (size_t i = 0; i < n; i++) {
		if (q[i].found && q[i].queued > queued) {
			queued = q[i].queued;
			longest = i;
		}
	}
	as->last_queued = queued;
	if (queued) {
		as->idle_since_ms = 0;
		if (!as->busy_since_ms)
			as->busy_since_ms = now;
	} else {
		as->busy_since_ms = 0;
		as->said_at_max = false;
		if (!as->idle_since_ms)
			as->idle_since_ms = now;
	}
	/* Moved by hand (TTIN, TTOU, `sigvisor workers`) or by a reload since the last look:
	 * the new size holds one full delay before load moves it. */
	if (p->target != as->last_target) {
		as->last_target = p->target;
		if (as->busy_since_ms)
			as->busy_since_ms = now;
		if (as->idle_since_ms)
			as->idle_since_ms = now;
	}
	if (paused || p->draining || p->target == 0) {
		/* a reload or an upgrade sizes the pool; WINCH stopped it */
	} else if (as->busy_since_ms && now - as->busy_since_ms >= as->up_ms) {
		double waited = (double)(now - as->busy_since_ms) / 1000.0;
		const char *addr = ls->l[longest].address ? ls->l[longest].address : "?";

		if (p->target >= as->max) {
			if (!as->said_at_max)
				log_info("autoscale: queue %u for %.1f s on %s: at the maximum of "
					 "%u workers",
					 (unsigned)queued, waited, addr, as->max);
			as->said_at_max = true;
		} else if (pool_count(p, worker_is_ready) >= p->target) {
			snprintf(reason, sizeof(reason), "queue %u for %.1f s on %s",
				 (unsigned)queued, waited, addr);
			if (as->last_down_ms && now - as->last_down_ms < down_delay(as) &&
			    as->backoff < AUTOSCALE_MAX_BACKOFF)
				as->backoff++;
			decide(as, p, AUTOSCALE_UP, reason);
			as->busy_since_ms = now;
		}
	} else if (as->idle_since_ms && p->target > as->min &&
		   now - as->idle_since_ms >= down_delay(as)) {
		int len = snprintf(reason, sizeof(reason), "queues empty for %.1f s",
				   (double)(now - as->idle_since_ms) / 1000.0);
		unsigned idle = 0, ready = 0;

		if (as->ask_idle && !as->asked_ms) {
			ask(p);
			as->asked_ms = now;
			as->last_target = p->target;
			as->next_ms = now + AUTOSCALE_ASK_MS;
			return;
		}
		if (as->ask_idle) {
			answers(p, &idle, &ready);
			as->asked_ms = 0;
			if (!idle) {
				log_info(
					"autoscale: %s, but none of %u workers is idle: keeping %u "
					"workers",
					reason, ready, p->target);
				as->idle_since_ms = now;
				as->last_target = p->target;
				as->next_ms = now + period(as, p);
				return;
			}
			snprintf(reason + len, sizeof(reason) - (size_t)len,
				 ", %u of %u workers idle", idle, ready);
		}
		decide(as, p, AUTOSCALE_DOWN, reason);
		as->idle_since_ms = as->last_down_ms = now;
		if (p->target <= as->min)
			as->backoff = 0; /* the load is gone: the next one starts afresh */
	}
	as->asked_ms = 0;
	as->last_target = p->target;
	as->next_ms = now + period(as, p);
	if (!as->busy_since_ms && p->target <= as->min && !paused && !p->draining &&
	    watch(as, ls, n))
		as->next_ms = 0;
}
