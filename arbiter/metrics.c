/* The --metrics endpoint; see metrics.h.
 *
 * One request per connection, HTTP/1.0 style: read the request head (at most
 * METRICS_REQUEST_MAX bytes), render the whole answer into memory, send it, half-close,
 * and close once the client has. Everything runs on the arbiter's loop with
 * non-blocking sockets and no timer: an idle arbiter still sleeps without a system
 * call, and a scrape costs it one accept, one read and one write.
 *
 * A connection that never sends a full request would hold its slot forever, as no
 * timer reclaims it; instead, when all slots are taken, the oldest connection is
 * dropped for the new one, so idle clients can delay a scrape but never block it.
 *
 * Connections live in a fixed array of slots that is freed only by metrics_close. A
 * connection dropped while accepting may still have an event in the batch the loop is
 * dispatching (epoll hands out a batch at a time); that event then finds a free slot,
 * which it ignores, or the slot's next connection, for which it is a spurious wakeup
 * that a non-blocking recv or send shrugs off. Freed memory is never touched. */
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "listeners.h"
#include "http.h"
#include "log.h"
#include "timeutil.h"

#define METRICS_BACKLOG 64
/* After the answer, what a client still sends (a request body we never read) is read
 * and thrown away up to this much: closing with unread data would send a reset, which
 * can destroy the answer before the client has read it. */
#define LINGER_MAX (64 * 1024)

typedef unsigned long long ull;

enum conn_state {
	CONN_FREE,     /* an unused slot */
	CONN_READING,  /* waiting for the end of the request head */
	CONN_WRITING,  /* the answer does not fit in the socket buffer yet */
	CONN_LINGERING /* answered and half-closed: waiting for the client's EOF */
};

struct metrics_conn {
	struct source src; /* SOURCE_METRICS_CONN; first, so the loop's pointer is ours */
	enum conn_state state;
	unsigned long long seq; /* when it was accepted, for dropping the oldest */
	bool want_out;		/* registered for LOOP_OUT rather than LOOP_IN */
	size_t in_len, drained;
	char *out;
	size_t out_len, out_off;
	char in[METRICS_REQUEST_MAX + 1];
};

int metrics_check_address(const char *addr, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char sub[512];
	int r = listener_parse(addr, &ss, &len, sub, sizeof(sub));

	if (r < 0)
		snprintf(err, errlen, "--metrics: %s", sub);
	return r;
}

