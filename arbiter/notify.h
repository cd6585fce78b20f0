/* sd_notify, both ways.
 *
 * Down: NOTIFY_SOCKET for the workers is a unix datagram socket in the abstract
 * namespace owned by the arbiter. With SO_PASSCRED the kernel stamps each datagram with
 * its sender's pid (SCM_CREDENTIALS), so only a current worker's READY=1, STATUS= or
 * WATCHDOG=1 is believed; anything else is counted and dropped.
 *
 * The socket is in the event loop only while some worker is booting (READY=1 is worth
 * waking for). Otherwise datagrams wait in its buffer and are read when a deadline fires
 * or someone asks for status: WATCHDOG=1 pings from every worker then cost the arbiter
 * one wakeup per --timeout, not one per ping.
 *
 * Up: if sigvisor itself has a NOTIFY_SOCKET (systemd Type=notify), it reports
 * READY=1, RELOADING=1 and STOPPING=1 there. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "loop.h"

struct notify {
	struct source src; /* SOURCE_NOTIFY */
	char env[128];	   /* "NOTIFY_SOCKET=@..." for the workers' environment */
	bool in_loop;
	uint64_t received, rejected;
	int upstream_fd; /* our own NOTIFY_SOCKET, or -1 */
	struct sockaddr_un upstream;
	socklen_t upstream_len;
};

/* What one datagram says; status points into the datagram (not NUL-terminated). */
struct notify_msg {
	bool ready;
	bool watchdog;
	bool stopping;
	const char *status;
	size_t status_len;
};

/* Parse newline-separated sd_notify assignments (READY=1, STATUS=..., WATCHDOG=1,
 * STOPPING=1; others are ignored). Pure: any bytes in, never reads past len. */
void notify_parse(const char *msg, size_t len, struct notify_msg *ret);

struct arbiter;

int notify_open(struct notify *n, pid_t pid, char *err, size_t errlen);
void notify_close(struct notify *n);
/* Take over the workers' notify socket inherited through an upgrade (env is the
 * NOTIFY_SOCKET=... the running workers were given). */
void notify_adopt(struct notify *n, int fd, const char *env);

/* Read every waiting datagram and hand each believable one to pool_notify(). */
void notify_drain(struct arbiter *a);

/* Watch the socket only while want is true. */
void notify_watch(struct arbiter *a, bool want);

/* sd_notify to our own supervisor, if any; a message like "READY=1\nSTATUS=...". */
void notify_upstream(struct notify *n, const char *msg);
