/* The one sd_notify client: the built-in worker speaks it to the arbiter, the arbiter
 * to its own supervisor (systemd, or anything that sets NOTIFY_SOCKET). One
 * datagram a message, sent without blocking: a supervisor that does not read its
 * socket cannot stall us. */
#pragma once

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/un.h>

struct sd_notifier {
	int fd;	       /* -1 until the first send */
	socklen_t len; /* 0: no NOTIFY_SOCKET */
	struct sockaddr_un addr;
};

/* Take NOTIFY_SOCKET's value: "/path" or "@abstract". Returns 0 (also when path is
 * NULL or empty: then nothing is ever sent), or -EINVAL for anything else. */
int sd_notifier_init(struct sd_notifier *n, const char *path);

bool sd_notifier_enabled(const struct sd_notifier *n);

/* Send one message ("READY=1\nSTATUS=..."). Returns 0, or -errno (EAGAIN: the
 * receiver's queue is full; the caller decides whether to try again later). */
int sd_notifier_send(struct sd_notifier *n, const char *msg);

void sd_notifier_close(struct sd_notifier *n);
