/* Set-up and teardown of the built-in worker: logging, the sockets handed over with
 * LISTEN_FDS, the epoll and its signalfd and timerfds, sd_notify and the watchdog timer; and
 * freeing all of it on exit. Setup may fail loudly: the worker then exits with status 3. */
#include "builtin_internal.h"
#include "log.h"
#include "sdnotify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static int parse_ulong(const char *s, unsigned long *ret)
{
	unsigned long v;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*ret = v;
	return 0;
}

static unsigned long env_ulong(const char *name)
{
	const char *s = getenv(name);
	unsigned long v = 0;

	if (s && parse_ulong(s, &v) < 0)
		log_warn("%s=%s is not a number, using 0", name, s);
	return v;
}

static int listener_check(int fd, struct bw_listener *l)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int val, flags;
	socklen_t vlen = sizeof(val);

	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &val, &vlen) < 0)
		return -errno;
	if (!val)
		return -EINVAL;
	vlen = sizeof(val);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &val, &vlen) < 0)
		return -errno;
	if (val != SOCK_STREAM)
		return -EPROTOTYPE;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return -errno;
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return -errno;
	l->src.type = BW_SOURCE_LISTENER;
	l->src.fd = fd;
	l->in_epoll = false;
	l->tcp = ss.ss_family == AF_INET || ss.ss_family == AF_INET6;
	return 0;
}

/* sd_listen_fds(1), with the checks and messages we want. */
static int listeners_from_env(struct bw_worker *w)
{
	const char *e_pid = getenv("LISTEN_PID"), *e_fds = getenv("LISTEN_FDS");
	const char *e_names = getenv("LISTEN_FDNAMES");
	unsigned long pid, n;
	int r = 0;

	if (!e_pid || !e_fds) {
		log_error("LISTEN_FDS and LISTEN_PID are not set: the worker is started by the "
			  "sigvisor arbiter (or systemd socket activation) with its sockets");
		r = -ENOENT;
		goto out;
	}
	if (parse_ulong(e_pid, &pid) < 0 || pid != (unsigned long)getpid()) {
		log_error("LISTEN_PID=%s is not this process (%d): the sockets are not for me",
			  e_pid, (int)getpid());
		r = -ESRCH;
		goto out;
	}
	if (parse_ulong(e_fds, &n) < 0 || n == 0 || n > 4096) {
		log_error("LISTEN_FDS=%s is not a number of sockets between 1 and 4096", e_fds);
		r = -EINVAL;
		goto out;
	}
	log_debug("LISTEN_FDNAMES=%s", e_names ? e_names : "");

	w->listeners = calloc(n, sizeof(*w->listeners));
	if (!w->listeners) {
		r = -ENOMEM;
		log_error("out of memory");
		goto out;
	}
	for (int i = 0; i < (int)n; i++) {
		int fd = 3 + i;

		r = listener_check(fd, &w->listeners[i]);
		if (r < 0) {
			errno = -r;
			log_error("fd %d from LISTEN_FDS is not a listening stream socket: %m", fd);
			goto out;
		}
		w->n_listeners++;
	}
out:
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return r;
}

static int notify_setup(struct bw_worker *w)
{
	const char *path = getenv("NOTIFY_SOCKET");
	int r = sd_notifier_init(&w->notifier, path);

	if (r < 0)
		log_warn("NOTIFY_SOCKET=%s is not a socket path, not notifying", path);
	return r;
}

static int timerfd_source(struct bw_worker *w, struct bw_source *src, enum bw_source_type type)
{
	int r;

	src->type = type;
	src->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (src->fd < 0)
		return -errno;
	r = bw_epoll_add(w, src, EPOLLIN);
	return r;
}

/* SIGVISOR_HEARTBEAT="FD:SLOT": the arbiter's memfd of heartbeats (arbiter/heartbeat.h)
 * and our 8-byte slot in it. Only the page of our slot is mapped; the fd is closed. */
static void heartbeat_setup(struct bw_worker *w)
{
	const char *v = getenv("SIGVISOR_HEARTBEAT");
	unsigned long fd, slot;
	char buf[48], *colon;
	long page = sysconf(_SC_PAGESIZE);
	off_t off, base;
	void *m;

	if (!v)
		return;
	snprintf(buf, sizeof(buf), "%s", v);
	colon = strchr(buf, ':');
	if (colon)
		*colon = '\0';
	if (!colon || parse_ulong(buf, &fd) < 0 || parse_ulong(colon + 1, &slot) < 0 || fd < 3 ||
	    fd > 1u << 20 || slot > 1u << 20 || page <= 0) {
		log_warn("SIGVISOR_HEARTBEAT=%s is not FD:SLOT; sending WATCHDOG=1 instead", v);
		return;
	}
	off = (off_t)slot * (off_t)sizeof(uint64_t);
	base = off / page * page;
	m = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, base);
	close((int)fd);
	if (m == MAP_FAILED) {
		log_warn("cannot map the heartbeat slot (%m); sending WATCHDOG=1 instead");
		return;
	}
	w->beat = (volatile uint64_t *)((char *)m + (off - base));
}

