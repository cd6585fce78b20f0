/* The arbiter's event loop: a small backend interface (redis ae style) chosen at run
 * time, and a type tag first in every registered object (sd-event style), so one
 * dispatch switch knows what became ready.
 *
 * The loop has no timers of its own: deadlines go through one timerfd that the
 * arbiter arms for the earliest one, so an idle arbiter sleeps in the kernel with no
 * timeout and makes no system calls at all. */
#pragma once

#include <stdint.h>

/* Embedded first in every object given to the loop. The loop hands type back with
 * the event and gives it no meaning: what the sources are is named by the layer that
 * makes them (sources.h), so this file knows nothing above it. */
struct source {
	unsigned type;
	int fd;
};

#define LOOP_IN	 1u
#define LOOP_OUT 2u
#define LOOP_ERR 4u

struct loop_event {
	struct source *source;
	uint32_t events;
};

struct loop;

struct loop_backend {
	const char *name;
	int (*init)(struct loop *l);
	void (*fini)(struct loop *l);
	int (*add)(struct loop *l, struct source *s, uint32_t events);
	int (*mod)(struct loop *l, struct source *s, uint32_t events);
	int (*del)(struct loop *l, struct source *s);
	/* Waits for events (timeout_ms < 0: forever); returns how many were stored. */
	int (*wait)(struct loop *l, struct loop_event *out, int max, int timeout_ms);
};

#define LOOP_MAX_EVENTS 64

struct loop {
	const struct loop_backend *backend;
	int fd;
	void *priv;
	/* The batch loop_wait returned. A handler may free another source that has an
	 * event later in the same batch (a control connection closed from a BPF event):
	 * loop_del blanks its entries (source NULL), which the caller skips. */
	struct loop_event batch[LOOP_MAX_EVENTS];
	int n_batch;
};

extern const struct loop_backend loop_backend_epoll;
extern const struct loop_backend loop_backend_io_uring;

/* Whether io_uring can be used here, found by setting up a ring (never from the kernel
 * version). Returns 0, or a negative errno with why filled in (ENOSYS, a seccomp
 * profile, kernel.io_uring_disabled). */
int loop_uring_probe(char *why, unsigned long whylen);

int loop_init(struct loop *l, const struct loop_backend *backend);
void loop_fini(struct loop *l);

static inline int loop_add(struct loop *l, struct source *s, uint32_t events)
{
	return l->backend->add(l, s, events);
}

static inline int loop_mod(struct loop *l, struct source *s, uint32_t events)
{
	return l->backend->mod(l, s, events);
}

static inline int loop_del(struct loop *l, struct source *s)
{
	for (int i = 0; i < l->n_batch; i++)
		if (l->batch[i].source == s)
			l->batch[i].source = 0;
	return l->backend->del(l, s);
}

/* Wait for events into l->batch; returns how many, or a negative errno. */
static inline int loop_wait(struct loop *l, int timeout_ms)
{
	int n = l->backend->wait(l, l->batch, LOOP_MAX_EVENTS, timeout_ms);

	l->n_batch = n > 0 ? n : 0;
	return n;
}

/* The backend for --loop: auto and epoll give epoll; io_uring gives io_uring or fails
 * (never a silent fallback when it was asked for by name). On failure returns NULL
 * with a message in err saying why and what to do. */
const struct loop_backend *loop_backend_select(int kind, char *err, unsigned long errlen);
