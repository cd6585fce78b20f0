/* --metrics ADDR: a small HTTP endpoint served from the arbiter's own loop (no threads):
 * /metrics (Prometheus text format), /healthz (the arbiter is alive) and /readyz (ready
 * workers exist and no shutdown is in progress). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "loop.h"

struct metrics_conn;

struct metrics {
	struct source listen; /* SOURCE_METRICS_LISTENER; fd -1 when off */
	struct metrics_conn *conns;
	unsigned n_conns;
	char *address;	/* as bound, for the log */
	char *unix_path;
};

struct arbiter;

/* Open the listener for addr (HOST:PORT, [V6]:PORT or unix:PATH). Returns 0 or a
 * negative errno with err naming the address and the problem. */
int metrics_open(struct metrics *m, const char *addr, char *err, size_t errlen);
void metrics_close(struct metrics *m);

void metrics_on_listener(struct arbiter *a);
/* conn is the struct source of a SOURCE_METRICS_CONN (first member of its object). */
void metrics_on_conn(struct arbiter *a, struct source *conn, unsigned events);
