/* Control socket server and the `sigvisor status` client; see control.h. */
#include "control.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "exitstatus.h"
#include "log.h"
#include "timeutil.h"

/* Room for a burst of clients while the loop is busy, or while a USR2 exec runs. */
#define CONTROL_BACKLOG 64

static int ensure_private_dir(const char *dir)
{
	struct stat st;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	if (lstat(dir, &st) < 0)
		return -errno;
	/* In a shared /tmp, refuse a directory someone else planted for us. */
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid())
		return -EPERM;
	/* There already, on a read-only file system (a read-only root): try the next. */
	return access(dir, W_OK) < 0 ? -errno : 0;
}

/* The directories searched, in order; the caller frees nothing (static buffers). */
static size_t candidate_dirs(const char **dirs, size_t max)
{
	static char runtime[1024], tmp[64];
	const char *rd = getenv("RUNTIME_DIRECTORY");
	size_t n = 0;

	if (rd && *rd && n < max) {
		/* systemd may pass several, colon-separated: ours is the first. */
		snprintf(runtime, sizeof(runtime), "%.*s", (int)strcspn(rd, ":"), rd);
		dirs[n++] = runtime;
	}
	if (n < max)
		dirs[n++] = "/run/sigvisor";
	snprintf(tmp, sizeof(tmp), "/tmp/sigvisor-%u", (unsigned)geteuid());
	if (n < max)
		dirs[n++] = tmp;
	return n;
}

const char *control_default_dirs(void)
{
	static char out[1200];
	const char *dirs[3];
	size_t n = candidate_dirs(dirs, 3);

	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%s", i ? ", " : "",
			 dirs[i]);
	return out;
}

int control_default_path(char *buf, size_t len, int pid)
{
	const char *dirs[3];
	size_t n = candidate_dirs(dirs, 3);
	bool has_runtime = n == 3;
	int r = -ENOENT;

	for (size_t i = 0; i < n; i++) {
		/* $RUNTIME_DIRECTORY is made for us by systemd; the others are ours. */
		if (has_runtime && i == 0)
			r = access(dirs[0], W_OK) < 0 ? -errno : 0;
		else
			r = ensure_private_dir(dirs[i]);
		if (r == 0) {
			snprintf(buf, len, "%s/%d.sock", dirs[i], pid);
			return 0;
		}
	}
	return r;
}

/* Connect to the socket at path without waiting: an fd (non-blocking) when something
 * listens there, else -errno. ECONNREFUSED is a socket file nobody listens on: the
 * arbiter that made it died. EAGAIN is a listener whose queue is full: a blocking
 * connect() would wait for it to accept, for as long as it likes. Only a connection
 * tells: its pid says nothing when it was PID 1 in another PID namespace, or when that
 * pid has been reused. */
