/* The control socket's requests and what each does: the request line parsed, and the
 * answer rendered by the view (the arbiter) into the connection's buffer. The transport
 * (control.c) reads the line and sends the answer; a new command goes here: a value
 * of enum control_request (control.h), its word in control_parse_request, its case in
 * control_handle_request. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control_internal.h"
#include "log.h"

enum control_request control_parse_request(const char *line)
{
	if (strcmp(line, "status") == 0)
		return CONTROL_STATUS_TEXT;
	if (strcmp(line, "status json") == 0)
		return CONTROL_STATUS_JSON;
	if (strcmp(line, "events") == 0)
		return CONTROL_EVENTS;
	if (control_parse_workers(line, &(struct control_workers){0}))
		return CONTROL_WORKERS;
	if (strcmp(line, "reload") == 0)
		return CONTROL_RELOAD;
	if (strcmp(line, "upgrade") == 0)
		return CONTROL_UPGRADE;
	if (strcmp(line, "reopen") == 0)
		return CONTROL_REOPEN;
	if (strcmp(line, "stop") == 0 || strcmp(line, "stop quick") == 0)
		return CONTROL_STOP;
	if (control_parse_kill(line, &(struct control_kill){0}))
		return CONTROL_KILL_WORKER;
	if (strcmp(line, "config") == 0)
		return CONTROL_CONFIG_TEXT;
	if (strcmp(line, "config json") == 0)
		return CONTROL_CONFIG_JSON;
	return CONTROL_UNKNOWN;
}

/* A decimal number at *p, no leading zero, at most 9 digits: the end, or NULL. */
static const char *parse_number(const char *p, unsigned *ret)
{
	unsigned n = 0;
	size_t digits = 0;

	if (p[0] == '0' && p[1] >= '0' && p[1] <= '9')
		return NULL; /* one spelling per number */
	for (; *p >= '0' && *p <= '9' && digits < 9; p++, digits++)
		n = n * 10 + (unsigned)(*p - '0');
	if (!digits || (*p >= '0' && *p <= '9'))
		return NULL;
	*ret = n;
	return p;
}

bool control_parse_workers(const char *line, struct control_workers *ret)
{
	const char *p;

	if (strncmp(line, "workers ", 8) != 0)
		return false;
	p = line + 8;
	ret->op = *p == '+' || *p == '-' ? *p++ : '=';
	p = parse_number(p, &ret->n);
	return p && !*p;
}

bool control_parse_kill(const char *line, struct control_kill *ret)
{
	const char *p;
	size_t k = 0;

	if (strncmp(line, "kill-worker ", 12) != 0)
		return false;
	p = line + 12;
	ret->by_pid = strncmp(p, "pid:", 4) == 0;
	p = parse_number(ret->by_pid ? p + 4 : p, &ret->n);
	if (!p || *p++ != ' ')
		return false;
	for (; k < sizeof(ret->sig) - 1 &&
	       ((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '+');
	     p++, k++)
		ret->sig[k] = *p;
	ret->sig[k] = '\0';
	if (!k)
		return false;
	ret->force = strcmp(p, " force") == 0;
	return ret->force || !*p;
}

const char *control_request_name(enum control_request r)
{
	switch (r) {
	case CONTROL_STATUS_TEXT:
	case CONTROL_STATUS_JSON:
		return "status";
	case CONTROL_EVENTS:
		return "events";
	case CONTROL_WORKERS:
		return "workers";
	case CONTROL_RELOAD:
		return "reload";
	case CONTROL_UPGRADE:
		return "upgrade";
	case CONTROL_REOPEN:
		return "reopen";
	case CONTROL_STOP:
		return "stop";
	case CONTROL_KILL_WORKER:
		return "kill-worker";
	case CONTROL_CONFIG_TEXT:
	case CONTROL_CONFIG_JSON:
		return "config";
	case CONTROL_UNKNOWN:
	case CONTROL_REQUEST_MAX:
		break;
	}
	return "unknown";
}

/* Who is on the other end of cc. A command that changes something checks the uid
 * itself rather than trusting the accept-time check alone: a connection handed over
 * through a USR2 was accepted by another image. The name is /proc/PID/comm, not
 * cmdline: reading another process's cmdline takes its mm lock, which that process
 * can hold (a fault on a stalled FUSE file), and this runs on the arbiter's loop. */
static int peer_of(const struct control_conn *cc, struct control_peer *peer)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	char path[64];
	ssize_t n = -1;
	int fd;

	if (getsockopt(cc->src.fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -errno;
	peer->uid = cred.uid;
	peer->pid = cred.pid;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)cred.pid);
	fd = cred.pid > 0 ? open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) : -1;
	if (fd >= 0) {
		n = read(fd, peer->comm, sizeof(peer->comm) - 1);
		close(fd);
	}
	if (n <= 0)
		n = snprintf(peer->comm, sizeof(peer->comm), "?");
	peer->comm[n] = '\0';
	peer->comm[strcspn(peer->comm, "\n")] = '\0';
	for (char *c = peer->comm; *c; c++)
		if (*c < 0x20 || *c >= 0x7f)
			*c = '?';
	return 0;
}

static int answer(struct control_conn *cc, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int answer(struct control_conn *cc, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&cc->out, fmt, ap);
	va_end(ap);
	if (n < 0) {
		cc->out = NULL;
		return -ENOMEM;
	}
	cc->out_len = (size_t)n;
	return 0;
}

