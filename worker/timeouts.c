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
void sweep_schedule(struct worker *w, uint64_t at)
{
	int r;

	if (w->sweep_armed && w->sweep_armed <= at)
		return;
	r = timer_set(w->sweep_timer.fd, at);
	if (r < 0) {
		errno = -r;
		log_warn("arming the idle timer failed, ignoring: %m");
		return;
	}
	w->sweep_armed = at;
}

void sweep_maybe_disarm(struct worker *w)
{
	if (!w->sweep_armed || w->idle.head || w->linger.head || w->listeners_paused)
		return;
	if (timer_set(w->sweep_timer.fd, 0) == 0)
		w->sweep_armed = 0;
}

static struct conn_list *conn_list_of(struct worker *w, enum conn_list_id id)
{
	return id == LIST_IDLE ? &w->idle : &w->linger;
}

void list_unlink(struct worker *w, struct conn *c)
{
	struct conn_list *l;

	if (c->list == LIST_NONE)
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
	c->list = LIST_NONE;
}

void list_append(struct worker *w, struct conn *c, enum conn_list_id id, uint64_t timeout)
{
	struct conn_list *l = conn_list_of(w, id);

	c->deadline = w->now + timeout;
	if (c->list == id && l->tail == c)
		return;
	list_unlink(w, c);
	c->prev = l->tail;
	c->next = NULL;
	if (l->tail)
		l->tail->next = c;
	else
		l->head = c;
	l->tail = c;
	c->list = id;
	sweep_schedule(w, c->deadline);
}

size_t count_list(const struct conn_list *l)
{
	size_t n = 0;

	for (const struct conn *c = l->head; c; c = c->next)
		n++;
	return n;
}

void conn_touch(struct worker *w, struct conn *c)
{
	if (!c->parked && !c->lingering)
		list_append(w, c, LIST_IDLE, IDLE_TIMEOUT_NS);
}

void sweep_timer_fired(struct worker *w)
{
	struct conn *c;
	uint64_t next = 0;

	timer_drain(w->sweep_timer.fd);
	w->sweep_armed = 0;
	while ((c = w->idle.head) && c->deadline <= w->now)
		conn_close(w, c);
	while ((c = w->linger.head) && c->deadline <= w->now)
		conn_close(w, c);
	if (w->listeners_paused && w->accept_resume_at <= w->now)
		listeners_resume(w);

	if (w->idle.head)
		next = w->idle.head->deadline;
	if (w->linger.head && (!next || w->linger.head->deadline < next))
		next = w->linger.head->deadline;
	if (w->listeners_paused && (!next || w->accept_resume_at < next))
		next = w->accept_resume_at;
	if (next)
		sweep_schedule(w, next);
}
