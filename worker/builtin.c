/* The built-in HTTP worker: what every worker runs when sigvisor is started without COMMAND.
 *
 * One process, one thread, one epoll, no signal handlers: TERM, QUIT, INT, USR1, HUP and PIPE
 * are blocked and read from a signalfd. The sockets come from the arbiter the systemd way
 * (LISTEN_FDS) and are shared by every worker, hence EPOLLEXCLUSIVE. HTTP/1.1 with keep-alive
 * and pipelining, GET and HEAD only, three routes (/, /healthz, /sleep?ms=N). /sleep parks the
 * connection on a heap of deadlines behind one timerfd instead of blocking, so the worker keeps
 * serving everyone else.
 *
 * Every object registered with epoll starts with a struct source, whose type tag picks the
 * handler. Connections are never freed inside an epoll batch (a later event of the same batch
 * may still point at them); they go on a dead list that is recycled after the batch.
 *
 * When idle (no connections, no watchdog) the worker arms no timer and never wakes up. */
#include "builtin.h"
#include "http.h"
#include "log.h"
#include "sdnotify.h"
#include "signames.h"
#include "timeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define NSEC_PER_SEC  1000000000ULL
#define NSEC_PER_MSEC 1000000ULL

#define EXIT_BOOT_FAILURE 3

/* The input buffer holds a maximal head plus room to read pipelined requests behind it. */
#define IN_BUF_SIZE  (2 * HTTP_HEAD_MAX)
#define OUT_BUF_SIZE 8192
/* Room reserved in the output buffer before a request is parsed: the largest response. */
#define RESPONSE_MAX 512

#define MAX_EVENTS 128
/* Accepts per wakeup, so one worker does not take a whole burst from its siblings. */
#define ACCEPT_BATCH 64
/* On TERM: at most this many connections are taken from a listener's queue. A frozen
 * queue holds at most the backlog (net.core.somaxconn caps it, 4096 by default); the
 * bound only matters for one the arbiter did not freeze, which other workers serve. */
#define DRAIN_ACCEPT_MAX 65536
/* Connection structs kept for reuse; beyond this, closed ones are freed. */
#define FREE_CONNS_MAX 256

#define IDLE_TIMEOUT_NS	  (60 * NSEC_PER_SEC)
#define LINGER_TIMEOUT_NS (5 * NSEC_PER_SEC)
/* How long an idle keep-alive connection may still send one request after TERM, and how
 * long a connection closed after TERM lingers for the client's close. */
#define DRAIN_GRACE_NS (NSEC_PER_SEC)
/* Out of fds: how long to leave the listeners alone when no connection closes meanwhile. */
#define ACCEPT_RETRY_NS	      (1 * NSEC_PER_SEC)
#define ERROR_LOG_INTERVAL_NS (1 * NSEC_PER_SEC)

/* ---- request parser (pure, unit-tested) ---- */

static bool is_tchar(unsigned char ch)
{
	if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
		return true;
	switch (ch) {
	case '!':
	case '#':
	case '$':
	case '%':
	case '&':
	case '\'':
	case '*':
	case '+':
	case '-':
	case '.':
	case '^':
	case '_':
	case '`':
	case '|':
	case '~':
		return true;
	default:
		return false;
	}
}

static bool is_ows(char ch)
{
	return ch == ' ' || ch == '\t';
}

static bool is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static bool mem_eq_nocase(const char *s, size_t n, const char *lit)
{
	return n == strlen(lit) && strncasecmp(s, lit, n) == 0;
}

static bool mem_eq(const char *s, size_t n, const char *lit)
{
	return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

static void trim_ows(const char **start, const char **end)
{
	while (*start < *end && is_ows(**start))
		(*start)++;
	while (*end > *start && is_ows((*end)[-1]))
		(*end)--;
}

/* Origin-form ("/path?query") is what clients send; absolute-form must be accepted too (RFC
 * 9112 3.2.2) and "*" is only meaningful for OPTIONS, which gets 405 anyway. */
static int parse_target(const char *t, size_t n, struct http_request *req)
{
	const char *q;
	size_t scheme = 0;

	if (n >= 7 && strncasecmp(t, "http://", 7) == 0)
		scheme = 7;
	else if (n >= 8 && strncasecmp(t, "https://", 8) == 0)
		scheme = 8;
	if (scheme) {
		const char *slash = memchr(t + scheme, '/', n - scheme);

		if (!slash) {
			req->path = "/";
			req->path_len = 1;
			return 0;
		}
		n -= (size_t)(slash - t);
		t = slash;
	} else if (!(t[0] == '/' || (n == 1 && t[0] == '*'))) {
		return -EBADMSG;
	}

	q = memchr(t, '?', n);
	req->path = t;
	req->path_len = q ? (size_t)(q - t) : n;
	if (q) {
		req->query = q + 1;
		req->query_len = n - req->path_len - 1;
	}
	return 0;
}

static int parse_request_line(const char *p, size_t n, struct http_request *req)
{
	const char *sp1, *sp2, *target, *ver;
	size_t mlen, tlen, vlen;

	sp1 = memchr(p, ' ', n);
	if (!sp1 || sp1 == p)
		return -EBADMSG;
	mlen = (size_t)(sp1 - p);
	for (size_t i = 0; i < mlen; i++)
		if (!is_tchar((unsigned char)p[i]))
			return -EBADMSG;
	if (mem_eq(p, mlen, "GET"))
		req->method = HTTP_METHOD_GET;
	else if (mem_eq(p, mlen, "HEAD"))
		req->method = HTTP_METHOD_HEAD;
	else
		req->method = HTTP_METHOD_OTHER;

	target = sp1 + 1;
	sp2 = memchr(target, ' ', (size_t)(p + n - target));
	if (!sp2 || sp2 == target)
		return -EBADMSG;
	tlen = (size_t)(sp2 - target);
	for (size_t i = 0; i < tlen; i++) {
		unsigned char ch = (unsigned char)target[i];

		if (ch <= 0x20 || ch == 0x7f)
			return -EBADMSG;
	}

	ver = sp2 + 1;
	vlen = (size_t)(p + n - ver);
	if (vlen != 8 || memcmp(ver, "HTTP/", 5) != 0 || !is_digit(ver[5]) || ver[6] != '.' ||
	    !is_digit(ver[7]))
		return -EBADMSG;
	if (ver[5] != '1')
		return -EPROTONOSUPPORT;
	req->version_minor = ver[7] - '0';

	return parse_target(target, tlen, req);
}

static int parse_content_length(const char *v, size_t n, struct http_request *req)
{
	uint64_t value = 0;

	if (n == 0)
		return -EBADMSG;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(v[i]) || value > (UINT64_MAX - 9) / 10)
			return -EBADMSG;
		value = value * 10 + (uint64_t)(v[i] - '0');
	}
	/* Two different lengths are the classic request-smuggling vector (RFC 9112 6.3). */
	if (req->has_content_length && req->content_length != value)
		return -EBADMSG;
	req->has_content_length = true;
	req->content_length = value;
	return 0;
}

