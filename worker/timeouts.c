/* Timeouts of the built-in worker: the idle and linger lists behind the sweep timer, which
 * also wakes the worker to resume accepting after it ran out of fds. */
#include "builtin_internal.h"
#include "log.h"

#include <errno.h>

/* Idle keep-alive connections are closed after IDLE_TIMEOUT_NS without input or output
 * progress, lingering ones after LINGER_TIMEOUT_NS. Each list has a fixed timeout, so
 * appending at the tail keeps it sorted and the head is the next to expire. The sweep timer
 * is armed for the earliest head but never moved later on activity (that would cost a
 * syscall per request): when it fires early it simply re-arms. It is disarmed when both
 * lists are empty, so a worker without connections gets no wakeups. */
void bw_sweep_schedule(struct bw_worker *w, uint64_t at)
{
	int r;

	if (w->sweep_armed && w->sweep_armed <= at)
		return;
	r = bw_timer_set(w->sweep_timer.fd, at);
	if (r < 0) {
		errno = -r;
		log_warn("arming the idle timer failed, ignoring: %m");
		return;
	}
	w->sweep_armed = at;
}

void bw_sweep_maybe_disarm(struct bw_worker *w)
{
	if (!w->sweep_armed || w->idle.head || w->linger.head || w->listeners_paused)
		return;
	if (bw_timer_set(w->sweep_timer.fd, 0) == 0)
		w->sweep_armed = 0;
}

static struct bw_conn_list *conn_list_of(struct bw_worker *w, enum bw_list_id id)
{
	return id == BW_LIST_IDLE ? &w->idle : &w->linger;
}

void bw_list_unlink(struct bw_worker *w, struct bw_conn *c)
{
	struct bw_conn_list *l;

	if (c->list == BW_LIST_NONE)
		return;
	l = conn_list_of(w, c->list);
	if (c->prev)
		c->prev->next = c->next;
	else
		l->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		l->tail = c->prev;
	c->prev = c->next = NULL;
	c->list = BW_LIST_NONE;
}

void bw_list_append(struct bw_worker *w, struct bw_conn *c, enum bw_list_id id, uint64_t timeout)
{
	struct bw_conn_list *l = conn_list_of(w, id);

	c->deadline = w->now + timeout;
	if (c->list == id && l->tail == c)
		return;
	bw_list_unlink(w, c);
	c->prev = l->tail;
	c->next = NULL;
	if (l->tail)
		l->tail->next = c;
	else
		l->head = c;
	l->tail = c;
	c->list = id;
	bw_sweep_schedule(w, c->deadline);
}

size_t bw_count_list(const struct bw_conn_list *l)
{
	size_t n = 0;

	for (const struct bw_conn *c = l->head; c; c = c->next)
		n++;
	return n;
}

void bw_conn_touch(struct bw_worker *w, struct bw_conn *c)
{
	if (!c->parked && !c->lingering)
		bw_list_append(w, c, BW_LIST_IDLE, IDLE_TIMEOUT_NS);
}

void bw_sweep_timer_fired(struct bw_worker *w)
{
	struct bw_conn *c;
	uint64_t next = 0;

	bw_timer_drain(w->sweep_timer.fd);
	w->sweep_armed = 0;
	while ((c = w->idle.head) && c->deadline <= w->now)
		bw_conn_close(w, c);
	while ((c = w->linger.head) && c->deadline <= w->now)
		bw_conn_close(w, c);
	if (w->listeners_paused && w->accept_resume_at <= w->now)
		bw_listeners_resume(w);

	if (w->idle.head)
		next = w->idle.head->deadline;
	if (w->linger.head && (!next || w->linger.head->deadline < next))
		next = w->linger.head->deadline;
	if (w->listeners_paused && (!next || w->accept_resume_at < next))
		next = w->accept_resume_at;
	if (next)
		bw_sweep_schedule(w, next);
}
