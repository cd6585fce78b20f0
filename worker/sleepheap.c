/* /sleep?ms=N in the built-in worker: the connection is parked, not blocked on. Parked
 * connections sit on a min-heap of deadlines (shared/heap.h) behind one timerfd, armed
 * for the earliest; when it fires, every connection due is answered and resumes serving. */
#include "builtin_internal.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

void bw_heap_remove(struct bw_worker *w, struct bw_conn *c)
{
	heap_remove(&w->sleeping, c);
}

void bw_sleep_timer_update(struct bw_worker *w)
{
	struct bw_conn *first = heap_top(&w->sleeping);
	uint64_t at = first ? first->sleep_deadline : 0;
	int r;

	if (at == w->sleep_armed)
		return;
	r = bw_timer_set(w->sleep_timer.fd, at);
	if (r < 0) {
		errno = -r;
		log_error("arming the sleep timer failed, ignoring: %m");
		return;
	}
	w->sleep_armed = at;
}

static void conn_respond_slept(struct bw_worker *w, struct bw_conn *c)
{
	char body[32];
	int n = snprintf(body, sizeof(body), "slept %u ms\n", c->sleep_ms);

	bw_conn_respond(w, c, 200, c->sleep_head, c->sleep_keep_alive, body, (size_t)n, "");
}

void bw_conn_park(struct bw_worker *w, struct bw_conn *c, unsigned int ms, bool head_only,
		  bool keep_alive)
{
	c->sleep_ms = ms;
	c->sleep_head = head_only;
	c->sleep_keep_alive = keep_alive;
	c->sleep_deadline = w->now + ms * NSEC_PER_MSEC;
	if (ms == 0) {
		conn_respond_slept(w, c);
		return;
	}
	if (heap_insert(&w->sleeping, c) < 0) {
		bw_conn_respond_text(w, c, 500, head_only, false, "out of memory\n");
		return;
	}
	c->parked = true;
	bw_list_unlink(w, c);
	bw_sweep_maybe_disarm(w);
	bw_sleep_timer_update(w);
}

void bw_sleep_timer_fired(struct bw_worker *w)
{
	bw_timer_drain(w->sleep_timer.fd);
	w->sleep_armed = 0;
	for (struct bw_conn *c; (c = heap_top(&w->sleeping)) && c->sleep_deadline <= w->now;) {
		heap_remove(&w->sleeping, c);
		c->parked = false;
		conn_respond_slept(w, c);
		bw_conn_touch(w, c);
		bw_conn_run(w, c);
	}
	bw_sleep_timer_update(w);
}
