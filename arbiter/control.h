/* The control socket: a unix stream socket (mode 0600) on which the arbiter answers
 * "status" and "status json" requests from its own loop, and the client side that
 * `sigvisor status` runs. Only root and the arbiter's own uid may connect
 * (SO_PEERCRED is checked on every connection).
 *
 * The socket always answers: a connection idle for CONTROL_IDLE_MS (no request, or an
 * answer it does not read) is closed on the arbiter's deadline timer, and when all
 * CONTROL_MAX_CONNS are taken the oldest idle one makes room for the new client. A
 * USR2 exec hands the listener and every accepted connection over to the new image,
 * which answers them.
 *
 * The server's transport is control.c, the requests and what they answer control_cmd.c
 * (new commands go there), the clients control_client.c (`sigvisor status`, and what
 * every client shares), control_workers.c (`sigvisor workers`) and control_reload.c
 * (`sigvisor reload` and `sigvisor upgrade`), the default place of the
 * socket and connecting to one control_path.c. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "membuf.h"
#include "ratelimit.h"
#include "sources.h"

#define CONTROL_MAX_CONNS 16
#define CONTROL_IDLE_MS	  5000

/* A follower (`sigvisor status --events`) gets at most this much queued; past it,
 * events are dropped and counted, so a stalled client never holds the loop up. */
#define CONTROL_EVENTS_BACKLOG (64 * 1024)

struct control_conn {
	struct source src; /* SOURCE_CONTROL_CONN */
	char in[256];
	size_t in_len;
	char *out;
	size_t out_len, out_off;
	size_t out_kept;       /* out is a membuf of this capacity, given back when done (0: not) */
	bool follower;	       /* an "events" request: kept open, fed by control_event() */
	unsigned long dropped; /* events that did not fit, told at the next one that does */
	uint64_t deadline_ms;  /* closed then unless it made progress (0: a follower) */
	unsigned long long seq; /* accept order: the oldest is evicted first */
	struct control_conn *next;
};

enum control_request {
	CONTROL_UNKNOWN,
	CONTROL_STATUS_TEXT, /* "status" */
	CONTROL_STATUS_JSON, /* "status json" */
	CONTROL_EVENTS,	     /* "events": follow the probes' events live */
	CONTROL_WORKERS,     /* "workers N", "workers +K", "workers -K" */
	CONTROL_RELOAD,	     /* "reload": as HUP, answered with the reload's number */
	CONTROL_UPGRADE,     /* "upgrade": as USR2, answered with the upgrade's number */
	CONTROL_REOPEN,	     /* "reopen": as USR1 */
	CONTROL_STOP,	     /* "stop" (as TERM), "stop quick" (as QUIT) */
	CONTROL_KILL_WORKER, /* "kill-worker ID|pid:PID SIG [force]" */
	CONTROL_CONFIG_TEXT, /* "config": the settings in force and their sources */
	CONTROL_CONFIG_JSON, /* "config json" */
	CONTROL_REQUEST_MAX,
};

/* Who sent a request: SO_PEERCRED's, and the peer's name (/proc/PID/comm, "?" when
 * unknown). pid 0: in a PID namespace we cannot see. */
struct control_peer {
	unsigned uid;
	int pid;
	char comm[32];
};

/* "uid U pid P (comm)": who, in a log line. */
const char *control_peer_words(const struct control_peer *peer, char *buf, size_t len);
/* A command's one log line, with the fields command, peer_uid, peer_pid and action
 * ("applied", "queued", "refused"). */