static int connect_to(const char *path)
{
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	int fd, r;

	if (strlen(path) >= sizeof(un.sun_path))
		return -ENAMETOOLONG;
	strcpy(un.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&un, sizeof(un)) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

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
	fd = connect_to(path);
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

int control_open(struct control *c, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	mode_t old;
	int fd, r;

	memset(c, 0, sizeof(*c));
	c->listen.type = SOURCE_CONTROL_LISTENER;
	c->listen.fd = -1;
	c->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (strlen(path) >= sizeof(un.sun_path)) {
		snprintf(err, errlen, "control socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(un.sun_path, path);
	r = remove_stale(path, err, errlen);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "control socket: %s", strerror(-r));
		return r;
	}
	/* The mode is fixed at bind time from the umask; 0600 from the first instant. */
	old = umask(0177);
	r = bind(fd, (struct sockaddr *)&un, sizeof(un)) < 0 ? -errno : 0;
	umask(old);
	if (r == 0 && listen(fd, CONTROL_BACKLOG) < 0)
		r = -errno;
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
	free(cc->out);
	free(cc);
	c->n_conns--;
}

/* Drop every connection and close the sockets; the path is unlinked only if ours. */
static void release(struct control *c, bool unlink_path)
{
	while (c->conns)
		conn_free(NULL, c, c->conns);
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
		struct ucred cred;
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

enum control_request control_parse_request(const char *line)
{
	if (strcmp(line, "status") == 0)
		return CONTROL_STATUS_TEXT;
	if (strcmp(line, "status json") == 0)
		return CONTROL_STATUS_JSON;
	if (strcmp(line, "events") == 0)
		return CONTROL_EVENTS;
	return CONTROL_UNKNOWN;
}

static int handle_request(struct control *c, struct control_conn *cc, const char *line)
{
	const char *events_off;
	char safe[65];
	size_t k = 0;

	switch (control_parse_request(line)) {
	case CONTROL_STATUS_TEXT:
		return c->view.render_status(c->view.ctx, false, &cc->out, &cc->out_len);
	case CONTROL_STATUS_JSON:
		return c->view.render_status(c->view.ctx, true, &cc->out, &cc->out_len);
	case CONTROL_EVENTS:
		events_off = c->view.events_off(c->view.ctx);
		if (events_off) {
			if (asprintf(&cc->out,
				     "error: events come from the BPF probes, which are "
				     "off: %s\n",
				     events_off) < 0)
				return -ENOMEM;
			cc->out_len = strlen(cc->out);
			return 0;
		}
		cc->follower = true;
		return 0;
	case CONTROL_UNKNOWN:
		break;
	}
	/* echo a printable prefix only: the reply goes to someone's terminal */
	for (; k < sizeof(safe) - 1 && line[k]; k++)
		safe[k] = (line[k] >= 0x20 && line[k] < 0x7f) ? line[k] : '?';
	safe[k] = '\0';
	if (asprintf(&cc->out, "error: unknown request '%s'\n", safe) < 0)
		return -ENOMEM;
	cc->out_len = strlen(cc->out);
	return 0;
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
	if (handle_request(c, cc, cc->in) < 0) {
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

/* -- the client: `sigvisor status` ---------------------------------------------------
 *
 * root's `sigvisor status` looks in other users' directories, where anything may
 * listen. So it waits on nothing it has not checked and nothing without a bound: the
 * connect does not wait (a full listen queue says EAGAIN), a socket found by the search
 * is asked only once its listener is seen to be a sigvisor of the directory's owner,
 * one deadline (--timeout) covers the whole search and the answer, and an answer
 * stops at STATUS_MAX_ANSWER. */

/* A status answer is a few hundred bytes a worker: 4 MiB is some 20,000 workers. */
#define STATUS_MAX_ANSWER (4u << 20)
/* Sockets skipped are told one line each, up to this many; then only how many. */
#define STATUS_MAX_SKIP_LINES 20

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* Linux 6.5; glibc 2.36's headers predate it */
#endif

/* How long `sigvisor status` may take in all, search and answer (--timeout): an
 * arbiter that is stopped (SIGSTOP, a debugger) or hung must not hang the probe that
 * asks. 0: no limit. */
static uint64_t client_timeout_ms = 10000;
static uint64_t client_deadline_ms; /* 0: none */
static unsigned long client_skipped;

/* What is left of the deadline, for poll(): -1 without one. */
static int remaining_ms(void)
{
	uint64_t now = now_ms();

	if (!client_deadline_ms)
		return -1;
	if (now >= client_deadline_ms)
		return 0;
	return client_deadline_ms - now > INT_MAX ? INT_MAX : (int)(client_deadline_ms - now);
}

static void skipped(const char *path, const char *why)
{
	if (client_skipped++ < STATUS_MAX_SKIP_LINES)
		fprintf(stderr, "sigvisor status: skipped %s: %s\n", path, why);
}

/* The pid a pidfd stands for: -1 once that process has exited, 0 when it is in a PID
 * namespace we cannot see (fdinfo's "Pid:" line). */
static pid_t pidfd_pid(int pidfd)
{
	char p[64], line[128];
	pid_t pid = -1;
	FILE *f;

	snprintf(p, sizeof(p), "/proc/self/fdinfo/%d", pidfd);
	f = fopen(p, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Pid: %d", &pid) == 1)
			break;
	fclose(f);
	return pid;
}

/* The identity of a program, with AT_STATX_DONT_SYNC: a binary on FUSE or NFS is not
 * asked about (its server could stall us), the cached attributes say enough. */
static int exe_stat(const char *link, struct statx *stx, char *path, size_t len)
{
	ssize_t n;

	if (statx(AT_FDCWD, link, AT_STATX_DONT_SYNC,
		  STATX_TYPE | STATX_MODE | STATX_UID | STATX_INO, stx) < 0)
		return -errno;
	n = readlink(link, path, len - 1);
	if (n < 0)
		return -errno;
	path[n] = '\0';
	/* A binary replaced on disk since it started (a package upgrade) */
	if ((size_t)n > strlen(" (deleted)") &&
	    strcmp(path + n - strlen(" (deleted)"), " (deleted)") == 0)
		path[n - strlen(" (deleted)")] = '\0';
	return 0;
}

/* Whether process pid runs sigvisor: the very file we run (the same device and inode),
 * or the file now or once at the same path as ours, owned by root or us and writable by
 * nobody else: the same install, one side upgraded (a USR2 execs the new binary, and
 * an arbiter not yet upgraded still runs the old one, deleted). A copy of sigvisor
 * elsewhere does not count: anyone can make one, and patch it. */
static bool runs_sigvisor(pid_t pid, char *why, size_t len)
{
	struct statx self, peer;
	char link[64], self_path[PATH_MAX], peer_path[PATH_MAX];
	int r;

	snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
	r = exe_stat(link, &peer, peer_path, sizeof(peer_path));
	if (r < 0) {
		snprintf(why, len, "cannot see what the process listening there (pid %d) runs: %s",
			 (int)pid, strerror(-r));
		return false;
	}
	r = exe_stat("/proc/self/exe", &self, self_path, sizeof(self_path));
	if (r < 0) {
		snprintf(why, len, "cannot see what this program is (/proc/self/exe): %s",
			 strerror(-r));
		return false;
	}
	if (self.stx_dev_major == peer.stx_dev_major && self.stx_dev_minor == peer.stx_dev_minor &&
	    self.stx_ino == peer.stx_ino)
		return true;
	if (strcmp(self_path, peer_path) == 0 && (peer.stx_uid == 0 || peer.stx_uid == geteuid()) &&
	    !(peer.stx_mode & (S_IWGRP | S_IWOTH)))
		return true;
	snprintf(why, len, "the process listening there (pid %d) runs %.200s, not this sigvisor",
		 (int)pid, peer_path);
	return false;
}

/* Whether the process listening on fd is the socket file's owner (st, looked at before
 * connecting: the file may have been swapped since) and runs sigvisor; if not, why. */
static bool peer_trusted(int fd, const struct stat *st, char *why, size_t len)
{
	struct ucred cred;
	socklen_t cl = sizeof(cred), pl = sizeof(int);
	int pidfd = -1;
	pid_t pid;
	bool ok;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
		snprintf(why, len, "cannot tell who listens there: %s", strerror(errno));
		return false;
	}
	if (cred.uid != st->st_uid) {
		snprintf(why, len, "the process listening there has uid %u, the socket file uid %u",
			 (unsigned)cred.uid, (unsigned)st->st_uid);
		return false;
	}
	/* The listener's pidfd holds its pid: while that process lives, /proc/PID is it
	 * and no other. SO_PEERCRED's pid alone may have been reused (older kernels). */
	pid = cred.pid;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &pl) == 0)
		pid = pidfd_pid(pidfd);
	else if (errno != ENOPROTOOPT)
		pid = -1; /* the kernel has no process to give */
	if (pid == 0)
		snprintf(why, len,
			 "the process listening there is in another PID namespace: cannot tell "
			 "it is a sigvisor");
	else if (pid < 0)
		snprintf(why, len, "the process that made the socket listen has exited");
	ok = pid > 0 && runs_sigvisor(pid, why, len);
	if (ok && pidfd >= 0 && pidfd_pid(pidfd) != pid) {
		snprintf(why, len, "the process listening there exited as it was looked at");
		ok = false;
	}
	if (pidfd >= 0)
		close(pidfd);
	return ok;
}

/* The default directories, and when we are root every /tmp/sigvisor-UID that that uid
 * owns (anyone may make one in /tmp). */
#define MAX_SEARCH_DIRS 256

static size_t search_dirs(const char **dirs, size_t max, glob_t *g)
{
	size_t n = candidate_dirs(dirs, max < 3 ? max : 3);

	memset(g, 0, sizeof(*g));
	if (geteuid() != 0 || glob("/tmp/sigvisor-*", GLOB_ONLYDIR | GLOB_NOSORT, NULL, g) != 0)
		return n;
	for (size_t i = 0; i < g->gl_pathc && n < max; i++) {
		const char *uid_s = g->gl_pathv[i] + strlen("/tmp/sigvisor-");
		char *end;
		unsigned long uid = strtoul(uid_s, &end, 10);
		struct stat st;

		if (end == uid_s || *end || lstat(g->gl_pathv[i], &st) < 0 ||
		    !S_ISDIR(st.st_mode) || st.st_uid != uid)
			continue;
		dirs[n++] = g->gl_pathv[i];
	}
	return n;
}

/* One socket file found in a directory owned by dir_uid (root, us, or when we are root
 * the uid whose directory it is): connected, an fd, if a sigvisor of that uid listens
 * there; -ENOENT for a stale socket (nobody listens: the
 * arbiter that made it died), skipped quietly; -EPERM for one skipped with a reason. */
static int try_candidate(const char *path, uid_t dir_uid)
{
	char why[512];
	struct stat st;
	int fd;

	if (lstat(path, &st) < 0)
		return -ENOENT; /* removed as we looked */
	if (!S_ISSOCK(st.st_mode)) {
		skipped(path, "not a socket");
		return -EPERM;
	}
	if (st.st_uid != dir_uid) {
		snprintf(why, sizeof(why),
			 "the socket file is owned by uid %u, its directory by %u",
			 (unsigned)st.st_uid, (unsigned)dir_uid);
		skipped(path, why);
		return -EPERM;
	}
	fd = connect_to(path);
	if (fd == -ECONNREFUSED || fd == -ENOENT)
		return -ENOENT;
	if (fd < 0) {
		snprintf(why, sizeof(why), "%s",
			 fd == -EAGAIN ? "its listen queue is full (a stopped or hung process?)"
				       : strerror(-fd));
		skipped(path, why);
		return -EPERM;
	}
	if (!peer_trusted(fd, &st, why, sizeof(why))) {
		skipped(path, why);
		close(fd);
		return -EPERM;
	}
	return fd;
}

/* Find the one running arbiter's socket in the default directories: connected
 * (*ret_fd) and 0, -ENOENT for none, -EEXIST for several. A socket is known to be live
 * only by connecting: the arbiter that made PID.sock may have been PID 1 in another
 * PID namespace, so its pid proves nothing. */
static int find_socket(char *buf, size_t len, int *ret_fd)
{
	const char *dirs[MAX_SEARCH_DIRS];
	glob_t g;
	size_t n = search_dirs(dirs, MAX_SEARCH_DIRS, &g), found = 0;
	bool late = false;
	uid_t me = geteuid();

	*ret_fd = -ENOENT;
	for (size_t i = 0; i < n && !late; i++) {
		struct dirent *de;
		struct stat st;
		bool seen = false;
		DIR *d = NULL;
		int dfd;

		for (size_t k = 0; k < i; k++)
			seen = seen || strcmp(dirs[k], dirs[i]) == 0;
		dfd = seen ? -1 : open(dirs[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (dfd >= 0 && fstat(dfd, &st) == 0 && me != 0 && st.st_uid != 0 &&
		    st.st_uid != me) {
			char why[96];

			snprintf(why, sizeof(why), "the directory is owned by uid %u",
				 (unsigned)st.st_uid);
			skipped(dirs[i], why);
		} else if (dfd >= 0) {
			d = fdopendir(dfd);
		}
		if (!d) {
			if (dfd >= 0)
				close(dfd);
			continue;
		}
		while ((de = readdir(d))) {
			char *end;
			long pid = strtol(de->d_name, &end, 10);
			char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
			int fd;

			if (end == de->d_name || strcmp(end, ".sock") != 0 || pid <= 0)
				continue;
			/* A directory filled with sockets must not keep us past the deadline. */
			if (remaining_ms() == 0) {
				late = true;
				break;
			}
			if (snprintf(path, sizeof(path), "%s/%s", dirs[i], de->d_name) >=
			    (int)sizeof(path))
				continue;
			fd = try_candidate(path, st.st_uid);
			if (fd < 0)
				continue;
			if (found++ == 0) {
				snprintf(buf, len, "%s", path);
				*ret_fd = fd;
				continue;
			}
			close(fd);
			fprintf(stderr,
				"sigvisor status: several arbiters run: %s and %s; pick one with "
				"--control\n",
				buf, path);
		}
		closedir(d);
	}
	globfree(&g);
	if (client_skipped > STATUS_MAX_SKIP_LINES)
		fprintf(stderr, "sigvisor status: skipped %lu more sockets\n",
			client_skipped - STATUS_MAX_SKIP_LINES);
	if (late)
		fprintf(stderr,
			"sigvisor status: gave up the search after %.1f s (--timeout changes the "
			"wait)\n",
			(double)client_timeout_ms / 1000.0);
	if (found > 1 && *ret_fd >= 0)
		close(*ret_fd);
	return found == 1 ? 0 : found == 0 ? -ENOENT : -EEXIST;
}

/* --control PATH: the socket named, whoever listens there. A full listen queue may
 * empty: try again until the deadline. */
static int connect_named(const char *path)
{
	for (;;) {
		int fd = connect_to(path), wait = remaining_ms();

		if (fd != -EAGAIN || wait == 0)
			return fd;
		(void)poll(NULL, 0, wait < 0 || wait > 10 ? 10 : wait);
	}
}

/* Wait for events on fd until the deadline: 1 ready, 0 deadline, -errno. */
static int wait_fd(int fd, short events)
{
	struct pollfd p = {.fd = fd, .events = events};

	for (;;) {
		int n = poll(&p, 1, remaining_ms());

		if (n >= 0)
			return n;
		if (errno != EINTR)
			return -errno;
	}
}

static void no_answer(const char *path, const char *what)
{
	fprintf(stderr,
		"sigvisor status: %s: %s within %.1f s (is the arbiter stopped or hung? --timeout "
		"changes the wait)\n",
		path, what, (double)client_timeout_ms / 1000.0);
}

static int send_request(int fd, const char *path, const char *req)
{
	size_t off = 0, len = strlen(req);

	while (off < len) {
		ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		int r;

		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno != EAGAIN && errno != EINTR) {
			fprintf(stderr, "sigvisor status: %s: sending the request failed: %m\n",
				path);
			return -1;
		}
		r = wait_fd(fd, POLLOUT);
		if (r <= 0) {
			no_answer(path, "the request could not be sent");
			return -1;
		}
	}
	return 0;
}

/* `sigvisor status --events`: copy what comes as it comes, even into a pipe. */
static int follow(int fd, const char *path)
{
	char buf[8192];
	bool first = true;
	ssize_t n;

	/* Events come when they come: the deadline was for connecting only. */
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		if (first && n >= 6 && memcmp(buf, "error:", 6) == 0) {
			fprintf(stderr, "sigvisor status: %.*s", (int)n, buf);
			return EXIT_FATAL;
		}
		first = false;
		if (write(STDOUT_FILENO, buf, (size_t)n) != n)
			return EXIT_FATAL;
	}
	if (n < 0) {
		fprintf(stderr, "sigvisor status: %s: the connection failed: %m\n", path);
		return EXIT_FATAL;
	}
	if (first) {
		fprintf(stderr,
			"sigvisor status: %s: the arbiter closed the connection without "
			"answering\n",
			path);
		return EXIT_FATAL;
	}
	return EXIT_OK;
}

/* A status answer: read all of it (up to STATUS_MAX_ANSWER, before the deadline)
 * before printing any, so a slow reader of our output (a pager) never keeps the
 * arbiter's connection open. */
static int read_answer(int fd, const char *path)
{
	size_t len = 0, cap = 16384;
	char *buf = malloc(cap);
	ssize_t n = 0;
	int r = EXIT_FATAL;

	if (!buf) {
		fprintf(stderr, "sigvisor status: out of memory\n");
		return EXIT_FATAL;
	}
	for (;;) {
		int w;

		if (len == cap) {
			char *nb = cap < STATUS_MAX_ANSWER ? realloc(buf, cap * 2) : NULL;

			if (cap >= STATUS_MAX_ANSWER) {
				fprintf(stderr,
					"sigvisor status: %s: the answer is larger than %u MiB: "
					"not "
					"a sigvisor's, giving up\n",
					path, STATUS_MAX_ANSWER >> 20);
				goto out;
			}
			if (!nb) {
				fprintf(stderr, "sigvisor status: out of memory\n");
				goto out;
			}
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len);
		if (n > 0) {
			len += (size_t)n;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			break;
		w = wait_fd(fd, POLLIN);
		if (w == 0) {
			no_answer(path, "no answer");
			goto out;
		}
		if (w < 0) {
			errno = -w;
			n = -1;
			break;
		}
	}
	if (n < 0)
		fprintf(stderr, "sigvisor status: %s: the connection failed: %m\n", path);
	else if (len == 0)
		fprintf(stderr,
			"sigvisor status: %s: the arbiter closed the connection without "
			"answering\n",
			path);
	else if (len >= 6 && memcmp(buf, "error:", 6) == 0)
		fprintf(stderr, "sigvisor status: %.*s", (int)len, buf);
	else if (fwrite(buf, 1, len, stdout) == len && fflush(stdout) == 0)
		r = EXIT_OK;
out:
	free(buf);
	return r;
}

int status_main(int argc, char **argv)
{
	const char *control = NULL;
	bool json = false, events = false;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	const char *req;
	int fd, r;

	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (strcmp(argv[i], "--control") == 0 && i + 1 < argc)
			control = argv[++i];
		else if (strncmp(argv[i], "--control=", 10) == 0)
			control = argv[i] + 10;
		else if (strcmp(argv[i], "--events") == 0)
			events = true;
		else if ((strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) ||
			 strncmp(argv[i], "--timeout=", 10) == 0) {
			const char *v = argv[i][9] == '=' ? argv[i] + 10 : argv[++i];

			if (parse_duration_ms(v, &client_timeout_ms) < 0) {
				fprintf(stderr,
					"sigvisor status: --timeout '%s': not a duration (5, 0.5, "
					"250ms; 0: no limit)\n",
					v);
				return EXIT_USAGE;
			}
		} else {
			fprintf(stderr,
				"sigvisor status: unknown argument '%s'\n"
				"usage: sigvisor status [--control PATH] [--timeout SECONDS] "
				"[--json | "
				"--events]\n",
				argv[i]);
			return EXIT_USAGE;
		}
	}
	client_deadline_ms = client_timeout_ms ? now_ms() + client_timeout_ms : 0;
	if (control) {
		snprintf(path, sizeof(path), "%s", control);
		fd = connect_named(control);
		if (fd == -EAGAIN) {
			no_answer(path, "its listen queue stayed full: no connection");
			return EXIT_FATAL;
		}
	} else {
		r = find_socket(path, sizeof(path), &fd);
		if (r == -ENOENT) {
			if (geteuid() == 0)
				fprintf(stderr, "sigvisor status: no running sigvisor found in "
						"$RUNTIME_DIRECTORY, /run/sigvisor or any "
						"/tmp/sigvisor-UID (pass --control PATH)\n");
			else
				fprintf(stderr,
					"sigvisor status: no running sigvisor found in "
					"$RUNTIME_DIRECTORY, /run/sigvisor or /tmp/sigvisor-%u "
					"(pass "
					"--control PATH)\n",
					(unsigned)geteuid());
			return EXIT_FATAL;
		}
		if (r < 0)
			return EXIT_FATAL;
	}
	if (fd < 0) {
		fprintf(stderr, "sigvisor status: cannot connect to %s: %s (%s)\n", path,
			strerror(-fd),
			fd == -ECONNREFUSED ? "a stale socket: the sigvisor that made it is gone"
					    : "is sigvisor running?");
		return EXIT_FATAL;
	}
	req = events ? "events\n" : json ? "status json\n" : "status\n";
	if (send_request(fd, path, req) < 0) {
		close(fd);
		return EXIT_FATAL;
	}
	r = events ? follow(fd, path) : read_answer(fd, path);
	close(fd);
	return r;
}
