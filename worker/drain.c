/* TERM in the built-in worker, a drain: no longer accepting, the listeners' queues taken
 * and served (with Connection: close), idle and lingering connections given a short grace,
 * then the loop exits once the last connection is closed. */
#include "builtin_internal.h"
#include "log.h"

#include <sys/signalfd.h>

void bw_drain(struct bw_worker *w, const struct signalfd_siginfo *si)
{
	struct bw_conn *c, *next;
	size_t busy = 0;

	if (w->draining) {
		log_debug("SIGTERM from pid %u while already draining, nothing new to do",
			  si->ssi_pid);
		return;
	}
	log_info("SIGTERM from pid %u: no longer accepting, finishing %zu connections", si->ssi_pid,
		 w->n_conns);
	w->draining = true;
	bw_notify(w, "STOPPING=1");

	/* What is queued is served (with Connection: close), not reset. Out of fds, even
	 * a moment ago: try anyway, and what is left waits for a connection to close. */
	for (int i = 0; i < w->n_listeners; i++)
		if (w->listeners[i].src.fd >= 0 && !bw_listener_drain(w, &w->listeners[i]))
			break;

	/* Closing an idle keep-alive connection now would race the client's next
	 * request, which it may be sending this very moment (a load generator sends it
	 * right after reading a response): it would see the connection closed under a
	 * request and count a failure. Instead each idle connection gets a short grace:
	 * its next request is answered with "Connection: close"; if none comes, the sweep
	 * closes it. Two passes keep the list sorted by deadline: the idle ones go to the
	 * tail with the grace, then the busy ones (now at the front, still in order) with
	 * a deadline no earlier than that. */
	c = w->idle.head;
	for (size_t n = bw_count_list(&w->idle); n > 0 && c; n--, c = next) {
		next = c->next;
		if (bw_conn_is_idle(c))
			bw_list_append(w, c, BW_LIST_IDLE, DRAIN_GRACE_NS);
		else
			busy++;
	}
	for (; busy > 0 && (c = w->idle.head); busy--) {
		uint64_t left = c->deadline > w->now + DRAIN_GRACE_NS ? c->deadline - w->now
								      : DRAIN_GRACE_NS;

		bw_list_append(w, c, BW_LIST_IDLE, left);
	}

	/* A lingering connection waits for the client to close after our last
	 * response. A client that keeps it open (it only reads, or reads later)
	 * would hold the worker until the arbiter's SIGKILL: while draining it gets
	 * the same short grace. Clamping each deadline keeps the list sorted, and
	 * conn_finish appends later ones with the grace too. */
	for (c = w->linger.head; c; c = c->next)
		if (c->deadline > w->now + DRAIN_GRACE_NS)
			c->deadline = w->now + DRAIN_GRACE_NS;
	if (w->linger.head)
		bw_sweep_schedule(w, w->linger.head->deadline);
	bw_sweep_maybe_disarm(w);
}
