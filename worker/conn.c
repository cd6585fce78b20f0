/* A connection of the built-in worker: read, parse, answer, flush, and close, with keep-alive
 * (up to KEEPALIVE_REQUESTS_MAX responses), pipelining and backpressure (no reading while the
 * client does not read).
 *
 * Connections are never freed inside an epoll batch (a later event of the same batch may
 * still point at them); bw_conn_close puts them on a dead list that bw_conns_recycle empties after
 * the batch, keeping up to FREE_CONNS_MAX for reuse. */
#include "builtin.h"
#include "builtin_internal.h"
#include "http.h"
#include "log.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Room reserved in the output buffer before a request is parsed: the largest response. */
#define RESPONSE_MAX 512
/* Connection structs kept for reuse; beyond this, closed ones are freed. */
#define FREE_CONNS_MAX 256
/* The response that says Connection: close on a keep-alive connection (nginx's
 * keepalive_requests default). The client reconnects, and the new connection wakes a worker
 * that is waiting, most likely a less busy one: connections a burst gave unevenly, or a
 * worker that has since been added, even out within seconds under load. */
#define KEEPALIVE_REQUESTS_MAX 1000

void bw_conn_close(struct bw_worker *w, struct bw_conn *c)
{
	if (c->src.fd < 0)
		return;
	if (c->parked) {
		bw_heap_remove(w, c);
		c->parked = false;
		bw_sleep_timer_update(w);
	}
	bw_list_unlink(w, c);
	/* The fd is not shared with anyone, so close() also takes it out of epoll. */
	close(c->src.fd);
	c->src.fd = -1;
	c->next = w->dead_conns;
	w->dead_conns = c;
	w->n_conns--;
	/* While draining too: a listener a drain could not empty stays open (out of epoll
	 * while paused), and is emptied once accepting works again (bw_listener_ready). */
	if (w->listeners_paused)
		bw_listeners_resume(w);
	bw_sweep_maybe_disarm(w);
}

void bw_conns_recycle(struct bw_worker *w)
{
	while (w->dead_conns) {
		struct bw_conn *c = w->dead_conns;

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

static void conn_set_events(struct bw_worker *w, struct bw_conn *c, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = &c->src};

	if (c->events == events)
		return;
	if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->src.fd, &ev) < 0) {
		log_warn("epoll_ctl on connection %d failed, closing it: %m", c->src.fd);
		bw_conn_close(w, c);
		return;
	}
	c->events = events;
}

/* Queue a response. The caller has made sure RESPONSE_MAX bytes are free in c->out. */
void bw_conn_respond(struct bw_worker *w, struct bw_conn *c, int status, bool head_only,
		     bool keep_alive, const char *body, size_t body_len, const char *extra)
{
	char *out = c->out + c->out_end;
	size_t space = OUT_BUF_SIZE - c->out_end;
	int n;

	if (w->draining || ++c->responses >= KEEPALIVE_REQUESTS_MAX)
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

void bw_conn_respond_text(struct bw_worker *w, struct bw_conn *c, int status, bool head_only,
			  bool keep_alive, const char *body)
{
	bw_conn_respond(w, c, status, head_only, keep_alive, body, strlen(body), "");
}

static bool path_is(const struct http_request *req, const char *path)
{
	return req->path_len == strlen(path) && memcmp(req->path, path, req->path_len) == 0;
}

/* /block?ms=N: nothing else of this worker runs meanwhile (its signals wait in the
 * signalfd, its listeners' queues grow), which is the point. */
static void block_for(struct bw_worker *w, struct bw_conn *c, unsigned ms, bool head, bool keep)
{
	struct timespec left = {ms / 1000, (long)(ms % 1000) * 1000000L};
	char body[48];
	int n;

	while (nanosleep(&left, &left) < 0 && errno == EINTR)
		;
	n = snprintf(body, sizeof(body), "blocked %u ms\n", ms);
	bw_conn_respond(w, c, 200, head, keep, body, (size_t)n, "");
}

static void conn_handle(struct bw_worker *w, struct bw_conn *c, const struct http_request *req)
{
	bool head = req->method == HTTP_METHOD_HEAD;
	unsigned int ms;

	if (req->transfer_encoding) {
		/* The body's length is unknown without decoding it: give up on the connection. */
		bw_conn_respond_text(w, c, 501, head, false, "transfer-encoding not supported\n");
		return;
	}
	if (req->method == HTTP_METHOD_OTHER) {
		static const char body[] = "method not allowed\n";

		bw_conn_respond(w, c, 405, false, req->keep_alive, body, sizeof(body) - 1,
				"Allow: GET, HEAD\r\n");
		return;
	}
	if (path_is(req, "/")) {
		bw_conn_respond(w, c, 200, head, req->keep_alive, w->root_body, w->root_body_len,
				"");
	} else if (path_is(req, "/healthz")) {
		bw_conn_respond_text(w, c, 200, head, req->keep_alive, "ok\n");
	} else if (path_is(req, "/sleep")) {
		if (http_parse_sleep_ms(req->query, req->query_len, &ms) < 0)
			bw_conn_respond_text(w, c, 400, head, req->keep_alive,
					     "usage: /sleep?ms=N with 0 <= N <= 600000\n");
		else
			bw_conn_park(w, c, ms, head, req->keep_alive);
	} else if (path_is(req, "/block")) {
		/* The whole worker held for ms, as a synchronous handler holds its process (a
		 * blocking call, CPU work): what makes connections wait in the listen queue,
		 * for tests and benchmarks of --max-workers. */
		if (http_parse_sleep_ms(req->query, req->query_len, &ms) < 0 || ms > 10000)
			bw_conn_respond_text(w, c, 400, head, req->keep_alive,
					     "usage: /block?ms=N with 0 <= N <= 10000\n");
		else
			block_for(w, c, ms, head, req->keep_alive);
	} else {
		bw_conn_respond_text(w, c, 404, head, req->keep_alive, "not found\n");
	}
}

/* Answer the complete requests in the input buffer, in order, until one has to wait. */
static void conn_process(struct bw_worker *w, struct bw_conn *c)
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
		r = http_parse_request(c->in + c->in_start, avail, 0, &req);
		if (r == 0)
			break;
		if (r < 0) {
			if (r == -EMSGSIZE)
				bw_conn_respond_text(w, c, 431, false, false,
						     "request header too large\n");
			else if (r == -EPROTONOSUPPORT)
				bw_conn_respond_text(w, c, 505, false, false,
						     "HTTP version not supported\n");
			else
				bw_conn_respond_text(w, c, 400, false, false, "bad request\n");
			break;
		}
		c->in_start += (size_t)r;
		c->body_left = req.has_content_length ? req.content_length : 0;
		conn_handle(w, c, &req);
	}
	if (c->in_start == c->in_end)
		c->in_start = c->in_end = 0;
}

