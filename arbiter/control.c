/* The control socket's server transport: listening, accepting (only root and our uid),
 * the connections and their buffers, idle deadlines, rate-limited lines about clients
 * refused or turned away, the "events" follow stream, and the hand-over of it all across
 * a USR2 exec. What a request means and answers is control_cmd.c's; see control.h. */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control_internal.h"
#include "log.h"
#include "safefile.h"
#include "timeutil.h"

/* Room for a burst of clients while the loop is busy, or while a USR2 exec runs. */
#define CONTROL_BACKLOG 64

/* A file already at our path: remove it if it is a stale socket (a container restart
 * leaves PID.sock of the arbiter that had our pid), refuse to take it from an arbiter
 * that still answers there. */
static int remove_stale(const char *path, char *err, size_t errlen)
{
	struct stat st;
	int fd;

	if (lstat(path, &st) < 0)
		return 0; /* nothing there (or bind will say what is wrong) */
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen,
			 "control socket %s: the file exists and is not a socket (use --control "
			 "PATH)",
			 path);
		return -EEXIST;
	}
	/* An arbiter that is stopped with a full queue still counts (EAGAIN). */
	fd = control_connect_to(path);
	if (fd >= 0 || fd == -EAGAIN) {
		if (fd >= 0)
			close(fd);
		snprintf(err, errlen,
			 "control socket %s: something answers there (another sigvisor?); use "
			 "--control PATH",
			 path);
		return -EADDRINUSE;
	}
	if (fd != -ECONNREFUSED && fd != -ENOENT) {
		snprintf(err, errlen, "control socket %s: %s (use --control PATH)", path,
			 strerror(-fd));
		return fd;
	}
	if (unlink(path) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "control socket %s: cannot remove the stale socket: %s", path,
			 strerror(errno));
		return -errno;
	}
	if (fd == -ECONNREFUSED)
		log_info("removed the stale control socket %s: nothing listened on it", path);
	return 0;
}

/* Bind fd at path and listen. The socket is bound under a temporary name beside it and
 * linked to path only once it listens: bound at path itself, there is an instant when
 * the file is there and a connection is refused, and whoever waits for the file (a
 * script, a test, `sigvisor status`'s search, another arbiter checking for a stale
 * socket) takes a starting arbiter for a dead one. link() rather than rename(): a
 * socket someone else made at path meanwhile is not replaced (EEXIST, as bind says).
 * A path too long for a temporary name beside it is bound directly. */
static int bind_listening(int fd, const char *path)
{
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	bool temp = safefile_temp_name(un.sun_path, sizeof(un.sun_path), path, 0);
	mode_t old;
	int r;

	if (!temp)
		strcpy(un.sun_path, path);
	/* The mode is fixed at bind time from the umask; 0600 from the first instant. */
	old = umask(0177);
	r = bind(fd, (struct sockaddr *)&un, sizeof(un)) < 0 ? -errno : 0;
	umask(old);
	if (r < 0)
		return r;
	if (listen(fd, CONTROL_BACKLOG) < 0)
		r = -errno;
	else if (temp && link(un.sun_path, path) < 0)
		r = errno == EEXIST ? -EADDRINUSE : -errno;
	if (temp)
		(void)unlink(un.sun_path);
	return r;
}

int control_open(struct control *c, const char *path, char *err, size_t errlen)
{
	int fd, r;

	memset(c, 0, sizeof(*c));
	c->listen.type = SOURCE_CONTROL_LISTENER;
	c->listen.fd = -1;
	c->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		snprintf(err, errlen, "control socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	r = remove_stale(path, err, errlen);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "control socket: %s", strerror(-r));
		return r;
	}
	r = bind_listening(fd, path);
	if (r < 0) {
		snprintf(err, errlen, "control socket %s: %s (use --control PATH)", path,
			 strerror(-r));
		close(fd);
		return r;
	}
	c->listen.fd = fd;
	c->path = strdup(path);
	return c->path ? 0 : -ENOMEM;
}

void control_adopt(struct control *c, int fd, const char *path)
{
	memset(c, 0, sizeof(*c));
	c->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	c->listen.type = SOURCE_CONTROL_LISTENER;
	c->listen.fd = fd;
	c->path = strdup(path);
}

/* A connection that is not a follower has CONTROL_IDLE_MS from its last progress
 * (accepted, bytes read, bytes sent) to finish. A follower waits for events as long
 * as it likes. */
