/* sd_notify for workers and for sigvisor itself; see notify.h. */
#include "notify.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "arbiter.h"
#include "log.h"
#include "timeutil.h"

static void open_upstream(struct notify *n)
{
	const char *path = getenv("NOTIFY_SOCKET");
	size_t len;

	n->upstream_fd = -1;
	if (!path || (path[0] != '/' && path[0] != '@'))
		return;
	len = strlen(path);
	if (len >= sizeof(n->upstream.sun_path))
		return;
	memset(&n->upstream, 0, sizeof(n->upstream));
	n->upstream.sun_family = AF_UNIX;
	memcpy(n->upstream.sun_path, path, len);
	if (path[0] == '@')
		n->upstream.sun_path[0] = '\0';
	n->upstream_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
				      (path[0] == '/' ? 1 : 0));
	n->upstream_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
}

void notify_init(struct notify *n, pid_t pid)
{
	memset(n, 0, sizeof(*n));
	n->pid = pid;
	/* The random part keeps another sigvisor with the same pid (in another PID
	 * namespace sharing our network namespace) from colliding. */
	(void)!getrandom(&n->cookie, sizeof(n->cookie), GRND_NONBLOCK);
	open_upstream(n);
}

int notify_open_worker(struct notify *n, int *ret_fd, char *env, size_t envlen)
{
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	int fd, one = 1, len, r;

	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* Abstract: no file to clean up, and reachable by a worker that dropped its
	 * privileges. A sequence number makes each worker's name its own. */
	len = snprintf(un.sun_path + 1, sizeof(un.sun_path) - 1, "sigvisor/%d/%08x/%u", (int)n->pid,
		       n->cookie, n->seq++);
	/* SO_PASSCRED: the sender's pid on each datagram. SO_TIMESTAMPNS: a ping read
	 * late still counts from when it arrived. */
	if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&un,
		 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len)) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	snprintf(env, envlen, "NOTIFY_SOCKET=@%s", un.sun_path + 1);
	*ret_fd = fd;
	return 0;
}

void notify_adopt(struct notify *n, unsigned cookie, unsigned seq)
{
	n->cookie = cookie;
	n->seq = seq;
}

void notify_close(struct notify *n)
{
	if (n->upstream_fd >= 0)
		close(n->upstream_fd);
	n->upstream_fd = -1;
}

static bool line_is(const char *line, size_t len, const char *what)
{
	return len == strlen(what) && memcmp(line, what, len) == 0;
}

void notify_parse(const char *msg, size_t len, struct notify_msg *ret)
{
	memset(ret, 0, sizeof(*ret));
	for (size_t i = 0; i < len;) {
		const char *line = msg + i, *nl = memchr(line, '\n', len - i);
		size_t n = nl ? (size_t)(nl - line) : len - i;

		if (line_is(line, n, "READY=1"))
			ret->ready = true;
		else if (line_is(line, n, "WATCHDOG=1"))
			ret->watchdog = true;
		else if (line_is(line, n, "STOPPING=1"))
			ret->stopping = true;
		else if (n >= 7 && memcmp(line, "STATUS=", 7) == 0) {
			ret->status = line + 7;
			ret->status_len = n - 7;
			/* a status is for a terminal: no control bytes (NUL, escapes) */
			for (size_t k = 0; k < ret->status_len; k++)
				if ((unsigned char)ret->status[k] < 0x20) {
					ret->status_len = k;
					break;
				}
		}
		i += n + 1;
	}
}

void notify_watch(struct arbiter *a)
{
	struct pool *p = &a->pool;

	for (size_t i = 0; i < p->n; i++) {
		struct worker *w = p->workers[i];
		bool want = w->state == WORKER_BOOTING && w->notify_src.fd >= 0;
		int r;

		if (want == w->notify_watched)
			continue;
		r = want ? loop_add(&a->loop, &w->notify_src, LOOP_IN)
			 : loop_del(&a->loop, &w->notify_src);
		if (r < 0)
			log_warn("cannot %s worker %u's notify socket, ignoring: %s",
				 want ? "watch" : "unwatch", w->id, strerror(-r));
		else
			w->notify_watched = want;
	}
}

/* The kernel stamps a datagram with CLOCK_REALTIME; deadlines are CLOCK_MONOTONIC. */
static uint64_t arrival_ms(const struct timespec *real)
{
	struct timespec now;
	int64_t age_ms;
	uint64_t mono = now_ms();

	clock_gettime(CLOCK_REALTIME, &now);
	age_ms = (int64_t)(now.tv_sec - real->tv_sec) * 1000 +
		 (now.tv_nsec - real->tv_nsec) / 1000000;
	if (age_ms < 0)
		age_ms = 0; /* the wall clock stepped back: call it now */
	return (uint64_t)age_ms < mono ? mono - (uint64_t)age_ms : mono;
}

void notify_drain_worker(struct arbiter *a, struct worker *w)
{
	struct notify *n = &a->notify;

	while (w->notify_src.fd >= 0 && worker_is_alive(w)) {
		char buf[4096];
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(struct ucred)) +
				 CMSG_SPACE(sizeof(struct timespec)) +
				 CMSG_SPACE(16 * sizeof(int))];
		} control;
		uint64_t arrived = 0;
		struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf) - 1};
		struct msghdr msg = {
			.msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = &control,
			.msg_controllen = sizeof(control),
		};
		struct ucred *cred = NULL;
		ssize_t len = recvmsg(w->notify_src.fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (len < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_warn("worker %u's notify socket, ignoring: %m", w->id);
			return;
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
			    c->cmsg_len == CMSG_LEN(sizeof(struct ucred)))
				cred = (struct ucred *)CMSG_DATA(c);
			else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS &&
				 c->cmsg_len == CMSG_LEN(sizeof(struct timespec)))
				arrived = arrival_ms((struct timespec *)CMSG_DATA(c));
			else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
				/* fd passing (FDSTORE) is not supported: close what came */
				for (int *fd = (int *)CMSG_DATA(c);
				     (char *)(fd + 1) <= (char *)c + c->cmsg_len; fd++)
					close(*fd);
		}
		n->received++;
		/* Only the worker itself is believed (systemd's NotifyAccess=main): not
		 * its children, not another process that found the address. */
		if (!cred || cred->pid != w->pid || (msg.msg_flags & MSG_TRUNC)) {
			n->rejected++;
			log_warn("notify socket of worker %u: dropped a message from pid %d: not "
				 "that worker",
				 w->id, cred ? (int)cred->pid : 0);
			continue;
		}
		pool_notify(a, w, buf, (size_t)len, arrived ? arrived : now_ms());
	}
}

void notify_drain(struct arbiter *a)
{
	for (size_t i = 0; i < a->pool.n; i++)
		notify_drain_worker(a, a->pool.workers[i]);
}

void notify_upstream(struct notify *n, const char *msg)
{
	if (n->upstream_fd < 0)
		return;
	if (sendto(n->upstream_fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&n->upstream,
		   n->upstream_len) < 0)
		log_warn("sd_notify to our supervisor failed, ignoring: %m");
}
