/* The built-in worker's listening sockets, shared by every worker (hence EPOLLEXCLUSIVE):
 * accepting in small batches and then going to the back of the line of waiting workers (so
 * connections spread over the workers), pausing when out of fds, taking the whole queue on
 * TERM, and closing a socket the arbiter retired. */
#include "builtin_internal.h"
#include "log.h"

#include <errno.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* Accepts per wake-up. Small, so that a burst of connections is shared: with a level-
 * triggered listener the worker that happens to be on a CPU finds the rest of the queue at
 * once and would take it all (with 64, one worker held 58-65 of wrk's 64 connections). */
#define ACCEPT_BATCH 4
/* On TERM the queue is emptied in batches of this many. */
#define DRAIN_BATCH 64
/* On TERM: at most this many connections are taken from a listener's queue. A frozen
 * queue holds at most the backlog (net.core.somaxconn caps it, 4096 by default); the
 * bound only matters for one the arbiter did not freeze, which other workers serve. */
#define DRAIN_ACCEPT_MAX 65536
/* Out of fds: how long to leave the listeners alone when no connection closes meanwhile. */
#define ACCEPT_RETRY_NS (1 * NSEC_PER_SEC)

static void listeners_pause(struct bw_worker *w)
{
	for (int i = 0; i < w->n_listeners; i++) {
		struct bw_listener *l = &w->listeners[i];

		if (l->in_epoll && epoll_ctl(w->epfd, EPOLL_CTL_DEL, l->src.fd, NULL) == 0)
			l->in_epoll = false;
	}
	w->listeners_paused = true;
	w->accept_resume_at = w->now + ACCEPT_RETRY_NS;
	bw_sweep_schedule(w, w->accept_resume_at);
}

void bw_listeners_resume(struct bw_worker *w)
{
	w->listeners_paused = false;
	for (int i = 0; i < w->n_listeners; i++) {
		struct bw_listener *l = &w->listeners[i];
		int r;

		if (l->src.fd < 0 || l->in_epoll)
			continue;
		r = bw_epoll_add(w, &l->src, EPOLLIN | EPOLLEXCLUSIVE);
		if (r < 0) {
			errno = -r;
			log_error("re-adding listening socket %d to epoll failed, ignoring: %m",
				  l->src.fd);
			continue;
		}
		l->in_epoll = true;
	}
}

/* What listener_accept left the listener's queue like. */
enum accept_result {
	ACCEPT_EMPTY,  /* nothing more queued */
	ACCEPT_MORE,   /* a full batch taken: more may be queued */
	ACCEPT_PAUSED, /* out of fds: every listener is out of epoll for a while */
	ACCEPT_BROKEN, /* an error of the socket itself: out of epoll for good */
	ACCEPT_SHUT,   /* frozen by the arbiter and empty: it takes nothing ever again */
};

/* The arbiter freezes a unix listener with shutdown(SHUT_RD) (arbiter/listeners.h): it
 * refuses new connections, stays readable for ever, and accept() finds nothing once the
 * queue is empty. poll() tells such a socket by POLLRDHUP; a TCP listener never has it
 * (frozen, it is simply never readable again once empty). */
static bool listener_is_shut(const struct bw_listener *l)
{
	struct pollfd p = {.fd = l->src.fd, .events = POLLRDHUP};

	return !l->tcp && poll(&p, 1, 0) == 1 && (p.revents & POLLRDHUP);
}

/* Accept up to max connections from l; *taken counts them. */
static enum accept_result listener_accept(struct bw_worker *w, struct bw_listener *l, int max,
					  int *taken)
{
	*taken = 0;
	for (int i = 0; i < max; i++) {
		int fd = accept4(l->src.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			bw_conn_accepted(w, l, fd);
			(*taken)++;
			continue;
		}
		switch (errno) {
		case EAGAIN:
			/* Woken with nothing to take: another worker was faster (one connection
			 * may wake several), or the socket was frozen and is empty. */
			return i == 0 && listener_is_shut(l) ? ACCEPT_SHUT : ACCEPT_EMPTY;
		case EINTR:
		case ECONNABORTED:
		/* accept(2): errors of the pending connection, to be treated like EAGAIN */
		case EPROTO:
		case ENETDOWN:
		case ENOPROTOOPT:
		case EHOSTDOWN:
		case ENONET:
		case EHOSTUNREACH:
		case EOPNOTSUPP:
		case ENETUNREACH:
			continue;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			/* The listener stays readable, so a level-triggered epoll would spin:
			 * take the listeners out until a connection closes or a second passes. */
			if (bw_error_log_allowed(w))
				log_error("accepting a connection failed, pausing accepts: %m");
			listeners_pause(w);
			return ACCEPT_PAUSED;
		default:
			log_error("accepting on socket %d failed, no longer accepting on it: %m",
				  l->src.fd);
			if (epoll_ctl(w->epfd, EPOLL_CTL_DEL, l->src.fd, NULL) == 0)
				l->in_epoll = false;
			return ACCEPT_BROKEN;
		}
	}
	return ACCEPT_MORE;
}

/* Close our copy of a listener for good. */
static void listener_drop(struct bw_worker *w, struct bw_listener *l)
{
	if (l->in_epoll)
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, l->src.fd, NULL);
	close(l->src.fd);
	l->src.fd = -1;
	l->in_epoll = false;
}

