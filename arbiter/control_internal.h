/* What the files of the control socket share and nobody else sees: control.c (the
 * server's transport), control_cmd.c (the requests and what they do), control_path.c
 * (where sockets live, connecting to one) and control_client.c (`sigvisor status`).
 * The calls go one way: the transport calls the commands, the server and the client
 * call control_path.c, and the client never calls the server. */
#pragma once

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "control.h"
#include "options.h"

/* control_cmd.c: answer one request line (without its newline) on cc: the answer in
 * cc->out, or cc->follower set for "events". 0, or -ENOMEM (the connection is closed). */
int control_handle_request(struct control *c, struct control_conn *cc, const char *line);

/* control_path.c: the directories searched, in order; the caller frees nothing (static
 * buffers). */
size_t control_candidate_dirs(const char **dirs, size_t max);
/* control_path.c: connect to the socket at path without waiting: an fd (non-blocking),
 * or -errno (ECONNREFUSED: nobody listens; EAGAIN: its listen queue is full). */
int control_connect_to(const char *path);

/* control_client.c, for the clients (`sigvisor status`, `sigvisor workers`): one
 * deadline for all a client does (timeout_ms 0: none), its messages starting with name;
 * what is left of it (for poll(), -1: no deadline); connecting to the socket named
 * (control) or the one running arbiter's found in the default places (path: where, for
 * messages): an fd, or -1 said on stderr; and a request sent and its whole answer read:
 * 0 with *ret malloc'd and NUL-terminated, or -1 said. */
void control_client_begin(const char *name, uint64_t timeout_ms);
/* --timeout's value, read as every client command reads it: 0, or -EINVAL said on
 * stderr with name first. */
int control_client_timeout(const char *name, const char *value, uint64_t *ret_ms);
/* What every client command reads of its arguments: --json, --control PATH and
 * --timeout SECONDS (each also as --opt=value). Set name and the default timeout_ms
 * before the first call. */
struct control_client_args {
	const char *name; /* "sigvisor stop", for messages */
	const char *control;
	uint64_t timeout_ms;
	bool timeout_given, json;
};
/* argv[*i], one of those: 1 taken (*i moved past its value), 0 not one of them (the
 * caller's own argument, or unknown), -1 a bad value (said on stderr). */
int control_client_arg(struct control_client_args *c, int argc, char **argv, int *i);
/* "NAME: unknown argument 'BAD'" and the synopsis with the common options: EXIT_USAGE. */
int control_client_usage(const struct control_client_args *c, const char *bad,
			 const char *synopsis);
int control_client_remaining_ms(void);
int control_client_connect(const char *control, char *path, size_t len);
int control_client_ask(int fd, const char *path, const char *req, char **ret, size_t *ret_len);
/* One request on its own connection (found as control_client_connect finds it): the
 * answer, malloc'd, or NULL said on stderr. */
char *control_client_request(const char *control, char *path, size_t len, const char *req);

/* control_workers.c, for the clients that watch the pool: what "status json" says of it,
 * the top-level numbers and each worker's. */
struct pool_seen {
	char state[32]; /* the arbiter's: running, draining, ... */
	unsigned generation, target;
	unsigned ready, booting, stopping; /* of the current generation */
	size_t n;
	struct worker_seen {
		unsigned id, generation;
		int pid;
		char state[16];
	} w[SETTINGS_MAX_WORKERS * 2]; /* a reload's two generations */
};
/* Our own JSON, in the order status.c writes it. true and *s filled, or false. */
bool control_parse_pool(const char *j, struct pool_seen *s);