static void touch(struct control_conn *cc)
{
	cc->deadline_ms = cc->follower ? 0 : now_ms() + CONTROL_IDLE_MS;
}

/* What a connection waits for: its request, room for its answer, or (a follower) its
 * client's close and room for what is queued. */
static uint32_t conn_events(const struct control_conn *cc)
{
	bool pending = cc->out_off < cc->out_len;

	if (cc->follower)
		return LOOP_IN | (pending ? LOOP_OUT : 0u);
	return cc->out ? LOOP_OUT : LOOP_IN;
}

static void conn_link(struct control *c, struct control_conn *cc)
{
	cc->src.type = SOURCE_CONTROL_CONN;
	cc->seq = ++c->seq;
	touch(cc);
	cc->next = c->conns;
	c->conns = cc;
	c->n_conns++;
}

/* Deregister before close: a worker between clone3 and exec holds a copy of every fd,
 * and epoll forgets an fd only when its last copy closes, so a close alone could leave
 * events coming for a freed connection. loop may be NULL when the loop is gone. */
static void conn_free(struct loop *loop, struct control *c, struct control_conn *cc)
{
	if (loop)
		(void)loop_del(loop, &cc->src);
	for (struct control_conn **p = &c->conns; *p; p = &(*p)->next) {
		if (*p == cc) {
			*p = cc->next;
			break;
		}
	}
	close(cc->src.fd);
	if (cc->out_kept)
		membuf_give_back(cc->out, cc->out_kept);
	else
		free(cc->out);
	free(cc);
	c->n_conns--;
}

/* Drop every connection and close the sockets; the path is unlinked only if ours. */
static void release(struct control *c, bool unlink_path)
{
	while (c->conns)
		conn_free(NULL, c, c->conns);
	membuf_drop_kept();
	if (c->listen.fd >= 0)
		close(c->listen.fd);
	if (c->reserve_fd > 0)
		close(c->reserve_fd);
	c->reserve_fd = -1;
	if (unlink_path && c->path)
		(void)unlink(c->path);
	free(c->path);
	c->path = NULL;
	c->listen.fd = -1;
}

void control_close(struct control *c)
{
	release(c, true);
}

void control_forget(struct control *c)
{
	release(c, false); /* not ours to unlink: another arbiter may answer there */
	memset(c, 0, sizeof(*c));
	c->listen.type = SOURCE_CONTROL_LISTENER;
	c->listen.fd = c->reserve_fd = -1;
}

int control_start(struct control *c, struct loop *loop, const struct control_view *view)
{
	struct control_conn *cc, *next;
	int r;

	c->loop = loop;
	c->view = *view;
	if (c->listen.fd < 0)
		return 0; /* none: sigvisor runs without (control_forget) */
	r = loop_add(loop, &c->listen, LOOP_IN);
	if (r < 0)
		return r;
	for (cc = c->conns; cc; cc = next) {
		next = cc->next;
		if (loop_add(loop, &cc->src, conn_events(cc)) < 0) {
			log_warn("control socket: cannot watch a connection handed over by the "
				 "upgrade, closing it");
			conn_free(NULL, c, cc);
		}
	}
	return 0;
}

static void put_hex(FILE *f, const char *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";

	if (n == 0)
		fputc('-', f);
	for (size_t i = 0; i < n; i++) {
		fputc(digits[(unsigned char)p[i] >> 4], f);
		fputc(digits[(unsigned char)p[i] & 15], f);
	}
}

static int hex_value(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

/* Decode n hex digits at s ("-": nothing) into a new buffer of n / 2 bytes, plus a NUL. */
static int get_hex(const char *s, size_t n, char **ret, size_t *ret_len)
{
	char *b;

	*ret = NULL;
	*ret_len = 0;
	if (n == 1 && s[0] == '-')
		return 0;
	if (n % 2)
		return -EINVAL;
	b = malloc(n / 2 + 1);
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < n; i += 2) {
		int hi = hex_value(s[i]), lo = hex_value(s[i + 1]);

		if (hi < 0 || lo < 0) {
			free(b);
			return -EINVAL;
		}
		b[i / 2] = (char)(hi << 4 | lo);
	}
	b[n / 2] = '\0';
	*ret = b;
	*ret_len = n / 2;
	return 0;
}

/* "controlconn FD FOLLOWER DROPPED IN OUT": IN is the request read so far, OUT what is
 * still to be sent, both in hex ("-" when empty). */