struct head_state {
	unsigned int hosts;
	bool conn_close;
	bool conn_keep_alive;
};

static void parse_connection(const char *v, const char *end, struct head_state *st)
{
	while (v < end) {
		const char *comma = memchr(v, ',', (size_t)(end - v));
		const char *tok = v, *tok_end = comma ? comma : end;

		trim_ows(&tok, &tok_end);
		if (mem_eq_nocase(tok, (size_t)(tok_end - tok), "close"))
			st->conn_close = true;
		else if (mem_eq_nocase(tok, (size_t)(tok_end - tok), "keep-alive"))
			st->conn_keep_alive = true;
		v = comma ? comma + 1 : end;
	}
}

static int parse_header(const char *p, size_t n, struct http_request *req, struct head_state *st)
{
	const char *colon, *v, *end = p + n;
	size_t name_len;

	/* A leading space is obs-fold and a space before the colon is forbidden (RFC 9112 5.1,
	 * 5.2); both fail the token check and get 400, as the RFC allows. */
	colon = memchr(p, ':', n);
	if (!colon || colon == p)
		return -EBADMSG;
	name_len = (size_t)(colon - p);
	for (size_t i = 0; i < name_len; i++)
		if (!is_tchar((unsigned char)p[i]))
			return -EBADMSG;

	v = colon + 1;
	trim_ows(&v, &end);
	for (const char *c = v; c < end; c++) {
		unsigned char ch = (unsigned char)*c;

		/* Rejects a bare CR too, which some proxies treat as a line end. */
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return -EBADMSG;
	}

	switch (name_len) {
	case 4:
		if (mem_eq_nocase(p, name_len, "host"))
			st->hosts++;
		break;
	case 10:
		if (mem_eq_nocase(p, name_len, "connection"))
			parse_connection(v, end, st);
		break;
	case 14:
		if (mem_eq_nocase(p, name_len, "content-length"))
			return parse_content_length(v, (size_t)(end - v), req);
		break;
	case 17:
		if (mem_eq_nocase(p, name_len, "transfer-encoding"))
			req->transfer_encoding = true;
		break;
	default:
		break;
	}
	return 0;
}

int http_parse_request(const char *buf, size_t len, struct http_request *ret_req)
{
	size_t limit = len < HTTP_HEAD_MAX ? len : HTTP_HEAD_MAX;
	struct http_request req = {0};
	struct head_state st = {0};
	bool have_request_line = false;
	size_t pos = 0;
	int r;

	/* Only complete lines are looked at, so a head that is merely cut short is never
	 * reported as malformed. Lines may end in LF alone (RFC 9112 2.2). */
	for (;;) {
		const char *line = buf + pos;
		const char *nl = memchr(line, '\n', limit - pos);
		size_t n;

		if (!nl)
			return len >= HTTP_HEAD_MAX ? -EMSGSIZE : 0;
		n = (size_t)(nl - line);
		if (n > 0 && line[n - 1] == '\r')
			n--;
		pos = (size_t)(nl - buf) + 1;

		if (!have_request_line) {
			/* Empty lines before a request are to be ignored (RFC 9112 2.2): some
			 * clients send a CRLF after a POST body. */
			if (n == 0)
				continue;
			r = parse_request_line(line, n, &req);
			if (r < 0)
				return r;
			have_request_line = true;
			continue;
		}
		if (n == 0)
			break;
		r = parse_header(line, n, &req, &st);
		if (r < 0)
			return r;
	}

	/* RFC 9112 3.2: a 1.1 request without Host, or with several, MUST get 400. */
	if (st.hosts > 1 || (req.version_minor >= 1 && st.hosts == 0))
		return -EBADMSG;
	if (req.version_minor >= 1)
		req.keep_alive = !st.conn_close;
	else
		req.keep_alive = st.conn_keep_alive && !st.conn_close;

	*ret_req = req;
	return (int)pos;
}

int http_parse_sleep_ms(const char *query, size_t len, unsigned int *ret_ms)
{
	const char *p = query, *end = query ? query + len : NULL;

	while (p && p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *param_end = amp ? amp : end;

		if (param_end - p >= 3 && memcmp(p, "ms=", 3) == 0) {
			unsigned long value = 0;
			const char *d = p + 3;

			if (d == param_end)
				return -EINVAL;
			for (; d < param_end; d++) {
				if (!is_digit(*d))
					return -EINVAL;
				value = value * 10 + (unsigned long)(*d - '0');
				if (value > HTTP_SLEEP_MS_MAX) {
					/* Keep checking the rest, so "ms=9999x" is -EINVAL. */
					for (; d < param_end; d++)
						if (!is_digit(*d))
							return -EINVAL;
					return -ERANGE;
				}
			}
			*ret_ms = (unsigned int)value;
			return 0;
		}
		p = amp ? amp + 1 : end;
	}
	return -EINVAL;
}

/* ---- the worker ---- */

enum source_type {
	SOURCE_LISTENER,
	SOURCE_CONN,
	SOURCE_SIGNAL,
	SOURCE_SLEEP_TIMER,
	SOURCE_SWEEP_TIMER,
	SOURCE_WATCHDOG,
};

/* First member of everything registered with epoll. */
struct source {
	enum source_type type;
	int fd;
};

struct listener {
	struct source src;
	bool in_epoll;
	bool tcp;
};