/* The monotonic clock in ms into our slot: the arbiter compares it with its own. */
void bw_heartbeat(struct bw_worker *w)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	*w->beat = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int watchdog_setup(struct bw_worker *w)
{
	const char *usec_s = getenv("WATCHDOG_USEC"), *pid_s = getenv("WATCHDOG_PID");
	unsigned long usec, pid;
	struct itimerspec its = {0};
	uint64_t interval;
	int r;

	if (!usec_s || !sd_notifier_enabled(&w->notifier))
		return 0;
	if (pid_s && (parse_ulong(pid_s, &pid) < 0 || pid != (unsigned long)getpid()))
		return 0;
	if (parse_ulong(usec_s, &usec) < 0 || usec == 0) {
		log_warn("WATCHDOG_USEC=%s is not a positive number, not sending WATCHDOG=1",
			 usec_s);
		return 0;
	}
	heartbeat_setup(w);
	if (w->beat)
		bw_heartbeat(w); /* before READY=1: the arbiter starts counting from it */
	r = timerfd_source(w, &w->watchdog, BW_SOURCE_WATCHDOG);
	if (r < 0)
		return r;
	/* Half the timeout, as sd_watchdog_enabled(3) recommends. */
	interval = (uint64_t)usec * 1000 / 2;
	its.it_interval.tv_sec = (time_t)(interval / NSEC_PER_SEC);
	its.it_interval.tv_nsec = (long)(interval % NSEC_PER_SEC);
	its.it_value = its.it_interval;
	if (timerfd_settime(w->watchdog.fd, 0, &its, NULL) < 0)
		return -errno;
	return 0;
}

int bw_setup(struct bw_worker *w, const sigset_t *mask)
{
	const char *fmt = getenv("SIGVISOR_LOG_FORMAT");
	int r;

	w->log_file = getenv("SIGVISOR_LOG_FILE");
	if (w->log_file && !*w->log_file)
		w->log_file = NULL;
	if (fmt && strcmp(fmt, "json") == 0)
		log_setup("worker", LOG_FORMAT_JSON, LOG_LEVEL_INFO);
	if (w->log_file) {
		r = log_open(w->log_file);
		if (r < 0) {
			errno = -r;
			log_warn("opening log file %s failed, logging to stderr: %m", w->log_file);
		}
	}
	if (fmt && strcmp(fmt, "json") != 0 && strcmp(fmt, "text") != 0)
		log_warn("SIGVISOR_LOG_FORMAT=%s is neither text nor json, using text", fmt);

	w->id = env_ulong("SIGVISOR_WORKER_ID");
	w->generation = env_ulong("SIGVISOR_GENERATION");
	w->arbiter_pid = env_ulong("SIGVISOR_ARBITER_PID");
	w->root_body_len = (size_t)snprintf(w->root_body, sizeof(w->root_body),
					    "sigvisor worker pid=%d id=%lu generation=%lu\n",
					    (int)getpid(), w->id, w->generation);

	r = listeners_from_env(w);
	if (r < 0)
		return r;

	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0) {
		log_error("epoll_create1 failed: %m");
		return -errno;
	}

	w->sigfd.type = BW_SOURCE_SIGNAL;
	w->sigfd.fd = signalfd(-1, mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (w->sigfd.fd < 0) {
		log_error("signalfd failed: %m");
		return -errno;
	}
	r = bw_epoll_add(w, &w->sigfd, EPOLLIN);
	if (r < 0)
		goto fail;
	r = timerfd_source(w, &w->sleep_timer, BW_SOURCE_SLEEP_TIMER);
	if (r < 0)
		goto fail;
	r = timerfd_source(w, &w->sweep_timer, BW_SOURCE_SWEEP_TIMER);
	if (r < 0)
		goto fail;

	notify_setup(w);
	r = watchdog_setup(w);
	if (r < 0)
		goto fail;

	for (int i = 0; i < w->n_listeners; i++) {
		r = bw_epoll_add(w, &w->listeners[i].src, EPOLLIN | EPOLLEXCLUSIVE);
		if (r < 0)
			goto fail;
		w->listeners[i].in_epoll = true;
	}
	return 0;
fail:
	errno = -r;
	log_error("setting up the event loop failed: %m");
	return r;
}

static void close_source(struct bw_source *src)
{
	if (src->fd >= 0)
		close(src->fd);
	src->fd = -1;
}

static void conn_list_free(struct bw_conn *c)
{
	while (c) {
		struct bw_conn *next = c->next;

		if (c->src.fd >= 0)
			close(c->src.fd);
		free(c);
		c = next;
	}
}

void bw_free(struct bw_worker *w)
{
	for (size_t i = 0; i < w->sleeping.n; i++) {
		struct bw_conn *c = w->sleeping.v[i];

		close(c->src.fd);
		free(c);
	}
	heap_free(&w->sleeping);
	conn_list_free(w->idle.head);
	conn_list_free(w->linger.head);
	conn_list_free(w->dead_conns);
	conn_list_free(w->free_conns);
	for (int i = 0; i < w->n_listeners; i++)
		close_source(&w->listeners[i].src);
	free(w->listeners);
	close_source(&w->sigfd);
	close_source(&w->sleep_timer);
	close_source(&w->sweep_timer);
	close_source(&w->watchdog);
	sd_notifier_close(&w->notifier);
	if (w->epfd >= 0)
		close(w->epfd);
}