void control_write_state(const struct control *c, FILE *f)
{
	for (const struct control_conn *cc = c->conns; cc; cc = cc->next) {
		fprintf(f, "controlconn %d %d %lu ", cc->src.fd, cc->follower ? 1 : 0, cc->dropped);
		put_hex(f, cc->in, cc->in_len);
		fputc(' ', f);
		if (cc->out)
			put_hex(f, cc->out + cc->out_off, cc->out_len - cc->out_off);
		else
			put_hex(f, NULL, 0);
		fputc('\n', f);
	}
}

bool control_adopt_conn(struct control *c, const char *rest)
{
	struct control_conn *cc;
	const char *in, *out;
	char *buf;
	size_t in_n, len;
	int fd, follower, pos = 0;
	unsigned long dropped;

	if (sscanf(rest, "%d %d %lu %n", &fd, &follower, &dropped, &pos) < 3 || !pos || fd < 0)
		return false;
	/* From here the fd is ours: close it rather than leak it to the workers. */
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	in = rest + pos;
	in_n = strcspn(in, " ");
	out = in + in_n + (in[in_n] == ' ');
	cc = calloc(1, sizeof(*cc));
	if (!cc || in[in_n] != ' ' || get_hex(in, in_n, &buf, &len) < 0) {
		free(cc);
		close(fd);
		return false;
	}
	if (len < sizeof(cc->in) && buf)
		memcpy(cc->in, buf, len);
	free(buf);
	cc->in_len = len;
	if (len >= sizeof(cc->in) || get_hex(out, strlen(out), &cc->out, &cc->out_len) < 0) {
		free(cc);
		close(fd);
		return false;
	}
	cc->src.fd = fd;
	cc->follower = follower != 0;
	cc->dropped = dropped;
	conn_link(c, cc);
	return true;
}

void control_set_cloexec(struct control *c, bool on)
{
	for (struct control_conn *cc = c->conns; cc; cc = cc->next)
		(void)fcntl(cc->src.fd, F_SETFD, on ? FD_CLOEXEC : 0);
}

/* " (and N more since the last such line)" for a rate-limited line, "" for none. */
static const char *held_note(uint64_t held, char *buf, size_t len)
{
	if (!held)
		return "";
	snprintf(buf, len, " (and %llu more since the last such line)", (unsigned long long)held);
	return buf;
}

/* Out of file descriptors: the waiting connection would keep the level-triggered
 * listener readable and the loop spinning. Give up the reserve fd, accept the
 * connection and close it at once (the client sees EOF), then take the reserve back.
 * Returns false when nothing was waiting: accept4 says EMFILE before it looks at the
 * queue, so EMFILE alone does not mean a client waits. */
static bool shed_one(struct control *c)
{
	uint64_t held;
	char note[64];
	int fd;

	if (c->reserve_fd >= 0)
		close(c->reserve_fd);
	fd = accept4(c->listen.fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd >= 0)
		close(fd);
	c->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	c->rejected++;
	if (ratelimit_pass(&c->shed_log, now_ms(), &held))
		log_warn("control socket: out of file descriptors, turned a client away%s",
			 held_note(held, note, sizeof(note)));
	return true;
}

/* Which connection goes first when room is needed: one that has not sent its request,
 * then a follower, then one that does not read its answer. */
static int evict_rank(const struct control_conn *cc)
{
	return cc->follower ? 1 : cc->out ? 2 : 0;
}

/* The table is full. A burst of clients fills it before the loop has read their
 * requests, so first serve the requests that have arrived; if that frees nothing, close
 * the oldest of the most idle kind, so that the new client is always served. */
static void make_room(struct control *c)
{
	struct control_conn *cc, *next, *victim = NULL;

	for (cc = c->conns; cc; cc = next) {
		next = cc->next; /* control_on_conn frees nothing but cc */
		if (!cc->follower && !cc->out)
			control_on_conn(c, cc, LOOP_IN);
	}
	if (c->n_conns < CONTROL_MAX_CONNS)
		return;
	for (cc = c->conns; cc; cc = cc->next)
		if (!victim || evict_rank(cc) < evict_rank(victim) ||
		    (evict_rank(cc) == evict_rank(victim) && cc->seq < victim->seq))
			victim = cc;
	log_info("control socket: %d connections open, closed the oldest idle one for a new "
		 "client",
		 CONTROL_MAX_CONNS);
	conn_free(c->loop, c, victim);
}