enum conn_list_id {
	LIST_NONE, /* parked on the sleep heap: no idle timeout */
	LIST_IDLE,
	LIST_LINGER,
};

struct conn {
	struct source src; /* src.fd is -1 once closed */
	uint32_t events;   /* what is registered with epoll */
	bool parked;	   /* waiting for a /sleep deadline; input is not looked at meanwhile */
	bool want_close;   /* a Connection: close response is queued: no more requests */
	bool eof;	   /* the peer will send nothing more */
	bool lingering;	   /* write side shut down, discarding input until the peer closes */
	bool out_full;
	uint64_t body_left; /* request body bytes still to discard */
	size_t in_start, in_end;
	size_t out_start, out_end;

	/* the parked /sleep request */
	uint64_t sleep_deadline;
	size_t heap_index;
	unsigned int sleep_ms;
	bool sleep_head;
	bool sleep_keep_alive;

	/* position in the idle or linger list, both ordered by deadline */
	enum conn_list_id list;
	uint64_t deadline;
	struct conn *prev, *next;

	char in[IN_BUF_SIZE];
	char out[OUT_BUF_SIZE];
};

struct conn_list {
	struct conn *head, *tail;
};

struct worker {
	int epfd;
	struct source sigfd;
	struct source sleep_timer;
	struct source sweep_timer;
	struct source watchdog;

	struct listener *listeners;
	int n_listeners;
	bool listeners_paused; /* out of fds: listeners are out of epoll for a while */
	uint64_t accept_resume_at;
	uint64_t accept_error_logged_at;

	uint64_t now; /* CLOCK_MONOTONIC ns, read once per epoll_wait */
	size_t n_conns;
	struct conn_list idle, linger;
	struct conn *free_conns; /* linked through ->next */
	size_t n_free;
	struct conn *dead_conns; /* closed during this batch, recycled after it */

	/* parked /sleep connections, a binary min-heap on sleep_deadline */
	struct conn **heap;
	size_t heap_len, heap_cap;
	uint64_t sleep_armed; /* absolute deadline the timerfd is armed for, 0 when not */
	uint64_t sweep_armed;

	bool draining;
	bool quit;
	const char *exit_reason;

	struct sd_notifier notifier;
	uint64_t notify_failed_at; /* when a failed send was last logged, 0 never */
	unsigned notify_failures;  /* since then */

	const char *log_file;
	unsigned long id, generation, arbiter_pid;
	char root_body[160];
	size_t root_body_len;
};

/* Arm fd for the absolute CLOCK_MONOTONIC time at; 0 disarms. */
static int timer_set(int fd, uint64_t at)
{
	struct itimerspec its = {0};

	its.it_value.tv_sec = (time_t)(at / NSEC_PER_SEC);
	its.it_value.tv_nsec = (long)(at % NSEC_PER_SEC);
	if (timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		return -errno;
	return 0;
}

static void timer_drain(int fd)
{
	uint64_t ticks;

	/* EAGAIN is fine: the timer may have been re-armed since it fired. */
	if (read(fd, &ticks, sizeof(ticks)) < 0) {
	}
}

static int epoll_add(struct worker *w, struct source *src, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = src};

	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, src->fd, &ev) < 0)
		return -errno;
	return 0;
}

/* Errors a client can cause at any rate: log at most one a second. */
static bool error_log_allowed(struct worker *w)
{
	if (w->accept_error_logged_at && w->now - w->accept_error_logged_at < ERROR_LOG_INTERVAL_NS)
		return false;
	w->accept_error_logged_at = w->now;
	return true;
}

/* ---- sd_notify ---- */

static int notify_setup(struct worker *w)
{
	const char *path = getenv("NOTIFY_SOCKET");
	int r = sd_notifier_init(&w->notifier, path);

	if (r < 0)
		log_warn("NOTIFY_SOCKET=%s is not a socket path, not notifying", path);
	return r;
}

static void notify(struct worker *w, const char *msg)
{
	int r = sd_notifier_send(&w->notifier, msg);

	if (r == 0)
		return;
	/* A lost message is not a reason to stop serving: the next WATCHDOG=1 comes half
	 * a timeout later (a second chance before the arbiter's deadline), and the
	 * arbiter treats a worker that never notifies as ready once started. Said once
	 * a minute at most, with the count. */
	w->notify_failures++;
	if (w->notify_failed_at && w->now - w->notify_failed_at < 60 * NSEC_PER_SEC)
		return;
	log_warn("sending %s to NOTIFY_SOCKET failed: %s; trying again with the next message "
		 "(%u failed since this was last said)",
		 msg, strerror(-r), w->notify_failures);
	w->notify_failed_at = w->now ? w->now : 1;
	w->notify_failures = 0;
}

/* ---- timeouts: idle and linger lists behind the sweep timer ---- */

/* Idle keep-alive connections are closed after IDLE_TIMEOUT_NS without input or output
 * progress, lingering ones after LINGER_TIMEOUT_NS. Each list has a fixed timeout, so
 * appending at the tail keeps it sorted and the head is the next to expire. The sweep timer
 * is armed for the earliest head but never moved later on activity (that would cost a
 * syscall per request): when it fires early it simply re-arms. It is disarmed when both
 * lists are empty, so a worker without connections gets no wakeups. */
static void sweep_schedule(struct worker *w, uint64_t at)
{
	int r;

	if (w->sweep_armed && w->sweep_armed <= at)
		return;
	r = timer_set(w->sweep_timer.fd, at);
	if (r < 0) {
		errno = -r;
		log_warn("arming the idle timer failed, ignoring: %m");
		return;
	}
	w->sweep_armed = at;
}

static void sweep_maybe_disarm(struct worker *w)
{
	if (!w->sweep_armed || w->idle.head || w->linger.head || w->listeners_paused)
		return;
	if (timer_set(w->sweep_timer.fd, 0) == 0)
		w->sweep_armed = 0;
}

static struct conn_list *conn_list_of(struct worker *w, enum conn_list_id id)
{
	return id == LIST_IDLE ? &w->idle : &w->linger;
}

static void list_unlink(struct worker *w, struct conn *c)
{
	struct conn_list *l;

	if (c->list == LIST_NONE)
		return;
	l = conn_list_of(w, c->list);
	if (c->prev)
		c->prev->next = c->next;
	else
		l->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		l->tail = c->prev;
	c->prev = c->next = NULL;
	c->list = LIST_NONE;
}

