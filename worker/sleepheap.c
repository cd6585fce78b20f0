/* /sleep?ms=N in the built-in worker: the connection is parked, not blocked on. Parked
 * connections sit on a binary min-heap of deadlines behind one timerfd, armed for the
 * earliest; when it fires, every connection due is answered and resumes serving. */
#include "builtin_internal.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static void heap_set(struct bw_worker *w, size_t i, struct bw_conn *c)
{
	w->heap[i] = c;
	c->heap_index = i;
}

static void heap_up(struct bw_worker *w, size_t i)
{
	struct bw_conn *c = w->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (w->heap[parent]->sleep_deadline <= c->sleep_deadline)
			break;
		heap_set(w, i, w->heap[parent]);
		i = parent;
	}
	heap_set(w, i, c);
}

static void heap_down(struct bw_worker *w, size_t i)
{
	struct bw_conn *c = w->heap[i];

	for (;;) {
		size_t child = 2 * i + 1;

		if (child >= w->heap_len)
			break;
		if (child + 1 < w->heap_len &&
		    w->heap[child + 1]->sleep_deadline < w->heap[child]->sleep_deadline)
			child++;
		if (c->sleep_deadline <= w->heap[child]->sleep_deadline)
			break;
		heap_set(w, i, w->heap[child]);
		i = child;
	}
	heap_set(w, i, c);
}

static int heap_push(struct bw_worker *w, struct bw_conn *c)
{
	if (w->heap_len == w->heap_cap) {
		size_t cap = w->heap_cap ? 2 * w->heap_cap : 64;
		struct bw_conn **heap = realloc(w->heap, cap * sizeof(*heap));

		if (!heap)
			return -ENOMEM;
		w->heap = heap;
		w->heap_cap = cap;
	}
	heap_set(w, w->heap_len++, c);
	heap_up(w, w->heap_len - 1);
	return 0;
}

void bw_heap_remove(struct bw_worker *w, struct bw_conn *c)
{
	size_t i = c->heap_index;
	struct bw_conn *last = w->heap[--w->heap_len];

	if (i == w->heap_len)
		return;
	heap_set(w, i, last);
	heap_down(w, i);
	heap_up(w, last->heap_index);
}

void bw_sleep_timer_update(struct bw_worker *w)
{
	uint64_t at = w->heap_len ? w->heap[0]->sleep_deadline : 0;
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
	if (heap_push(w, c) < 0) {
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
	while (w->heap_len && w->heap[0]->sleep_deadline <= w->now) {
		struct bw_conn *c = w->heap[0];

		bw_heap_remove(w, c);
		c->parked = false;
		conn_respond_slept(w, c);
		bw_conn_touch(w, c);
		bw_conn_run(w, c);
	}
	bw_sleep_timer_update(w);
}