void control_on_listener(struct control *c)
{
	for (;;) {
		struct ucred cred = {.uid = (uid_t)-1};
		socklen_t len = sizeof(cred);
		struct control_conn *cc;
		int fd = accept4(c->listen.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if ((errno == EMFILE || errno == ENFILE) && shed_one(c))
				continue;
			if (errno != EAGAIN && errno != EINTR)
				log_warn("control socket accept, ignoring: %m");
			return;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
		    (cred.uid != 0 && cred.uid != geteuid())) {
			uint64_t held;
			char note[64];

			c->rejected++;
			/* Said, not only closed: a client let in by a wider mode on the socket
			 * learns why. A fresh socket's buffer takes it without waiting. */
			if (cred.uid != (uid_t)-1) {
				char msg[160];
				int n = snprintf(msg, sizeof(msg),
						 "error: refused: not allowed: uid %u is neither "
						 "root nor the arbiter's uid (%u)\n",
						 (unsigned)cred.uid, (unsigned)geteuid());

				(void)!send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
				/* The request already sent, read and dropped: closing on
				 * unread data resets the connection, and the client would
				 * not get to read why. A request is one short line: a few
				 * reads at most, whatever a client keeps writing. */
				for (int k = 0;
				     k < 4 && recv(fd, msg, sizeof(msg), MSG_DONTWAIT) > 0; k++)
					;
			}
			if (ratelimit_pass(&c->refused_log, now_ms(), &held))
				log_warn("control socket: refused a client with uid %u%s",
					 (unsigned)cred.uid, held_note(held, note, sizeof(note)));
			close(fd);
			continue;
		}
		if (c->n_conns >= CONTROL_MAX_CONNS)
			make_room(c);
		cc = calloc(1, sizeof(*cc));
		if (!cc) {
			close(fd);
			continue;
		}
		cc->src.type = SOURCE_CONTROL_CONN;
		cc->src.fd = fd;
		if (loop_add(c->loop, &cc->src, LOOP_IN) < 0) {
			close(fd);
			free(cc);
			continue;
		}
		conn_link(c, cc);
	}
}

/* Send what is pending; returns true when the connection is finished. */
static bool flush_out(struct control_conn *cc)
{
	while (cc->out_off < cc->out_len) {
		ssize_t n = send(cc->src.fd, cc->out + cc->out_off, cc->out_len - cc->out_off,
				 MSG_NOSIGNAL);

		if (n < 0)
			return errno != EAGAIN && errno != EINTR;
		cc->out_off += (size_t)n;
		touch(cc);
	}
	return true;
}

/* Queue text for a follower, compacting what was sent; false when it does not fit. */
static bool queue_out(struct control_conn *cc, const char *text, size_t len)
{
	char *nb;

	if (cc->out_off) {
		memmove(cc->out, cc->out + cc->out_off, cc->out_len - cc->out_off);
		cc->out_len -= cc->out_off;
		cc->out_off = 0;
	}
	if (cc->out_len + len > CONTROL_EVENTS_BACKLOG)
		return false;
	nb = realloc(cc->out, cc->out_len + len);
	if (!nb)
		return false;
	memcpy(nb + cc->out_len, text, len);
	cc->out = nb;
	cc->out_kept = 0; /* resized: no longer a membuf of that capacity */
	cc->out_len += len;
	return true;
}

void control_event(struct control *c, const char *line)
{
	struct control_conn *cc, *next;

	for (cc = c->conns; cc; cc = next) {
		char note[96];

		next = cc->next;
		if (!cc->follower)
			continue;
		if (cc->dropped) {
			int n = snprintf(note, sizeof(note),
					 "(%lu events dropped: reading too slowly)\n", cc->dropped);

			if (!queue_out(cc, note, (size_t)n)) {
				cc->dropped++;
				continue;
			}
			cc->dropped = 0;
		}
		if (!queue_out(cc, line, strlen(line)) || !queue_out(cc, "\n", 1)) {
			cc->dropped++;
			continue;
		}
		if (flush_out(cc) && cc->out_off < cc->out_len) {
			conn_free(c->loop, c, cc); /* the client went away */
			continue;
		}
		(void)loop_mod(c->loop, &cc->src,
			       LOOP_IN | (cc->out_off < cc->out_len ? LOOP_OUT : 0u));
	}
}