static void list_append(struct worker *w, struct conn *c, enum conn_list_id id, uint64_t timeout)
{
	struct conn_list *l = conn_list_of(w, id);

	c->deadline = w->now + timeout;
	if (c->list == id && l->tail == c)
		return;
	list_unlink(w, c);
	c->prev = l->tail;
	c->next = NULL;
	if (l->tail)
		l->tail->next = c;
	else
		l->head = c;
	l->tail = c;
	c->list = id;
	sweep_schedule(w, c->deadline);
}

static size_t count_list(const struct conn_list *l)
{
	size_t n = 0;

	for (const struct conn *c = l->head; c; c = c->next)
		n++;
	return n;
}

static void conn_touch(struct worker *w, struct conn *c)
{
	if (!c->parked && !c->lingering)
		list_append(w, c, LIST_IDLE, IDLE_TIMEOUT_NS);
}

/* ---- listeners ---- */

static void listeners_pause(struct worker *w)
{
	for (int i = 0; i < w->n_listeners; i++) {
		struct listener *l = &w->listeners[i];

		if (l->in_epoll && epoll_ctl(w->epfd, EPOLL_CTL_DEL, l->src.fd, NULL) == 0)
			l->in_epoll = false;
	}
	w->listeners_paused = true;
	w->accept_resume_at = w->now + ACCEPT_RETRY_NS;
	sweep_schedule(w, w->accept_resume_at);
}

static void listeners_resume(struct worker *w)
{
	w->listeners_paused = false;
	for (int i = 0; i < w->n_listeners; i++) {
		struct listener *l = &w->listeners[i];
		int r;

		if (l->src.fd < 0 || l->in_epoll)
			continue;
		r = epoll_add(w, &l->src, EPOLLIN | EPOLLEXCLUSIVE);
		if (r < 0) {
			errno = -r;
			log_error("re-adding listening socket %d to epoll failed, ignoring: %m",
				  l->src.fd);
			continue;
		}
		l->in_epoll = true;
	}
}

/* ---- sleep heap ---- */

static void heap_set(struct worker *w, size_t i, struct conn *c)
{
	w->heap[i] = c;
	c->heap_index = i;
}

static void heap_up(struct worker *w, size_t i)
{
	struct conn *c = w->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (w->heap[parent]->sleep_deadline <= c->sleep_deadline)
			break;
		heap_set(w, i, w->heap[parent]);
		i = parent;
	}
	heap_set(w, i, c);
}

static void heap_down(struct worker *w, size_t i)
{
	struct conn *c = w->heap[i];

	for (;;) {
		size_t child = 2 * i + 1;

		if (child >= w->heap_len)
			break;
		if (child + 1 < w->heap_len &&
		    w->heap[child + 1]->sleep_deadline < w->heap[child]->sleep_deadline)
			child++;
		if (c->sleep_deadline <= w->heap[child]->sleep_deadline)
			break;
		heap_set(w, i, w->heap[child]);
		i = child;
	}
	heap_set(w, i, c);
}

static int heap_push(struct worker *w, struct conn *c)
{
	if (w->heap_len == w->heap_cap) {
		size_t cap = w->heap_cap ? 2 * w->heap_cap : 64;
		struct conn **heap = realloc(w->heap, cap * sizeof(*heap));

		if (!heap)
			return -ENOMEM;
		w->heap = heap;
		w->heap_cap = cap;
	}
	heap_set(w, w->heap_len++, c);
	heap_up(w, w->heap_len - 1);
	return 0;
}

static void heap_remove(struct worker *w, struct conn *c)
{
	size_t i = c->heap_index;
	struct conn *last = w->heap[--w->heap_len];

	if (i == w->heap_len)
		return;
	heap_set(w, i, last);
	heap_down(w, i);
	heap_up(w, last->heap_index);
}

static void sleep_timer_update(struct worker *w)
{
	uint64_t at = w->heap_len ? w->heap[0]->sleep_deadline : 0;
	int r;

	if (at == w->sleep_armed)
		return;
	r = timer_set(w->sleep_timer.fd, at);
	if (r < 0) {
		errno = -r;
		log_error("arming the sleep timer failed, ignoring: %m");
		return;
	}
	w->sleep_armed = at;
}

/* ---- connections ---- */

static void conn_close(struct worker *w, struct conn *c)
{
	if (c->src.fd < 0)
		return;
	if (c->parked) {
		heap_remove(w, c);
		c->parked = false;
		sleep_timer_update(w);
	}
	list_unlink(w, c);
	/* The fd is not shared with anyone, so close() also takes it out of epoll. */
	close(c->src.fd);
	c->src.fd = -1;
	c->next = w->dead_conns;
	w->dead_conns = c;
	w->n_conns--;
	/* While draining too: a listener a drain could not empty stays open (out of epoll
	 * while paused), and is emptied once accepting works again (listener_ready). */
	if (w->listeners_paused)
		listeners_resume(w);
	sweep_maybe_disarm(w);
}

static void conns_recycle(struct worker *w)
{
	while (w->dead_conns) {
		struct conn *c = w->dead_conns;

		w->dead_conns = c->next;
		if (w->n_free >= FREE_CONNS_MAX) {
			free(c);
			continue;
		}
		c->next = w->free_conns;
		w->free_conns = c;
		w->n_free++;
	}
}

static void conn_set_events(struct worker *w, struct conn *c, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = &c->src};

	if (c->events == events)
		return;
	if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->src.fd, &ev) < 0) {
		log_warn("epoll_ctl on connection %d failed, closing it: %m", c->src.fd);
		conn_close(w, c);
		return;
	}
	c->events = events;
}