/* Make the listener l (opened or adopted) the endpoint's; on failure l is closed. */
static int metrics_take(struct metrics *m, struct listener *l, const char *addr, char *err,
			size_t errlen)
{
	int flags, r;

	/* The workers' listeners stay blocking (their mode is the workers' call); this one
	 * is the arbiter's alone, and its loop must never block in accept(). */
	flags = fcntl(l->fd, F_GETFL);
	if (flags < 0 || fcntl(l->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		r = -errno;
		snprintf(err, errlen, "--metrics %s: %s", addr, strerror(-r));
		listener_close(l, true);
		return r;
	}
	m->conns = calloc(METRICS_MAX_CONNS, sizeof(*m->conns));
	m->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (!m->conns || m->spare_fd < 0) {
		r = m->conns ? -errno : -ENOMEM;
		snprintf(err, errlen, "--metrics %s: %s", addr, strerror(-r));
		free(m->conns);
		m->conns = NULL;
		if (m->spare_fd >= 0)
			close(m->spare_fd);
		m->spare_fd = -1;
		listener_close(l, true);
		return r;
	}
	m->listen.fd = l->fd;
	m->address = l->address;
	m->unix_path = l->unix_path;
	free(l->spec);
	free(l->fdname);
	return 0;
}

static void metrics_reset(struct metrics *m)
{
	memset(m, 0, sizeof(*m));
	m->listen.type = SOURCE_METRICS_LISTENER;
	m->listen.fd = -1;
	m->spare_fd = -1;
}

int metrics_open(struct metrics *m, const char *addr, char *err, size_t errlen)
{
	struct listener l;
	char sub[512];
	int r;

	metrics_reset(m);
	/* listener_open's socket is close-on-exec and is not in a->listeners, so no worker
	 * ever gets it: a worker could otherwise accept scrapes meant for the arbiter. */
	r = listener_open(&l, addr, METRICS_BACKLOG, sub, sizeof(sub));
	if (r < 0) {
		snprintf(err, errlen, "--metrics: %s", sub);
		return r;
	}
	return metrics_take(m, &l, addr, err, errlen);
}

int metrics_adopt(struct metrics *m, int fd, const char *addr, char *err, size_t errlen)
{
	struct listener l;
	int r;

	metrics_reset(m);
	r = listener_adopt(&l, fd, addr);
	if (r < 0) {
		snprintf(err, errlen, "--metrics %s: the inherited socket: %s", addr, strerror(-r));
		listener_close(&l, false);
		return r;
	}
	return metrics_take(m, &l, addr, err, errlen);
}

/* Close the connection and free its slot (the slot itself stays: see the top). */
static void conn_free(struct metrics *m, struct metrics_conn *c)
{
	/* io_uring keeps its own reference to a polled file: unregister before close. */
	(void)loop_del(m->loop, &c->src);
	close(c->src.fd);
	free(c->out);
	/* in[] is 4 KiB: clear only the bookkeeping, and end the old request. */
	memset(c, 0, offsetof(struct metrics_conn, in));
	c->in[0] = '\0';
	c->src.fd = -1;
	c->state = CONN_FREE;
	m->n_conns--;
}

void metrics_pause(struct metrics *m, struct loop *loop)
{
	if (m->listen.fd < 0 || m->paused)
		return;
	if (loop_del(loop, &m->listen) == 0)
		m->paused = true;
}

void metrics_resume(struct metrics *m, struct loop *loop)
{
	if (m->listen.fd < 0 || !m->paused)
		return;
	if (loop_add(loop, &m->listen, LOOP_IN) == 0)
		m->paused = false;
	else
		log_warn("--metrics: cannot watch the listener again, no longer serving: %m");
}

void metrics_close(struct metrics *m)
{
	/* Everything below exists only after a successful metrics_open. */
	if (m->listen.fd < 0)
		return;
	for (unsigned i = 0; i < METRICS_MAX_CONNS; i++)
		if (m->conns[i].state != CONN_FREE)
			conn_free(m, &m->conns[i]);
	if (m->loop && !m->paused)
		(void)loop_del(m->loop, &m->listen);
	close(m->listen.fd);
	close(m->spare_fd);
	if (m->unix_path)
		(void)unlink(m->unix_path);
	free(m->conns);
	free(m->address);
	free(m->unix_path);
	memset(m, 0, sizeof(*m));
	m->listen.fd = m->spare_fd = -1;
}

/* -- HTTP ---------------------------------------------------------------------------- */

/* Put the whole answer in c->out. Returns 0 or -ENOMEM. */
static int respond(struct metrics_conn *c, int code, const char *type, const char *body,
		   size_t body_len, bool head_only)
{
	char *hdr;
	int n = asprintf(&hdr,
			 "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "%sCache-Control: no-store\r\nConnection: close\r\n\r\n",
			 code, http_reason(code), type, body_len,
			 code == 405 ? "Allow: GET, HEAD\r\n" : "");

	if (n < 0)
		return -ENOMEM;
	if (head_only)
		body_len = 0;
	c->out = malloc((size_t)n + body_len);
	if (!c->out) {
		free(hdr);
		return -ENOMEM;
	}
	memcpy(c->out, hdr, (size_t)n);
	memcpy(c->out + n, body, body_len);
	c->out_len = (size_t)n + body_len;
	c->out_off = 0;
	free(hdr);
	return 0;
}

static int respond_text(struct metrics_conn *c, int code, const char *body, bool head_only)
{
	return respond(c, code, "text/plain; charset=utf-8", body, strlen(body), head_only);
}

static int serve_metrics(struct metrics *m, struct metrics_conn *c, bool head_only)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int r;

	if (!f)
		return -ENOMEM;
	m->view.render(m->view.ctx, f);
	if (fclose(f) != 0) {
		free(buf);
		return -ENOMEM;
	}
	r = respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", buf, len, head_only);
	free(buf);
	return r;
}

/* A request target's path is exactly lit. */
static bool path_is(const struct http_request *rq, const char *lit)
{
	return rq->path_len == strlen(lit) && memcmp(rq->path, lit, rq->path_len) == 0;
}

/* Answer the request head in c->in (NUL-terminated, complete), parsed by the worker's
 * parser (shared/http.c) but with Host optional: this endpoint names no host. */
static int handle_request(struct metrics *m, struct metrics_conn *c)
{
	struct http_request rq;
	const char *not_ready;
	bool head_only;
	int r = http_parse_request(c->in, c->in_len, HTTP_HOST_OPTIONAL, &rq);

	if (r == -EMSGSIZE)
		return respond_text(c, 431, "request head too large\n", false);
	if (r <= 0) /* malformed, not HTTP/1.x, or cut short by the client's EOF */
		return respond_text(c, 400, "bad request\n", false);
	head_only = rq.method == HTTP_METHOD_HEAD;
	if (rq.method == HTTP_METHOD_OTHER)
		return respond_text(c, 405, "only GET and HEAD\n", false);
	if (path_is(&rq, "/metrics"))
		return serve_metrics(m, c, head_only);
	if (path_is(&rq, "/healthz"))
		return respond_text(c, 200, "ok\n", head_only);
	if (path_is(&rq, "/readyz")) {
		not_ready = m->view.not_ready(m->view.ctx);
		if (!not_ready)
			return respond_text(c, 200, "ready\n", head_only);
		return respond_text(c, 503, not_ready, head_only);
	}
	return respond_text(c, 404, "not found: try /metrics, /healthz or /readyz\n", head_only);
}

static void set_events(struct metrics *m, struct metrics_conn *c, bool out)
{
	if (c->want_out == out)
		return; /* the usual case: no system call */
	if (loop_mod(m->loop, &c->src, out ? LOOP_OUT : LOOP_IN) == 0)
		c->want_out = out;
}

