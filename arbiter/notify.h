/* sd_notify, both ways.
 *
 * Down: each worker gets a NOTIFY_SOCKET of its own, a unix datagram socket owned by
 * the arbiter: a file of mode 0600, owned by the worker's uid, in a directory of mode
 * 0711 (so no other local user can fill its queue and starve its watchdog pings), or,
 * where no directory is writable, a name in the abstract namespace. With SO_PASSCRED the kernel stamps each
 * datagram with its sender's pid (SCM_CREDENTIALS), so only that worker's READY=1,
 * STATUS= or WATCHDOG=1 is believed (systemd's NotifyAccess=main); anything else is
 * counted and dropped. One socket per worker also gives each worker its own queue:
 * a unix datagram queue holds only net.unix.max_dgram_qlen (10) messages, which a
 * pool sharing one socket would overflow with its pings.
 *
 * A worker's socket is in the event loop only while the worker is booting (READY=1
 * is worth waking for). Otherwise datagrams wait in its queue and are read when a
 * deadline fires or someone asks for status: WATCHDOG=1 pings then cost the arbiter
 * one wakeup per --timeout, not one per ping. Programs we did not write have their
 * sockets watched always (pool.h's notify_watch_always); the built-in worker beats in
 * shared memory instead of pinging (heartbeat.h), so its socket is watched too, and
 * a status reads no socket that is watched.
 *
 * Up: if sigvisor itself has a NOTIFY_SOCKET (systemd Type=notify), it reports
 * READY=1, RELOADING=1 and STOPPING=1 there. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "options.h"
#include "ratelimit.h"
#include "sdnotify.h"

struct notify {
	pid_t pid;	 /* the arbiter's, in the workers' socket names */
	unsigned cookie; /* random, in the workers' socket names */
	unsigned seq;	 /* the next worker socket's number */
	uint64_t received, rejected;
	struct ratelimit rejected_log; /* one line a second about rejected messages */
	struct sd_notifier upstream;   /* our own NOTIFY_SOCKET, if any */
	/* Our own supervisor's watchdog (systemd's WatchdogSec=: WATCHDOG_USEC, and
	 * WATCHDOG_PID if set naming us): WATCHDOG=1 upstream every half interval. */
	uint64_t upstream_watchdog_ms; /* the interval, 0: none */
	uint64_t upstream_ping_due_ms; /* the next ping */
	bool dir_chosen;
	char dir[96]; /* of the workers' sockets; "" for abstract names */
};

/* What one datagram says; status points into the datagram (not NUL-terminated). */
struct notify_msg {
	bool ready;
	bool watchdog;
	bool stopping;
	const char *status;
	size_t status_len;
	uint64_t extend_usec; /* EXTEND_TIMEOUT_USEC=, 0 if none */
};

/* Parse newline-separated sd_notify assignments (READY=1, STATUS=..., WATCHDOG=1,
 * STOPPING=1, EXTEND_TIMEOUT_USEC=...; others, BARRIER=1 among them, are ignored:
 * a barrier's fd is closed as the datagram is read). Pure: any bytes in, never reads past len. */
void notify_parse(const char *msg, size_t len, struct notify_msg *ret);

void notify_init(struct notify *n, pid_t pid);
void notify_close(struct notify *n);
/* After an upgrade: go on numbering where the old image left off. */
void notify_adopt(struct notify *n, unsigned cookie, unsigned seq);

/* A new socket for one worker whose processes run as uid/gid ((uid_t)-1: ours): the
 * fd, and "NOTIFY_SOCKET=/run/sigvisor/notify-PID-COOKIE/SEQ" for its environment. */
int notify_open_worker(struct notify *n, uid_t uid, gid_t gid, int *ret_fd, char *env,
		       size_t envlen);

/* Close a worker's socket and remove its file. */
void notify_close_worker(struct notify *n, int fd);

/* Whose socket is read: the worker's pid and slot (for the log), and who else may
 * speak for it (--notify-access). */
struct notify_sender {
	pid_t pid;
	unsigned id;
	enum notify_access access;
	uid_t uid; /* the uid the worker runs as */
};

/* One datagram read: believed (sent by from->pid, or with --notify-access all by a
 * process of its tree) or not (then only counted, and m is what it said). arrived_ms
 * is its arrival on the monotonic clock. Returns false to stop reading. */
typedef bool (*notify_fn)(void *ctx, const struct notify_msg *m, bool believed,
			  uint64_t arrived_ms);

/* Read every datagram waiting in a worker's socket fd into on_msg. */
void notify_read(struct notify *n, int fd, const struct notify_sender *from, notify_fn on_msg,
		 void *ctx);

/* When the rejected messages not logged one by one are to be summed up (0: none
 * are), and the summary line, at or past that time. */
uint64_t notify_rejected_deadline(const struct notify *n);
void notify_rejected_flush(struct notify *n, uint64_t now);

/* sd_notify to our own supervisor, if any; a message like "READY=1\nSTATUS=...". */
void notify_upstream(struct notify *n, const char *msg);

/* When the next WATCHDOG=1 to our supervisor is due (0: no watchdog), and send it if
 * it is due at now. Called from the arbiter's timer: a loop that hangs stops pinging,
 * which is what WatchdogSec= is there to catch. */
uint64_t notify_upstream_deadline(const struct notify *n);
void notify_upstream_tick(struct notify *n, uint64_t now);
