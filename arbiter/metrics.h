/* --metrics ADDR: a small HTTP endpoint served from the arbiter's own loop (no threads):
 * /metrics (Prometheus text format), /healthz (the arbiter is alive) and /readyz (ready
 * workers exist and no shutdown is in progress). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "sources.h"

/* At most this many scrapes at once; a new one pushes out the oldest (see metrics.c). */
#define METRICS_MAX_CONNS 16
/* The longest request head read; a longer one is answered 431. */
#define METRICS_REQUEST_MAX 4096

struct metrics_conn;

/* What the endpoint shows, rendered by its owner (the arbiter) when asked. */
struct metrics_view {
	void *ctx;
	/* The /metrics body, in Prometheus' text format. */
	void (*render)(void *ctx, FILE *f);
	/* /readyz: NULL when ready, else the 503 answer's body ("not ready: ...\n"). */
	const char *(*not_ready)(void *ctx);
};

struct metrics {
	struct source listen; /* SOURCE_METRICS_LISTENER; fd -1 when off */
	/* METRICS_MAX_CONNS slots, allocated by metrics_open and kept until metrics_close
	 * (see metrics.c for why a connection's memory is never freed on its own). */
	struct metrics_conn *conns;
	unsigned n_conns; /* slots in use */
	char *address;	  /* as bound, for the log */
	char *unix_path;
	struct loop *loop; /* set by metrics_start */
	struct metrics_view view;
	int spare_fd;		/* kept open to accept (and close) when out of fds */
	bool accept_warned;	/* said so once; again only after an accept succeeded */
	bool paused;		/* the listener is out of the loop (an upgrade is waiting) */
	unsigned long long seq; /* accepts so far: the oldest connection has the lowest */
	unsigned long dropped;	/* connections pushed out by newer ones */
	double start_time;	/* the arbiter's start as Unix time, fixed at the first scrape */
};

/* Check addr (HOST:PORT, [V6]:PORT or unix:PATH) without binding, for the startup's
 * validation and --check. Returns 0 or -EINVAL with err naming the address. */
int metrics_check_address(const char *addr, char *err, size_t errlen);

/* Open the listener for addr (HOST:PORT, [V6]:PORT or unix:PATH). Returns 0 or a
 * negative errno with err naming the address and the problem: -EINVAL for an address
 * that does not parse, -EADDRINUSE when another server listens there. */
int metrics_open(struct metrics *m, const char *addr, char *err, size_t errlen);
/* The same with the listening socket fd that the image before a USR2 handed over
 * (bound to addr): it keeps its port and its queue, so no scrape is refused. */
int metrics_adopt(struct metrics *m, int fd, const char *addr, char *err, size_t errlen);
/* Stop accepting (new connections wait in the listener's queue), and start again. */
void metrics_pause(struct metrics *m, struct loop *loop);
void metrics_resume(struct metrics *m, struct loop *loop);
/* Close the listener and every connection. Accepts a struct never opened (fd -1). */
void metrics_close(struct metrics *m);

/* Serve the opened (or adopted) listener on loop, showing what view renders. */
int metrics_start(struct metrics *m, struct loop *loop, const struct metrics_view *view);

void metrics_on_listener(struct metrics *m);
/* conn is the struct source of a SOURCE_METRICS_CONN (first member of its object). */
void metrics_on_conn(struct metrics *m, struct source *conn, unsigned events);