static int conn_flush(struct bw_worker *w, struct bw_conn *c)
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
		bw_conn_touch(w, c);
	}
	c->out_start = c->out_end = 0;
	return 0;
}

/* Shutting down our side and reading until the peer closes, rather than close() at once,
 * keeps unread input from turning the close into an RST that can destroy the response
 * before the client has read it. */
static void conn_finish(struct bw_worker *w, struct bw_conn *c)
{
	if (c->eof || shutdown(c->src.fd, SHUT_WR) < 0) {
		bw_conn_close(w, c);
		return;
	}
	c->lingering = true;
	bw_list_append(w, c, BW_LIST_LINGER, w->draining ? DRAIN_GRACE_NS : LINGER_TIMEOUT_NS);
	conn_set_events(w, c, EPOLLIN);
}

static void conn_linger_read(struct bw_worker *w, struct bw_conn *c)
{
	for (int i = 0; i < 4; i++) {
		ssize_t n = recv(c->src.fd, c->in, sizeof(c->in), 0);

		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		break;
	}
	bw_conn_close(w, c);
}

bool bw_conn_is_idle(const struct bw_conn *c)
{
	return !c->parked && !c->want_close && !c->lingering && c->body_left == 0 &&
	       c->in_start == c->in_end && c->out_start == c->out_end;
}

/* Make all the progress possible without waiting, then register what to wait for. */
void bw_conn_run(struct bw_worker *w, struct bw_conn *c)
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
			bw_conn_close(w, c);
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
	} else if (w->draining && bw_conn_is_idle(c)) {
		bw_conn_close(w, c);
		return;
	} else {
		want = EPOLLIN;
	}
	conn_set_events(w, c, want);
}

static int conn_read(struct bw_worker *w, struct bw_conn *c)
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
	bw_conn_touch(w, c);
	return 0;
}

void bw_conn_event(struct bw_worker *w, struct bw_conn *c, uint32_t events)
{
	int r;

	if (c->src.fd < 0)
		return; /* closed earlier in this batch */
	if (c->lingering) {
		conn_linger_read(w, c);
		return;
	}
	if (events & EPOLLERR) {
		bw_conn_close(w, c);
		return;
	}
	if (c->parked) {
		/* Only a hangup is reported while parked: the client is gone. */
		if (events & EPOLLHUP)
			bw_conn_close(w, c);
		return;
	}
	if ((events & (EPOLLIN | EPOLLHUP)) && (c->events & EPOLLIN)) {
		r = conn_read(w, c);
		if (r < 0 && r != -EAGAIN) {
			bw_conn_close(w, c);
			return;
		}
	}
	bw_conn_run(w, c);
}

static struct bw_conn *conn_get(struct bw_worker *w)
{
	struct bw_conn *c = w->free_conns;

	if (c) {
		w->free_conns = c->next;
		w->n_free--;
		return c;
	}
	return malloc(sizeof(*c));
}

void bw_conn_accepted(struct bw_worker *w, const struct bw_listener *l, int fd)
{
	struct bw_conn *c = conn_get(w);
	int one = 1, r;

	if (!c) {
		if (bw_error_log_allowed(w))
			log_error("no memory for a new connection, closing it");
		close(fd);
		return;
	}
	c->src.type = BW_SOURCE_CONN;
	c->src.fd = fd;
	c->events = EPOLLIN;
	c->parked = c->want_close = c->eof = c->lingering = c->out_full = false;
	c->body_left = 0;
	c->responses = 0;
	c->in_start = c->in_end = c->out_start = c->out_end = 0;
	c->list = BW_LIST_NONE;
	c->prev = c->next = NULL;

	/* Responses go out in one send() each, so Nagle only delays pipelined answers. */
	if (l->tcp && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		log_debug("TCP_NODELAY failed, ignoring: %m");

	r = bw_epoll_add(w, &c->src, EPOLLIN);
	if (r < 0) {
		errno = -r;
		if (bw_error_log_allowed(w))
			log_error("adding a connection to epoll failed, closing it: %m");
		close(fd);
		c->src.fd = -1;
		c->next = w->dead_conns;
		w->dead_conns = c;
		return;
	}
	w->n_conns++;
	bw_conn_touch(w, c);
}