/* Root or our own uid may change things: false (answered with the refusal) for
 * another, or when the peer cannot be told. */
static bool may_change(struct control_conn *cc, struct control_peer *peer, int *ret)
{
	int r = peer_of(cc, peer);

	if (r < 0) {
		*ret = answer(cc, "error: refused: cannot tell who asks: %s\n", strerror(-r));
		return false;
	}
	if (peer->uid != 0 && peer->uid != (unsigned)geteuid()) {
		*ret = answer(cc,
			      "error: refused: not allowed: uid %u is neither root nor the "
			      "arbiter's uid (%u)\n",
			      peer->uid, (unsigned)geteuid());
		return false;
	}
	return true;
}

/* "status", "status json": rendered into the kept buffer, which conn_free gives back. */
static int status(struct control *c, struct control_conn *cc, bool json)
{
	struct membuf b;
	int r;

	membuf_take(&b);
	r = c->view.render_status(c->view.ctx, json, &b);
	if (r < 0) {
		membuf_give_back(b.p, b.cap);
		return r;
	}
	cc->out = b.p;
	cc->out_len = b.len;
	cc->out_kept = b.cap;
	return 0;
}

/* "workers ...": only root or our own uid, told so; the view applies it. */
static int workers(struct control *c, struct control_conn *cc, const char *line)
{
	struct control_workers req;
	struct control_peer peer;
	char why[256];
	int r;

	(void)control_parse_workers(line, &req);
	if (!may_change(cc, &peer, &r))
		return r;
	r = c->view.set_workers(c->view.ctx, &peer, &req, why, sizeof(why));
	if (r < 0)
		return answer(cc, "error: refused: %s\n", why);
	return answer(cc, "ok target %d\n", r);
}

/* "reload", "upgrade": as "workers", only root or our own uid; the view starts it and
 * says its number, which the client then looks for in "status json". */
static int reload_or_upgrade(struct control *c, struct control_conn *cc, bool upgrade)
{
	const char *what = upgrade ? "upgrade" : "reload";
	struct control_peer peer;
	char why[256];
	int64_t id;
	int r;

	if (!may_change(cc, &peer, &r))
		return r;
	id = (upgrade ? c->view.upgrade : c->view.reload)(c->view.ctx, &peer, why, sizeof(why));
	if (id < 0)
		return answer(cc, "error: refused: %s\n", why);
	return answer(cc, "ok %s %lld\n", what, (long long)id);
}

/* "reopen", "stop", "kill-worker": as "workers", only root or our own uid; the view
 * acts and says the outcome ("ok ...") or why not ("error: refused: ..."). */
static int change(struct control *c, struct control_conn *cc, enum control_request req,
		  const char *line)
{
	struct control_peer peer;
	struct control_kill kill;
	char ans[512];
	int r;

	if (!may_change(cc, &peer, &r))
		return r;
	if (req == CONTROL_REOPEN) {
		r = c->view.reopen(c->view.ctx, &peer, ans, sizeof(ans));
	} else if (req == CONTROL_STOP) {
		r = c->view.stop(c->view.ctx, &peer, strcmp(line, "stop quick") == 0, ans,
				 sizeof(ans));
	} else {
		(void)control_parse_kill(line, &kill);
		r = c->view.kill_worker(c->view.ctx, &peer, &kill, ans, sizeof(ans));
	}
	/* -1: refused, nothing done; -2: tried and failed (a log file that did not reopen) */
	return answer(cc, "%s%s\n",
		      r == -1 ? "error: refused: "
		      : r < 0 ? "error: failed: "
			      : "ok ",
		      ans);
}

int control_handle_request(struct control *c, struct control_conn *cc, const char *line)
{
	enum control_request req = control_parse_request(line);
	const char *events_off;
	char safe[65];
	size_t k = 0;

	c->requests[req]++;
	switch (req) {
	case CONTROL_STATUS_TEXT:
	case CONTROL_STATUS_JSON:
		return status(c, cc, req == CONTROL_STATUS_JSON);
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
	case CONTROL_WORKERS:
		return workers(c, cc, line);
	case CONTROL_RELOAD:
	case CONTROL_UPGRADE:
		return reload_or_upgrade(c, cc, req == CONTROL_UPGRADE);
	case CONTROL_REOPEN:
	case CONTROL_STOP:
	case CONTROL_KILL_WORKER:
		return change(c, cc, req, line);
	case CONTROL_CONFIG_TEXT:
	case CONTROL_CONFIG_JSON:
		return c->view.render_config(c->view.ctx, req == CONTROL_CONFIG_JSON, &cc->out,
					     &cc->out_len);
	case CONTROL_UNKNOWN:
	case CONTROL_REQUEST_MAX:
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

const char *control_peer_words(const struct control_peer *peer, char *buf, size_t len)
{
	snprintf(buf, len, "uid %u pid %d (%s)", peer->uid, peer->pid, peer->comm);
	return buf;
}

void control_log_command(const char *command, const struct control_peer *peer, const char *action,
			 const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_fields(LOG_LEVEL_INFO,
		   LOG_FIELDS(LOG_STR("command", command), LOG_INT("peer_uid", peer->uid),
			      LOG_INT("peer_pid", peer->pid), LOG_STR("action", action)),
		   "%s", msg);
}
