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

/* Enough for two pings per worker per drain at hundreds of workers; only root may go
 * past rmem_max (SO_RCVBUFFORCE), otherwise the kernel's default is what we get. */
#define NOTIFY_RCVBUF (4 << 20)

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

int notify_open(struct notify *n, pid_t pid, char *err, size_t errlen)
{
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	unsigned rnd = 0;
	int fd, one = 1, size = NOTIFY_RCVBUF, len;

	memset(n, 0, sizeof(*n));
	n->src.type = SOURCE_NOTIFY;
	open_upstream(n);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "notify socket: %s", strerror(errno));
		return -errno;
	}
	/* Abstract: no file to clean up, and reachable by workers that dropped privileges.
	 * The random part keeps another sigvisor with the same pid (in another PID
	 * namespace sharing our network namespace) from colliding. */
	(void)!getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK);
	len = snprintf(un.sun_path + 1, sizeof(un.sun_path) - 1, "sigvisor/%d/%08x/notify",
		       (int)pid, rnd);
	/* SO_TIMESTAMPNS: a ping read late still counts from when it arrived. */
	if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&un,
		 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len)) < 0) {
		snprintf(err, errlen, "notify socket: %s", strerror(errno));
		close(fd);
		return -errno;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	snprintf(n->env, sizeof(n->env), "NOTIFY_SOCKET=@%s", un.sun_path + 1);
	n->src.fd = fd;
	return 0;
}

void notify_adopt(struct notify *n, int fd, const char *env)
{
	memset(n, 0, sizeof(*n));
	n->src.type = SOURCE_NOTIFY;
	n->src.fd = fd;
	snprintf(n->env, sizeof(n->env), "%s", env);
	open_upstream(n);
	/* an older image may not have asked for timestamps */
	(void)setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &(int){1}, sizeof(int));
}

void notify_close(struct notify *n)
{
	if (n->src.fd > 0)
		close(n->src.fd);
	if (n->upstream_fd >= 0)
		close(n->upstream_fd);
	n->src.fd = -1;
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

void notify_watch(struct arbiter *a, bool want)
{
	struct notify *n = &a->notify;
	int r;

	if (want == n->in_loop || n->src.fd < 0)
		return;
	r = want ? loop_add(&a->loop, &n->src, LOOP_IN) : loop_del(&a->loop, &n->src);
	if (r < 0)
		log_warn("cannot %s the notify socket, ignoring: %s", want ? "watch" : "unwatch",
			 strerror(-r));
	else
		n->in_loop = want;
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

void notify_drain(struct arbiter *a)
{
	struct notify *n = &a->notify;

	for (;;) {
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
		ssize_t len = recvmsg(n->src.fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (len < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_warn("notify socket, ignoring: %m");
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
		if (!cred || (msg.msg_flags & MSG_TRUNC) ||
		    !pool_notify(a, cred->pid, buf, (size_t)len, arrived ? arrived : now_ms())) {
			n->rejected++;
			/* A worker's last words (STOPPING=1) are often read after it was
			 * reaped: only a live sender that is not a worker is suspicious. */
			log_msg(cred && kill(cred->pid, 0) < 0 && errno == ESRCH ? LOG_LEVEL_DEBUG
										 : LOG_LEVEL_WARN,
				"notify socket: dropped a message from pid %d: not a current "
				"worker",
				cred ? (int)cred->pid : 0);
		}
	}
}

void notify_upstream(struct notify *n, const char *msg)
{
	if (n->upstream_fd < 0)
		return;
	if (sendto(n->upstream_fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&n->upstream,
		   n->upstream_len) < 0)
		log_warn("sd_notify to our supervisor failed, ignoring: %m");
}
