/* The listening sockets. The arbiter opens them once and keeps them open for its whole
 * life, so restarting or replacing workers never closes the listen queue: a
 * connection that arrives while no worker is accepting waits in the backlog.
 *
 * Closing one is where connections get lost: when the last copy of a listening socket
 * (the arbiter's or any worker's) is closed, every connection in its accept queue is
 * reset, and those are connections whose handshake the kernel completed. So a socket
 * is frozen before the last worker that serves it is stopped: nothing new enters its
 * queue, the worker accepts what is there, and the last close finds it empty. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

struct listener {
	char *spec;	 /* as given: "127.0.0.1:8000", "[::1]:0", "unix:/run/app.sock" */
	char *address;	 /* as bound, with the real port when 0 was asked for */
	char *fdname;	 /* for LISTEN_FDNAMES: the address without ':' */
	char *unix_path; /* removed again when the arbiter exits */
	int fd;
	bool frozen;	/* listener_freeze()d: takes no new connection */
	bool activated; /* passed by systemd, which keeps a copy: never frozen (activation.h) */
};

/* Parse a --bind spec into a sockaddr (HOST:PORT, [V6]:PORT, unix:PATH). HOST may be a
 * name (resolved with getaddrinfo, first result). Returns 0 or -EINVAL with a
 * message in err that names the spec. Pure except for name resolution. */
int listener_parse(const char *spec, struct sockaddr_storage *ret_addr, socklen_t *ret_len,
		   char *err, size_t errlen);

/* Open, bind and listen. On failure returns a negative errno with err naming the address
 * and what to do: -EADDRINUSE means another process is listening there. */
/* What is at a unix socket path: 0 nothing, -EEXIST a file that is not a socket,
 * -EADDRINUSE a socket a server answers on, the (positive) errno of a connection that
 * failed (ECONNREFUSED: a file its server left behind), or -errno of the look. */
int listener_unix_probe(const struct sockaddr_un *un, socklen_t len);

int listener_open(struct listener *l, const char *spec, unsigned backlog, char *err, size_t errlen);

/* Close a listening socket inherited through an upgrade that is no longer wanted,
 * removing its unix socket path (spec: what it was bound for, for the record). */
void listener_close_inherited(int fd, const char *spec);
void listener_close(struct listener *l, bool unlink_path);

/* Freeze the accept queue of a listening socket: the kernel takes no new connection,
 * while the ones already queued can still be accepted. TCP: a socket filter drops
 * every SYN, so no new handshake completes (the client retries and, once the socket
 * is closed, is refused); unix: shutdown(SHUT_RD), which refuses a connect at once.
 * (shutdown(SHUT_RD) on a TCP listener would reset the queue: it is a close.) The
 * socket is shared, so this holds in every process that has a copy. Returns 0 or a
 * negative errno. */
int listener_freeze(int fd);
/* Whether this process may freeze a TCP listener: the filter tried on a scratch
 * socket. 0, or a negative errno (-EPERM: this kernel wants CAP_NET_ADMIN for it). */
int listener_freeze_allowed(void);

/* Undo listener_freeze on l (a rolled-back reload): TCP drops the filter; a unix
 * socket cannot take connections again, so a new one is bound at its path and
 * replaces l->fd (the old one goes when its last copy does). */
int listener_thaw(struct listener *l, unsigned backlog, char *err, size_t errlen);

/* Take over an already listening fd (inherited through an upgrade) for spec. */
int listener_adopt(struct listener *l, int fd, const char *spec);