/* A follower: more output may come; the client closing its end ends it. */
static void follower_io(struct control *c, struct control_conn *cc, unsigned events)
{
	char buf[64];

	if ((events & (LOOP_IN | LOOP_ERR)) &&
	    (recv(cc->src.fd, buf, sizeof(buf), MSG_DONTWAIT) == 0 || (events & LOOP_ERR))) {
		conn_free(c->loop, c, cc);
		return;
	}
	if (flush_out(cc) && cc->out_off < cc->out_len) {
		conn_free(c->loop, c, cc);
		return;
	}
	(void)loop_mod(c->loop, &cc->src, LOOP_IN | (cc->out_off < cc->out_len ? LOOP_OUT : 0u));
}

void control_on_conn(struct control *c, struct control_conn *cc, unsigned events)
{
	char *nl;
	ssize_t n;

	if (cc->follower) {
		follower_io(c, cc, events);
		return;
	}
	if (cc->out) {
		if (flush_out(cc))
			conn_free(c->loop, c, cc);
		return;
	}
	n = recv(cc->src.fd, cc->in + cc->in_len, sizeof(cc->in) - 1 - cc->in_len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_free(c->loop, c, cc);
		return;
	}
	cc->in_len += (size_t)n;
	cc->in[cc->in_len] = '\0';
	touch(cc);
	nl = strchr(cc->in, '\n');
	if (!nl) {
		if (cc->in_len == sizeof(cc->in) - 1)
			conn_free(c->loop, c, cc); /* no request is that long */
		return;
	}
	*nl = '\0';
	if (control_handle_request(c, cc, cc->in) < 0) {
		conn_free(c->loop, c, cc);
		return;
	}
	if (cc->follower) {
		static const char hello[] = "following signal events (Ctrl-C to stop)\n";

		touch(cc); /* no deadline: it waits for events */
		(void)queue_out(cc, hello, sizeof(hello) - 1);
		follower_io(c, cc, 0);
		return;
	}
	(void)shutdown(cc->src.fd, SHUT_RD);
	if (flush_out(cc)) {
		conn_free(c->loop, c, cc);
		return;
	}
	(void)loop_mod(c->loop, &cc->src, LOOP_OUT);
	(void)events;
}

uint64_t control_next_deadline(const struct control *c)
{
	uint64_t next = 0;

	for (const struct control_conn *cc = c->conns; cc; cc = cc->next)
		next = earlier_deadline(next, cc->deadline_ms);
	next = earlier_deadline(next, ratelimit_deadline(&c->refused_log));
	return earlier_deadline(next, ratelimit_deadline(&c->shed_log));
}

void control_run_deadlines(struct control *c, uint64_t now)
{
	struct control_conn *cc, *next;
	uint64_t held;

	if ((held = ratelimit_flush(&c->refused_log, now)))
		log_warn("control socket: refused %llu more clients of another uid since the "
			 "last such line",
			 (unsigned long long)held);
	if ((held = ratelimit_flush(&c->shed_log, now)))
		log_warn("control socket: out of file descriptors, turned %llu more clients "
			 "away since the last such line",
			 (unsigned long long)held);

	for (cc = c->conns; cc; cc = next) {
		next = cc->next;
		if (!cc->deadline_ms || cc->deadline_ms > now)
			continue;
		log_info("control socket: closed a connection idle for %d s (%s)",
			 CONTROL_IDLE_MS / 1000,
			 cc->out ? "its answer was not read" : "no request came");
		conn_free(c->loop, c, cc);
	}
}

void control_after_upgrade(struct control *c)
{
	const char *events_off = c->view.events_off(c->view.ctx);
	struct control_conn *cc, *next;

	for (cc = c->conns; cc; cc = next) {
		char note[384];
		int n;

		next = cc->next;
		if (!cc->follower)
			continue;
		if (!events_off)
			n = snprintf(note, sizeof(note),
				     "(sigvisor upgraded in place: events during the exec were "
				     "not seen)\n");
		else
			n = snprintf(
				note, sizeof(note),
				"(sigvisor upgraded in place, and the probes are off now: %s)\n",
				events_off);
		if (!queue_out(cc, note, (size_t)n < sizeof(note) ? (size_t)n : sizeof(note) - 1) &&
		    events_off) {
			conn_free(c->loop, c, cc);
			continue;
		}
		if (events_off) {
			/* An answer like any other now: sent, then the connection closes. */
			cc->follower = false;
			touch(cc);
			(void)shutdown(cc->src.fd, SHUT_RD);
		}
		if (flush_out(cc) && (!cc->follower || cc->out_off < cc->out_len)) {
			conn_free(c->loop, c, cc);
			continue;
		}
		(void)loop_mod(c->loop, &cc->src, conn_events(cc));
	}
}