/* Queue a response. The caller has made sure RESPONSE_MAX bytes are free in c->out. */
static void conn_respond(struct worker *w, struct conn *c, int status, bool head_only,
			 bool keep_alive, const char *body, size_t body_len, const char *extra)
{
	char *out = c->out + c->out_end;
	size_t space = OUT_BUF_SIZE - c->out_end;
	int n;

	if (w->draining)
		keep_alive = false;
	n = snprintf(out, space,
		     "HTTP/1.1 %d %s\r\n"
		     "Content-Type: text/plain\r\n"
		     "Content-Length: %zu\r\n"
		     "Connection: %s\r\n"
		     "%s\r\n",
		     status, http_reason(status), body_len, keep_alive ? "keep-alive" : "close",
		     extra);
	if (n < 0 || (size_t)n + (head_only ? 0 : body_len) > space) {
		log_error("response %d does not fit the output buffer, closing connection", status);
		c->want_close = true;
		return;
	}
	if (!head_only) {
		memcpy(out + n, body, body_len);
		n += (int)body_len;
	}
	c->out_end += (size_t)n;
	if (!keep_alive)
		c->want_close = true;
}

static void conn_respond_text(struct worker *w, struct conn *c, int status, bool head_only,
			      bool keep_alive, const char *body)
{
	conn_respond(w, c, status, head_only, keep_alive, body, strlen(body), "");
}

static void conn_respond_slept(struct worker *w, struct conn *c)
{
	char body[32];
	int n = snprintf(body, sizeof(body), "slept %u ms\n", c->sleep_ms);

	conn_respond(w, c, 200, c->sleep_head, c->sleep_keep_alive, body, (size_t)n, "");
}

static void conn_park(struct worker *w, struct conn *c, unsigned int ms, bool head_only,
		      bool keep_alive)
{
	c->sleep_ms = ms;
	c->sleep_head = head_only;
	c->sleep_keep_alive = keep_alive;
	c->sleep_deadline = w->now + ms * NSEC_PER_MSEC;
	if (ms == 0) {
		conn_respond_slept(w, c);
		return;
	}
	if (heap_push(w, c) < 0) {
		conn_respond_text(w, c, 500, head_only, false, "out of memory\n");
		return;
	}
	c->parked = true;
	list_unlink(w, c);
	sweep_maybe_disarm(w);
	sleep_timer_update(w);
}

static bool path_is(const struct http_request *req, const char *path)
{
	return mem_eq(req->path, req->path_len, path);
}

static void conn_handle(struct worker *w, struct conn *c, const struct http_request *req)
{
	bool head = req->method == HTTP_METHOD_HEAD;
	unsigned int ms;

	if (req->transfer_encoding) {
		/* The body's length is unknown without decoding it: give up on the connection. */
		conn_respond_text(w, c, 501, head, false, "transfer-encoding not supported\n");
		return;
	}
	if (req->method == HTTP_METHOD_OTHER) {
		static const char body[] = "method not allowed\n";

		conn_respond(w, c, 405, false, req->keep_alive, body, sizeof(body) - 1,
			     "Allow: GET, HEAD\r\n");
		return;
	}
	if (path_is(req, "/")) {
		conn_respond(w, c, 200, head, req->keep_alive, w->root_body, w->root_body_len, "");
	} else if (path_is(req, "/healthz")) {
		conn_respond_text(w, c, 200, head, req->keep_alive, "ok\n");
	} else if (path_is(req, "/sleep")) {
		if (http_parse_sleep_ms(req->query, req->query_len, &ms) < 0)
			conn_respond_text(w, c, 400, head, req->keep_alive,
					  "usage: /sleep?ms=N with 0 <= N <= 600000\n");
		else
			conn_park(w, c, ms, head, req->keep_alive);
	} else {
		conn_respond_text(w, c, 404, head, req->keep_alive, "not found\n");
	}
}

/* Answer the complete requests in the input buffer, in order, until one has to wait. */
static void conn_process(struct worker *w, struct conn *c)
{
	while (!c->parked && !c->want_close) {
		size_t avail = c->in_end - c->in_start;
		struct http_request req;
		int r;

		if (c->body_left) {
			size_t n = avail < c->body_left ? avail : (size_t)c->body_left;

			c->in_start += n;
			c->body_left -= n;
			if (c->body_left)
				break;
			continue;
		}
		if (avail == 0)
			break;
		if (OUT_BUF_SIZE - c->out_end < RESPONSE_MAX) {
			c->out_full = true;
			break;
		}
		r = http_parse_request(c->in + c->in_start, avail, &req);
		if (r == 0)
			break;
		if (r < 0) {
			if (r == -EMSGSIZE)
				conn_respond_text(w, c, 431, false, false,
						  "request header too large\n");
			else if (r == -EPROTONOSUPPORT)
				conn_respond_text(w, c, 505, false, false,
						  "HTTP version not supported\n");
			else
				conn_respond_text(w, c, 400, false, false, "bad request\n");
			break;
		}
		c->in_start += (size_t)r;
		c->body_left = req.has_content_length ? req.content_length : 0;
		conn_handle(w, c, &req);
	}
	if (c->in_start == c->in_end)
		c->in_start = c->in_end = 0;
}

static int conn_flush(struct worker *w, struct conn *c)
{
	while (c->out_start < c->out_end) {
		ssize_t n = send(c->src.fd, c->out + c->out_start, c->out_end - c->out_start,
				 MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? -EAGAIN : -errno;
		}
		c->out_start += (size_t)n;
		conn_touch(w, c);
	}
	c->out_start = c->out_end = 0;
	return 0;
}

/* Shutting down our side and reading until the peer closes, rather than close() at once,
 * keeps unread input from turning the close into an RST that can destroy the response
 * before the client has read it. */
static void conn_finish(struct worker *w, struct conn *c)
{
	if (c->eof || shutdown(c->src.fd, SHUT_WR) < 0) {
		conn_close(w, c);
		return;
	}
	c->lingering = true;
	list_append(w, c, LIST_LINGER, w->draining ? DRAIN_GRACE_NS : LINGER_TIMEOUT_NS);
	conn_set_events(w, c, EPOLLIN);
}

static void conn_linger_read(struct worker *w, struct conn *c)
{
	for (int i = 0; i < 4; i++) {
		ssize_t n = recv(c->src.fd, c->in, sizeof(c->in), 0);

		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		break;
	}
	conn_close(w, c);
}

static bool conn_is_idle(const struct conn *c)
{
	return !c->parked && !c->want_close && !c->lingering && c->body_left == 0 &&
	       c->in_start == c->in_end && c->out_start == c->out_end;
}

