/* The control socket: a unix stream socket (mode 0600) on which the arbiter answers
 * "status" and "status json" requests from its own loop, and the client side that
 * `sigvisor status` runs. Only root and the arbiter's own uid may connect
 * (SO_PEERCRED is checked on every connection). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "loop.h"

#define CONTROL_MAX_CONNS 16

/* A follower (`sigvisor status --events`) gets at most this much queued; past it,
 * events are dropped and counted, so a stalled client never holds the loop up. */
#define CONTROL_EVENTS_BACKLOG (64 * 1024)

struct control_conn {
	struct source src; /* SOURCE_CONTROL_CONN */
	char in[256];
	size_t in_len;
	char *out;
	size_t out_len, out_off;
	bool follower;	       /* an "events" request: kept open, fed by control_event() */
	unsigned long dropped; /* events that did not fit, told at the next one that does */
	struct control_conn *next;
};

struct control {
	struct source listen; /* SOURCE_CONTROL_LISTENER */
	char *path;
	struct control_conn *conns;
	unsigned n_conns;
	unsigned long rejected;
	int reserve_fd; /* given up to turn a client away when out of fds */
};

enum control_request {
	CONTROL_UNKNOWN,
	CONTROL_STATUS_TEXT, /* "status" */
	CONTROL_STATUS_JSON, /* "status json" */
	CONTROL_EVENTS,	     /* "events": follow the probes' events live */
};

/* One request line (without its newline). Pure. */
enum control_request control_parse_request(const char *line);

struct arbiter;

/* Where the control socket goes when --control is not given: $RUNTIME_DIRECTORY,
 * else /run/sigvisor, else /tmp/sigvisor-UID, each as PID.sock. Creates the directory
 * (0700) when it is ours to create. */
int control_default_path(char *buf, size_t len, int pid);

int control_open(struct control *c, const char *path, char *err, size_t errlen);
void control_close(struct control *c);
/* Take over a listening control socket inherited through an upgrade. */
void control_adopt(struct control *c, int fd, const char *path);

void control_on_listener(struct arbiter *a);
void control_on_conn(struct arbiter *a, struct control_conn *cc, unsigned events);

/* One event line (no newline) to every follower. */
void control_event(struct arbiter *a, const char *line);

/* `sigvisor status [--control PATH] [--json] [--events]` */
int status_main(int argc, char **argv);