/* Take everything l has queued, then close it. When the last copy of a listener
 * closes, the kernel resets every connection still in its queue: connections whose
 * handshake it completed, which a client counts as lost. Before it sends TERM to the
 * last worker serving a socket, the arbiter freezes it (no new connection enters the
 * queue), so what this takes is all there is. Returns false when out of fds: l stays
 * open, and bw_listener_ready empties and closes it once accepting works again. */
bool bw_listener_drain(struct bw_worker *w, struct bw_listener *l)
{
	enum accept_result r;
	int batches = 1, taken;

	while ((r = listener_accept(w, l, DRAIN_BATCH, &taken)) == ACCEPT_MORE &&
	       batches < DRAIN_ACCEPT_MAX / DRAIN_BATCH)
		batches++;
	if (r == ACCEPT_PAUSED)
		return false;
	if (r == ACCEPT_MORE)
		log_warn("listening socket %d still has connections queued after %d were taken, "
			 "closing it",
			 l->src.fd, DRAIN_ACCEPT_MAX);
	listener_drop(w, l);
	return true;
}

/* Go to the back of the line of workers waiting on l. EPOLLEXCLUSIVE wakes the first worker
 * that waits, in the order they were added to the socket's wait queue, so without this the
 * worker added first gets nearly every wake-up it is idle for. Re-adding after each batch
 * puts it last: the next connection wakes a sibling that has waited longer. */
static void listener_requeue(struct bw_worker *w, struct bw_listener *l)
{
	int r;

	if (!l->in_epoll || epoll_ctl(w->epfd, EPOLL_CTL_DEL, l->src.fd, NULL) < 0)
		return;
	l->in_epoll = false;
	r = bw_epoll_add(w, &l->src, EPOLLIN | EPOLLEXCLUSIVE);
	if (r < 0) {
		errno = -r;
		if (bw_error_log_allowed(w))
			log_error("re-adding listening socket %d to epoll failed, pausing accepts: "
				  "%m",
				  l->src.fd);
		listeners_pause(w); /* bw_listeners_resume adds it back */
		return;
	}
	l->in_epoll = true;
}

void bw_listener_ready(struct bw_worker *w, struct bw_listener *l)
{
	int taken;
	enum accept_result r = listener_accept(w, l, ACCEPT_BATCH, &taken);

	if (taken > 0 && !w->draining && (r == ACCEPT_EMPTY || r == ACCEPT_MORE))
		listener_requeue(w, l);
	if (r == ACCEPT_SHUT) {
		log_info("listening socket %d no longer takes connections (sigvisor retired it), "
			 "closing it",
			 l->src.fd);
		listener_drop(w, l);
	} else if (r == ACCEPT_EMPTY && w->draining) {
		listener_drop(w, l); /* the rest of a drain that ran out of fds */
	}
}