/* Make all the progress possible without waiting, then register what to wait for. */
static void conn_run(struct worker *w, struct conn *c)
{
	uint32_t want;
	int r;

	for (;;) {
		c->out_full = false;
		conn_process(w, c);
		r = conn_flush(w, c);
		if (r == -EAGAIN)
			break;
		if (r < 0) {
			conn_close(w, c);
			return;
		}
		if (!c->out_full)
			break;
	}

	if (c->out_start < c->out_end) {
		/* Stop reading while the client does not read: that is the backpressure. */
		want = EPOLLOUT;
	} else if (c->parked) {
		want = 0;
	} else if (c->want_close || c->eof) {
		conn_finish(w, c);
		return;
	} else if (w->draining && conn_is_idle(c)) {
		conn_close(w, c);
		return;
	} else {
		want = EPOLLIN;
	}
	conn_set_events(w, c, want);
}

static int conn_read(struct worker *w, struct conn *c)
{
	size_t space;
	ssize_t n;

	if (c->in_start > 0 && (c->in_end == IN_BUF_SIZE || c->in_start > IN_BUF_SIZE / 2)) {
		memmove(c->in, c->in + c->in_start, c->in_end - c->in_start);
		c->in_end -= c->in_start;
		c->in_start = 0;
	}
	/* Cannot happen: an unfinished head is at most HTTP_HEAD_MAX bytes. Checked anyway,
	 * since reading nothing from a level-triggered readable socket would spin. */
	space = IN_BUF_SIZE - c->in_end;
	if (space == 0)
		return -ENOBUFS;
	n = recv(c->src.fd, c->in + c->in_end, space, 0);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? -EAGAIN : -errno;
	if (n == 0) {
		c->eof = true;
		return 0;
	}
	c->in_end += (size_t)n;
	conn_touch(w, c);
	return 0;
}

static void conn_event(struct worker *w, struct conn *c, uint32_t events)
{
	int r;

	if (c->src.fd < 0)
		return; /* closed earlier in this batch */
	if (c->lingering) {
		conn_linger_read(w, c);
		return;
	}
	if (events & EPOLLERR) {
		conn_close(w, c);
		return;
	}
	if (c->parked) {
		/* Only a hangup is reported while parked: the client is gone. */
		if (events & EPOLLHUP)
			conn_close(w, c);
		return;
	}
	if ((events & (EPOLLIN | EPOLLHUP)) && (c->events & EPOLLIN)) {
		r = conn_read(w, c);
		if (r < 0 && r != -EAGAIN) {
			conn_close(w, c);
			return;
		}
	}
	conn_run(w, c);
}

static struct conn *conn_get(struct worker *w)
{
	struct conn *c = w->free_conns;

	if (c) {
		w->free_conns = c->next;
		w->n_free--;
		return c;
	}
	return malloc(sizeof(*c));
}

static void conn_accepted(struct worker *w, const struct listener *l, int fd)
{
	struct conn *c = conn_get(w);
	int one = 1, r;

	if (!c) {
		if (error_log_allowed(w))
			log_error("no memory for a new connection, closing it");
		close(fd);
		return;
	}
	c->src.type = SOURCE_CONN;
	c->src.fd = fd;
	c->events = EPOLLIN;
	c->parked = c->want_close = c->eof = c->lingering = c->out_full = false;
	c->body_left = 0;
	c->in_start = c->in_end = c->out_start = c->out_end = 0;
	c->list = LIST_NONE;
	c->prev = c->next = NULL;

	/* Responses go out in one send() each, so Nagle only delays pipelined answers. */
	if (l->tcp && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		log_debug("TCP_NODELAY failed, ignoring: %m");

	r = epoll_add(w, &c->src, EPOLLIN);
	if (r < 0) {
		errno = -r;
		if (error_log_allowed(w))
			log_error("adding a connection to epoll failed, closing it: %m");
		close(fd);
		c->src.fd = -1;
		c->next = w->dead_conns;
		w->dead_conns = c;
		return;
	}
	w->n_conns++;
	conn_touch(w, c);
}

/* What listener_accept left the listener's queue like. */
enum accept_result {
	ACCEPT_EMPTY,  /* nothing more queued */
	ACCEPT_MORE,   /* a full batch taken: more may be queued */
	ACCEPT_PAUSED, /* out of fds: every listener is out of epoll for a while */
	ACCEPT_BROKEN, /* an error of the socket itself: out of epoll for good */
	ACCEPT_SHUT,   /* frozen by the arbiter and empty: it takes nothing ever again */
};

/* The arbiter freezes a unix listener with shutdown(SHUT_RD) (arbiter/listeners.h): it
 * refuses new connections, stays readable for ever, and accept() finds nothing once the
 * queue is empty. poll() tells such a socket by POLLRDHUP; a TCP listener never has it
 * (frozen, it is simply never readable again once empty). */
static bool listener_is_shut(const struct listener *l)
{
	struct pollfd p = {.fd = l->src.fd, .events = POLLRDHUP};

	return !l->tcp && poll(&p, 1, 0) == 1 && (p.revents & POLLRDHUP);
}

static enum accept_result listener_accept(struct worker *w, struct listener *l)
{
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(l->src.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			conn_accepted(w, l, fd);
			continue;
		}
		switch (errno) {
		case EAGAIN:
			/* Woken with nothing to take: another worker was faster (one connection
			 * may wake several), or the socket was frozen and is empty. */
			return i == 0 && listener_is_shut(l) ? ACCEPT_SHUT : ACCEPT_EMPTY;
		case EINTR:
		case ECONNABORTED:
		/* accept(2): errors of the pending connection, to be treated like EAGAIN */
		case EPROTO:
		case ENETDOWN:
		case ENOPROTOOPT:
		case EHOSTDOWN:
		case ENONET:
		case EHOSTUNREACH:
		case EOPNOTSUPP:
		case ENETUNREACH:
			continue;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			/* The listener stays readable, so a level-triggered epoll would spin:
			 * take the listeners out until a connection closes or a second passes. */
			if (error_log_allowed(w))
				log_error("accepting a connection failed, pausing accepts: %m");
			listeners_pause(w);
			return ACCEPT_PAUSED;
		default:
			log_error("accepting on socket %d failed, no longer accepting on it: %m",
				  l->src.fd);
			if (epoll_ctl(w->epfd, EPOLL_CTL_DEL, l->src.fd, NULL) == 0)
				l->in_epoll = false;
			return ACCEPT_BROKEN;
		}
	}
	return ACCEPT_MORE;
}

