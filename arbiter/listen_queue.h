/* How many connections wait in a listening socket's accept queue, and its backlog, as the
 * kernel reports them through sock_diag (what `ss -lnt` shows as Recv-Q and Send-Q): for
 * TCP over IPv4 and IPv6 (inet_diag: idiag_rqueue, idiag_wqueue) and for unix stream
 * sockets (unix_diag's UDIAG_SHOW_RQLEN). Sockets are matched by inode, so a socket of
 * another process on the same port (SO_REUSEPORT) is never counted.
 *
 * A look is a few system calls (a netlink socket, one dump per address family, close)
 * and never waits: the kernel builds the answer while we ask. Low layer: it knows fds
 * and nothing of the arbiter. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct listen_queue {
	bool found;	  /* the kernel reported the socket (else the rest is 0) */
	uint32_t queued;  /* connections waiting to be accepted */
	uint32_t backlog; /* at most this many wait (listen()'s backlog, as the kernel caps it) */
};

/* At most this many sockets per look (as many as --bind may give). */
#define LISTEN_QUEUE_MAX 64

/* The queues of the n listening sockets fds into out[0..n). 0 (a socket the kernel did not
 * report has found false: not a listener, or of another netns), or -errno when sock_diag
 * cannot be asked at all, or n > LISTEN_QUEUE_MAX. */
int listen_queue_read(const int *fds, size_t n, struct listen_queue *out);