static void conn_write(struct metrics *m, struct metrics_conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n =
			send(c->src.fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				set_events(m, c, true);
				return;
			}
			conn_free(m, c); /* the client went away */
			return;
		}
		c->out_off += (size_t)n;
	}
	free(c->out);
	c->out = NULL;
	/* EOF tells the client the answer is complete; we close when it has closed. */
	(void)shutdown(c->src.fd, SHUT_WR);
	c->state = CONN_LINGERING;
	set_events(m, c, false);
}

static void conn_linger(struct metrics *m, struct metrics_conn *c)
{
	char buf[1024];

	for (;;) {
		ssize_t n = recv(c->src.fd, buf, sizeof(buf), 0);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0 || (c->drained += (size_t)n) > LINGER_MAX) {
			conn_free(m, c);
			return;
		}
	}
}

/* The end of the request head: a blank line. */
static bool head_complete(const char *in)
{
	return strstr(in, "\r\n\r\n") || strstr(in, "\n\n");
}

static void conn_read(struct metrics *m, struct metrics_conn *c)
{
	ssize_t n = recv(c->src.fd, c->in + c->in_len, METRICS_REQUEST_MAX - c->in_len, 0);
	int r;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0 || (n == 0 && !strchr(c->in, '\n'))) {
		conn_free(m, c); /* gone before a whole request line */
		return;
	}
	c->in_len += (size_t)n;
	c->in[c->in_len] = '\0';
	/* A client that half-closes after its request line (printf ... | nc) gets its
	 * answer too: EOF ends the head as well as a blank line does. */
	if (n > 0 && !head_complete(c->in)) {
		if (c->in_len < METRICS_REQUEST_MAX)
			return;
		r = respond_text(c, 431, "request head too large\n", false);
	} else {
		if (n == 0 && !head_complete(c->in) && c->in_len + 1 <= METRICS_REQUEST_MAX) {
			c->in[c->in_len++] = '\n'; /* the blank line the EOF stands for */
			c->in[c->in_len] = '\0';
		}
		r = handle_request(m, c);
	}
	if (r < 0) {
		log_warn("--metrics: cannot answer a request, ignoring: %s", strerror(-r));
		conn_free(m, c);
		return;
	}
	c->state = CONN_WRITING;
	conn_write(m, c);
}

void metrics_on_conn(struct metrics *m, struct source *conn, unsigned events)
{
	struct metrics_conn *c = (struct metrics_conn *)conn;

	/* LOOP_ERR needs nothing of its own: the next recv or send reports the error. */
	(void)events;
	switch (c->state) {
	case CONN_FREE:
		break; /* dropped earlier in this batch (see the top of the file) */
	case CONN_READING:
		conn_read(m, c);
		break;
	case CONN_WRITING:
		conn_write(m, c);
		break;
	case CONN_LINGERING:
		conn_linger(m, c);
		break;
	}
}

/* The slot for a new connection: a free one, else the oldest connection's. */
static struct metrics_conn *take_slot(struct metrics *m)
{
	struct metrics_conn *oldest = NULL;

	for (unsigned i = 0; i < METRICS_MAX_CONNS; i++) {
		struct metrics_conn *c = &m->conns[i];

		if (c->state == CONN_FREE)
			return c;
		if (!oldest || c->seq < oldest->seq)
			oldest = c;
	}
	conn_free(m, oldest);
	m->dropped++;
	return oldest;
}

/* Out of file descriptors, a connection would stay in the backlog and make the
 * listener readable forever, a busy loop. The spare descriptor makes room to accept
 * it and close it at once: the client sees EOF, the loop goes back to sleep. Returns
 * whether one was refused (if not, the accept loop stops rather than retry). */
static bool refuse_one(struct metrics *m)
{
	int fd;

	if (!m->accept_warned)
		log_warn("--metrics: out of file descriptors, refusing scrapes until some are "
			 "free");
	m->accept_warned = true;
	close(m->spare_fd);
	fd = accept4(m->listen.fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd >= 0)
		close(fd);
	m->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return fd >= 0;
}

int metrics_start(struct metrics *m, struct loop *loop, const struct metrics_view *view)
{
	m->loop = loop;
	m->view = *view;
	return loop_add(loop, &m->listen, LOOP_IN);
}

void metrics_on_listener(struct metrics *m)
{
	for (;;) {
		struct metrics_conn *c;
		int fd = accept4(m->listen.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if ((errno == EMFILE || errno == ENFILE) && m->spare_fd >= 0) {
				if (refuse_one(m))
					continue;
				return;
			}
			if (errno != EAGAIN && !m->accept_warned) {
				log_warn("--metrics: accept, ignoring: %m");
				m->accept_warned = true;
			}
			return;
		}
		m->accept_warned = false;
		c = take_slot(m);
		c->src.type = SOURCE_METRICS_CONN;
		c->src.fd = fd;
		if (loop_add(m->loop, &c->src, LOOP_IN) < 0) {
			close(fd);
			c->src.fd = -1;
			continue;
		}
		c->state = CONN_READING;
		c->seq = ++m->seq;
		m->n_conns++;
	}
}