/* Close our copy of a listener for good. */
static void listener_drop(struct worker *w, struct listener *l)
{
	if (l->in_epoll)
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, l->src.fd, NULL);
	close(l->src.fd);
	l->src.fd = -1;
	l->in_epoll = false;
}

/* Take everything l has queued, then close it. When the last copy of a listener
 * closes, the kernel resets every connection still in its queue: connections whose
 * handshake it completed, which a client counts as lost. Before it sends TERM to the
 * last worker serving a socket, the arbiter freezes it (no new connection enters the
 * queue), so what this takes is all there is. Returns false when out of fds: l stays
 * open, and listener_ready empties and closes it once accepting works again. */
static bool listener_drain(struct worker *w, struct listener *l)
{
	enum accept_result r;
	int batches = 1;

	while ((r = listener_accept(w, l)) == ACCEPT_MORE &&
	       batches < DRAIN_ACCEPT_MAX / ACCEPT_BATCH)
		batches++;
	if (r == ACCEPT_PAUSED)
		return false;
	if (r == ACCEPT_MORE)
		log_warn("listening socket %d still has connections queued after %d were taken, "
			 "closing it",
			 l->src.fd, DRAIN_ACCEPT_MAX);
	listener_drop(w, l);
	return true;
}

static void listener_ready(struct worker *w, struct listener *l)
{
	enum accept_result r = listener_accept(w, l);

	if (r == ACCEPT_SHUT) {
		log_info("listening socket %d no longer takes connections (sigvisor retired it), "
			 "closing it",
			 l->src.fd);
		listener_drop(w, l);
	} else if (r == ACCEPT_EMPTY && w->draining) {
		listener_drop(w, l); /* the rest of a drain that ran out of fds */
	}
}

/* ---- signals and timers ---- */

static void worker_drain(struct worker *w, const struct signalfd_siginfo *si)
{
	struct conn *c, *next;
	size_t busy = 0;

	if (w->draining) {
		log_debug("SIGTERM from pid %u while already draining, nothing new to do",
			  si->ssi_pid);
		return;
	}
	log_info("SIGTERM from pid %u: no longer accepting, finishing %zu connections", si->ssi_pid,
		 w->n_conns);
	w->draining = true;
	notify(w, "STOPPING=1");

	/* What is queued is served (with Connection: close), not reset. Out of fds, even
	 * a moment ago: try anyway, and what is left waits for a connection to close. */
	for (int i = 0; i < w->n_listeners; i++)
		if (w->listeners[i].src.fd >= 0 && !listener_drain(w, &w->listeners[i]))
			break;

	/* Closing an idle keep-alive connection now would race the client's next
	 * request, which it may be sending this very moment (a load generator sends it
	 * right after reading a response): it would see the connection closed under a
	 * request and count a failure. Instead each idle connection gets a short grace:
	 * its next request is answered with "Connection: close"; if none comes, the sweep
	 * closes it. Two passes keep the list sorted by deadline: the idle ones go to the
	 * tail with the grace, then the busy ones (now at the front, still in order) with
	 * a deadline no earlier than that. */
	c = w->idle.head;
	for (size_t n = count_list(&w->idle); n > 0 && c; n--, c = next) {
		next = c->next;
		if (conn_is_idle(c))
			list_append(w, c, LIST_IDLE, DRAIN_GRACE_NS);
		else
			busy++;
	}
	for (; busy > 0 && (c = w->idle.head); busy--) {
		uint64_t left = c->deadline > w->now + DRAIN_GRACE_NS ? c->deadline - w->now
								      : DRAIN_GRACE_NS;

		list_append(w, c, LIST_IDLE, left);
	}

	/* A lingering connection waits for the client to close after our last
	 * response. A client that keeps it open (it only reads, or reads later)
	 * would hold the worker until the arbiter's SIGKILL: while draining it gets
	 * the same short grace. Clamping each deadline keeps the list sorted, and
	 * conn_finish appends later ones with the grace too. */
	for (c = w->linger.head; c; c = c->next)
		if (c->deadline > w->now + DRAIN_GRACE_NS)
			c->deadline = w->now + DRAIN_GRACE_NS;
	if (w->linger.head)
		sweep_schedule(w, w->linger.head->deadline);
	sweep_maybe_disarm(w);
}

static void log_reopen(struct worker *w)
{
	int r;

	if (!w->log_file) {
		log_debug("SIGUSR1 without a log file, nothing to reopen");
		return;
	}
	r = log_open(w->log_file);
	if (r < 0) {
		errno = -r;
		log_error("reopening log file %s failed, keeping the old one: %m", w->log_file);
		return;
	}
	log_info("reopened log file %s", w->log_file);
}

static void signals_read(struct worker *w)
{
	struct signalfd_siginfo si[8];

	for (;;) {
		ssize_t n = read(w->sigfd.fd, si, sizeof(si));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				log_warn("reading the signalfd failed, ignoring: %m");
			return;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(si[0]); i++) {
			switch (si[i].ssi_signo) {
			case SIGTERM:
				worker_drain(w, &si[i]);
				break;
			case SIGQUIT:
			case SIGINT:
				log_info("SIG%s from pid %u: exiting now",
					 signal_name((int)si[i].ssi_signo), si[i].ssi_pid);
				w->quit = true;
				w->exit_reason = "quick shutdown";
				break;
			case SIGUSR1:
				log_reopen(w);
				break;
			default:
				log_debug("signal %u from pid %u ignored", si[i].ssi_signo,
					  si[i].ssi_pid);
				break;
			}
		}
	}
}

static void sleep_timer_fired(struct worker *w)
{
	timer_drain(w->sleep_timer.fd);
	w->sleep_armed = 0;
	while (w->heap_len && w->heap[0]->sleep_deadline <= w->now) {
		struct conn *c = w->heap[0];

		heap_remove(w, c);
		c->parked = false;
		conn_respond_slept(w, c);
		conn_touch(w, c);
		conn_run(w, c);
	}
	sleep_timer_update(w);
}

