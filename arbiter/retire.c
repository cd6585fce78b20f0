/* Retiring listening sockets; see "retire.c" in arbiter.h for the order and why. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arbiter.h"
#include "log.h"

/* Said once at start when a socket filter is refused (retire_check_freeze): not again
 * at every stop. */
static bool freeze_denied;

static void warn_unfrozen(const char *address, int r)
{
	if (r == -EPERM && freeze_denied)
		return;
	log_warn("cannot stop new connections on %s, ignoring: %s; those arriving while it "
		 "closes may be reset",
		 address, strerror(-r));
}

void retire_check_freeze(struct arbiter *a, bool quiet)
{
	bool tcp = false;
	int r;

	for (size_t i = 0; i < a->listeners.n; i++)
		tcp |= !a->listeners.l[i].activated &&
		       strncmp(a->listeners.l[i].spec, "unix:", 5) != 0;
	if (!tcp || (r = listener_freeze_allowed()) == 0)
		return;
	freeze_denied = r == -EPERM;
	if (quiet)
		return;
	/* Why no other way: a zero listen backlog makes the kernel answer SYNs with SYN
	 * cookies and drop the handshake's last ACK when the queue is full, so the client
	 * believes it is connected and is reset later; shutdown(SHUT_RD) of a TCP
	 * listener is a close. doc/RUNBOOK.md says so. */
	log_warn("stopping without a reset needs CAP_NET_ADMIN here (%s for the socket filter "
		 "that drops new SYNs while a TCP listener closes): connections arriving while "
		 "one closes (TERM, a HUP or USR2 that removes a bind) may be reset; grant "
		 "NET_ADMIN (docker run --cap-add NET_ADMIN; Kubernetes "
		 "securityContext.capabilities.add: [NET_ADMIN]) to close without resets",
		 strerror(-r));
}

static void freeze(struct listener *l)
{
	int r;

	/* An activated socket's queue outlives us in systemd's copy, and waits there for
	 * the next start: a filter left on it would drop that start's connections. */
	if (l->fd < 0 || l->frozen || l->activated)
		return;
	l->frozen = true; /* tried once: a failure is logged, not retried on every pass */
	r = listener_freeze(l->fd);
	if (r < 0)
		warn_unfrozen(l->address, r);
}

/* Sockets an upgrade handed over that the new image does not bind: the adopted workers
 * of the old image may still serve them. No rollback can want them back. */
static void retire_adopted(struct arbiter *a)
{
	for (size_t k = 0; k < a->n_adopted; k++) {
		if (a->adopted[k].fd >= 0) {
			int r = listener_freeze(a->adopted[k].fd);

			if (r < 0)
				warn_unfrozen(a->adopted[k].spec, r);
			log_info("upgrade: %s is no longer bound: new connections are refused, the "
				 "old generation serves the queued ones",
				 a->adopted[k].spec);
			listener_close_inherited(a->adopted[k].fd, a->adopted[k].spec);
		}
		free(a->adopted[k].spec);
	}
	a->n_adopted = 0;
}

void retire_all_listeners(struct arbiter *a)
{
	for (size_t i = 0; i < a->listeners.n; i++)
		freeze(&a->listeners.l[i]);
	for (size_t i = 0; i < a->old.listeners.n; i++) /* a reload in progress */
		freeze(&a->old.listeners.l[i]);
	retire_adopted(a);
	/* Our copies go now, the workers' when they have taken what is queued: the last
	 * close finds an empty queue, and from then on a connection is refused at once
	 * (while the socket lives, a frozen TCP socket drops SYNs, retried in 1 s). */
	listener_set_close(&a->old.listeners, &a->listeners);
	listener_set_close(&a->listeners, NULL);
}

void retire_old_listeners(struct arbiter *a)
{
	if (!a->reloading)
		return;
	for (size_t i = 0; i < a->old.listeners.n; i++) {
		struct listener *l = &a->old.listeners.l[i];

		if (l->frozen || listener_set_has(&a->listeners, l->spec))
			continue;
		freeze(l);
		log_info("reload: %s is no longer bound: new connections are refused, the old "
			 "generation serves the queued ones",
			 l->address);
	}
	retire_adopted(a);
}

void retire_new_listeners(struct arbiter *a)
{
	for (size_t i = 0; i < a->listeners.n; i++)
		if (!listener_set_has(&a->old.listeners, a->listeners.l[i].spec))
			freeze(&a->listeners.l[i]);
}

void retire_thaw_listeners(struct arbiter *a)
{
	bool thawed = false;
	char err[512];

	for (size_t i = 0; i < a->listeners.n; i++) {
		struct listener *l = &a->listeners.l[i];

		if (!l->frozen)
			continue;
		if (listener_thaw(l, a->settings->backlog, err, sizeof(err)) < 0)
			log_error("reload rolled back, but %s takes no new connections: %s",
				  l->spec, err);
		else
			log_info("reload rolled back: %s takes connections again", l->address);
		thawed = true;
	}
	if (thawed && listener_set_refresh(&a->listeners) < 0)
		log_error("reload rolled back: out of memory for LISTEN_FDNAMES, ignoring");
}
