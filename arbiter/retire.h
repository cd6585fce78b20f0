/* Retiring listening sockets without resetting what the kernel has queued.
 *
 * The last close of a listening socket resets every connection in its accept queue,
 * connections whose handshake the kernel completed. Draining the queue and then
 * closing leaves a window in which new ones arrive and are reset. So a socket's
 * retirement has three steps, in this order: freeze it (listener_freeze: no new
 * connection enters the queue), stop the workers that serve it (each accepts what
 * is queued before closing its copy), and close the arbiter's copy. A connection
 * that arrives after the freeze is refused, which clients retry. */
#pragma once

struct arbiter;

/* A shutdown (TERM, INT, QUIT, a fatal error): freeze every listening socket the
 * arbiter holds and close its copies. Call before the workers are told to stop. */
void retire_all_listeners(struct arbiter *a);

/* A reload (a HUP, or the one a USR2 upgrade starts): freeze the sockets only the old
 * generation serves: the addresses the new configuration dropped (closed when the old
 * generation is gone, or thawed by a rollback) and the sockets an upgrade handed over
 * that the new image no longer binds (closed at once). Call before the last active
 * worker of the old generation gets TERM, and whenever none is left. */
void retire_old_listeners(struct arbiter *a);

/* A failed reload, before its generation is stopped: freeze the sockets only that
 * generation serves (the addresses it added). */
void retire_new_listeners(struct arbiter *a);

/* After a rollback: the restored sockets retire_old_listeners froze take connections
 * again (a unix one is bound anew, so listen_fds is refreshed). */
void retire_thaw_listeners(struct arbiter *a);