void control_log_command(const char *command, const struct control_peer *peer, const char *action,
			 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* "workers N" sets the pool's target, "workers +K" / "workers -K" change it by K. */
struct control_workers {
	char op; /* '=', '+' or '-' */
	unsigned n;
};

/* "kill-worker ID SIG", "kill-worker pid:PID SIG", either with " force": which worker
 * (its id as `status` shows it, or its pid), the signal's name as the client wrote it
 * (the arbiter resolves it), and whether a signal that would kill it is sent anyway. */
struct control_kill {
	bool by_pid;
	unsigned n;
	char sig[16];
	bool force;
};

/* What the socket answers, rendered by its owner (the arbiter) when asked. */
struct control_view {
	void *ctx;
	/* "status" or "status json": the answer appended to out (taken from the kept
	 * buffer: at 4,096 workers it is 345 KB, see membuf.h). 0 or -ENOMEM. */
	int (*render_status)(void *ctx, bool json, struct membuf *out);
	/* "events": NULL when the probes' events can be followed, else why not. */
	const char *(*events_off)(void *ctx);
	/* "workers N|+K|-K", asked by peer (already checked: root or the arbiter's uid):
	 * the pool's new target (> 0), or -1 with why refused. */
	int (*set_workers)(void *ctx, const struct control_peer *peer,
			   const struct control_workers *req, char *why, size_t whylen);
	/* "reload" / "upgrade", asked by peer (already checked): the number of the reload
	 * or upgrade that carries it (its outcome shows in "status json" under that
	 * number), or -1 with why refused. */
	int64_t (*reload)(void *ctx, const struct control_peer *peer, char *why, size_t whylen);
	int64_t (*upgrade)(void *ctx, const struct control_peer *peer, char *why, size_t whylen);
	/* "reopen", "stop [quick]", "kill-worker ...", asked by peer (already checked):
	 * 0 with the outcome in ans (one line, no newline), or -1 with why refused in ans,
	 * or -2 with why what was tried failed.
	 * Each is answered at once; the client waits for what follows (control_cmds.c). */
	int (*reopen)(void *ctx, const struct control_peer *peer, char *ans, size_t anslen);
	int (*stop)(void *ctx, const struct control_peer *peer, bool quick, char *ans,
		    size_t anslen);
	int (*kill_worker)(void *ctx, const struct control_peer *peer,
			   const struct control_kill *req, char *ans, size_t anslen);
	/* "config" or "config json": the settings in force, malloc'd. 0 or -ENOMEM. */
	int (*render_config)(void *ctx, bool json, char **ret, size_t *ret_len);
};

struct control {
	struct source listen; /* SOURCE_CONTROL_LISTENER */
	struct loop *loop;    /* set by control_start */
	struct control_view view;
	char *path;
	struct control_conn *conns;
	unsigned n_conns;
	unsigned long rejected;
	unsigned long long requests[CONTROL_REQUEST_MAX]; /* answered, by request */
	/* One line a second about clients refused (another uid) or turned away (out of
	 * fds), whoever can reach the socket and however fast they connect. */
	struct ratelimit refused_log, shed_log;
	unsigned long long seq; /* accepts so far */
	int reserve_fd;		/* given up to turn a client away when out of fds */
};

/* One request line (without its newline). Pure. */
enum control_request control_parse_request(const char *line);
/* "workers N", "workers +K", "workers -K": N and K decimal, no sign on N, no leading
 * zero, at most 9 digits. true and *ret filled, or false. Pure. */
bool control_parse_workers(const char *line, struct control_workers *ret);
/* "kill-worker ...": one spelling per request, numbers as for "workers", the signal 1
 * to 15 of [A-Z0-9+]. true and *ret filled, or false. Pure. */
bool control_parse_kill(const char *line, struct control_kill *ret);
/* The word a request is counted under in the metrics ("status", "events", "workers"). */
const char *control_request_name(enum control_request r);

/* Where the control socket goes when --control is not given: $RUNTIME_DIRECTORY,
 * else /run/sigvisor, else /tmp/sigvisor-UID, each as PID.sock. Creates the directory
 * (0700) when it is ours to create. */
int control_default_path(char *buf, size_t len, int pid);
/* The directories control_default_path tries, for a message: "/run/sigvisor, …". */
const char *control_default_dirs(void);

/* Bind path. A socket file already there is tried first: if nothing answers
 * (ECONNREFUSED) it was left by an arbiter that died and is removed; if an arbiter
 * answers, or the file is not a socket, this fails with err saying so. */
int control_open(struct control *c, const char *path, char *err, size_t errlen);
void control_close(struct control *c);
/* Drop what control_open or an upgrade left without removing the path: the arbiter
 * runs without a control socket. */
void control_forget(struct control *c);
/* Take over a listening control socket inherited through an upgrade. */
void control_adopt(struct control *c, int fd, const char *path);
/* Register the listener, and any connections adopted through an upgrade, with loop,
 * answering what view renders. */
int control_start(struct control *c, struct loop *loop, const struct control_view *view);

/* Across a USR2 exec: every accepted connection, as "controlconn ..." lines for the
 * state memfd (their fds are handed over too), and back from such a line (the part
 * after the keyword; false if it does not parse). */
void control_write_state(const struct control *c, FILE *f);
bool control_adopt_conn(struct control *c, const char *rest);
/* Clear (false) or set close-on-exec on the accepted connections. */
void control_set_cloexec(struct control *c, bool on);
/* In the new image, once its probes are set up (or not): tell followers what the exec
 * missed, or end them if the probes are gone. */
void control_after_upgrade(struct control *c);

void control_on_listener(struct control *c);
void control_on_conn(struct control *c, struct control_conn *cc, unsigned events);
/* The earliest idle deadline, or summary of refused clients not logged one by one
 * (0: none, then no timer is armed for us), and closing the connections whose deadline
 * has passed (and writing the summaries due). */
uint64_t control_next_deadline(const struct control *c);
void control_run_deadlines(struct control *c, uint64_t now);

/* One event line (no newline) to every follower. */
void control_event(struct control *c, const char *line);

/* `sigvisor status [--control PATH] [--json] [--events]` */
int status_main(int argc, char **argv);
/* `sigvisor workers [N|+K|-K] [--json] [--control PATH] [--timeout S]` */
int workers_main(int argc, char **argv);
/* `sigvisor reload|upgrade [--json] [--control PATH] [--timeout S]` (control_reload.c) */
int reload_main(int argc, char **argv);
/* `sigvisor reopen`, `sigvisor stop [--quick]`, `sigvisor kill-worker ID [--signal SIG]
 * [--force]`, `sigvisor config`, each with [--json] [--control PATH] [--timeout S]
 * (control_cmds.c) */
int reopen_main(int argc, char **argv);
int stop_main(int argc, char **argv);
int kill_worker_main(int argc, char **argv);
int config_main(int argc, char **argv);