static void sweep_timer_fired(struct worker *w)
{
	struct conn *c;
	uint64_t next = 0;

	timer_drain(w->sweep_timer.fd);
	w->sweep_armed = 0;
	while ((c = w->idle.head) && c->deadline <= w->now)
		conn_close(w, c);
	while ((c = w->linger.head) && c->deadline <= w->now)
		conn_close(w, c);
	if (w->listeners_paused && w->accept_resume_at <= w->now)
		listeners_resume(w);

	if (w->idle.head)
		next = w->idle.head->deadline;
	if (w->linger.head && (!next || w->linger.head->deadline < next))
		next = w->linger.head->deadline;
	if (w->listeners_paused && (!next || w->accept_resume_at < next))
		next = w->accept_resume_at;
	if (next)
		sweep_schedule(w, next);
}

static void watchdog_fired(struct worker *w)
{
	timer_drain(w->watchdog.fd);
	notify(w, "WATCHDOG=1");
}

static int worker_loop(struct worker *w)
{
	struct epoll_event events[MAX_EVENTS];

	while (!w->quit) {
		int n;

		if (w->draining && w->n_conns == 0) {
			w->exit_reason = "graceful shutdown complete";
			break;
		}
		n = epoll_wait(w->epfd, events, MAX_EVENTS, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error("epoll_wait failed: %m");
			return 1;
		}
		w->now = now_ns();
		for (int i = 0; i < n && !w->quit; i++) {
			struct source *src = events[i].data.ptr;

			switch (src->type) {
			case SOURCE_LISTENER:
				if (src->fd >= 0)
					listener_ready(w, (struct listener *)src);
				break;
			case SOURCE_CONN:
				conn_event(w, (struct conn *)src, events[i].events);
				break;
			case SOURCE_SIGNAL:
				signals_read(w);
				break;
			case SOURCE_SLEEP_TIMER:
				sleep_timer_fired(w);
				break;
			case SOURCE_SWEEP_TIMER:
				sweep_timer_fired(w);
				break;
			case SOURCE_WATCHDOG:
				watchdog_fired(w);
				break;
			}
		}
		conns_recycle(w);
	}
	return 0;
}

/* ---- setup and teardown ---- */

static int parse_ulong(const char *s, unsigned long *ret)
{
	unsigned long v;
	char *end;

	if (!s || !is_digit(*s))
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

static int listener_check(int fd, struct listener *l)
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
	l->src.type = SOURCE_LISTENER;
	l->src.fd = fd;
	l->in_epoll = false;
	l->tcp = ss.ss_family == AF_INET || ss.ss_family == AF_INET6;
	return 0;
}

/* sd_listen_fds(1), with the checks and messages we want. */
static int listeners_from_env(struct worker *w)
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

static int timerfd_source(struct worker *w, struct source *src, enum source_type type)
{
	int r;

	src->type = type;
	src->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (src->fd < 0)
		return -errno;
	r = epoll_add(w, src, EPOLLIN);
	return r;
}

static int watchdog_setup(struct worker *w)
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
	r = timerfd_source(w, &w->watchdog, SOURCE_WATCHDOG);
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

static int worker_setup(struct worker *w, const sigset_t *mask)
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

	w->sigfd.type = SOURCE_SIGNAL;
	w->sigfd.fd = signalfd(-1, mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (w->sigfd.fd < 0) {
		log_error("signalfd failed: %m");
		return -errno;
	}
	r = epoll_add(w, &w->sigfd, EPOLLIN);
	if (r < 0)
		goto fail;
	r = timerfd_source(w, &w->sleep_timer, SOURCE_SLEEP_TIMER);
	if (r < 0)
		goto fail;
	r = timerfd_source(w, &w->sweep_timer, SOURCE_SWEEP_TIMER);
	if (r < 0)
		goto fail;

	notify_setup(w);
	r = watchdog_setup(w);
	if (r < 0)
		goto fail;

	for (int i = 0; i < w->n_listeners; i++) {
		r = epoll_add(w, &w->listeners[i].src, EPOLLIN | EPOLLEXCLUSIVE);
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

static void close_source(struct source *src)
{
	if (src->fd >= 0)
		close(src->fd);
	src->fd = -1;
}

static void conn_list_free(struct conn *c)
{
	while (c) {
		struct conn *next = c->next;

		if (c->src.fd >= 0)
			close(c->src.fd);
		free(c);
		c = next;
	}
}

static void worker_free(struct worker *w)
{
	for (size_t i = 0; i < w->heap_len; i++) {
		close(w->heap[i]->src.fd);
		free(w->heap[i]);
	}
	free(w->heap);
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

int builtin_worker_main(int argc, char **argv)
{
	struct worker w = {
		.epfd = -1,
		.sigfd.fd = -1,
		.sleep_timer.fd = -1,
		.sweep_timer.fd = -1,
		.watchdog.fd = -1,
		.notifier.fd = -1,
		.exit_reason = "unknown",
	};
	sigset_t mask;
	int r;

	(void)argc;
	(void)argv;

	log_setup("worker", LOG_FORMAT_TEXT, LOG_LEVEL_INFO);

	/* First thing, so a TERM that arrives while booting waits in the signalfd instead of
	 * killing us with the default action. PIPE is blocked too, although every send uses
	 * MSG_NOSIGNAL, so nothing the libc does behind our back can kill the worker. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGQUIT);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGPIPE);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
		log_error("blocking signals failed: %m");
		return EXIT_BOOT_FAILURE;
	}

	r = worker_setup(&w, &mask);
	if (r < 0) {
		worker_free(&w);
		return EXIT_BOOT_FAILURE;
	}

	log_info("worker %lu (generation %lu) serving on %d sockets", w.id, w.generation,
		 w.n_listeners);
	log_debug("arbiter pid %lu", w.arbiter_pid);
	notify(&w, "READY=1");

	/* From here on nothing a client or the system does may end the loop except a
	 * signal: errors are logged and the worker carries on. */
	w.now = now_ns();
	r = worker_loop(&w);

	log_info("worker %lu (generation %lu) exiting: %s", w.id, w.generation,
		 r == 0 ? w.exit_reason : "fatal error");
	worker_free(&w);
	return r;
}
