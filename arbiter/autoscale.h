/* --max-workers: a pool that sizes itself by its listen queues, between --workers (the
 * minimum, and the size it starts at) and --max-workers.
 *
 * The one signal that holds for any worker program, one sigvisor did not write too, is
 * how long connections wait in the accept queues of the sockets the arbiter owns
 * (listen_queue.h). A look at them is a few system calls, made on the arbiter's timer,
 * never per worker and never per turn of the loop:
 *   - while a queue was non-empty at the last look: every --scale-up-after / 2;
 *   - else while the pool is above its minimum: every --scale-down-after / 4 (at most 1 s);
 *   - else (at the minimum, nothing queued): no timer at all. The listening sockets are
 *     watched in the loop instead until a connection arrives, which wakes the arbiter
 *     once (the watch is then taken off, so a busy socket does not wake it again), and
 *     the next look comes --scale-up-after later: a burst on an idle pool is seen at
 *     once, an idle arbiter still makes no system call, and light traffic at the
 *     minimum costs at most one wake-up and one look per --scale-up-after. The watch is
 *     taken off before a reload changes the sockets and at a drain (autoscale_unwatch).
 * Without --max-workers there is no look, no timer, no watch, no system call at all.
 *
 * Up: a queue non-empty at every look for --scale-up-after adds one worker, once every
 * worker of the target is ready (one step per ready worker: no storm of workers that
 * boot while the queue waits for them), and the next step needs another
 * --scale-up-after of waiting. Down: every queue empty at every look for
 * --scale-down-after retires one worker, the way TTOU does (pool_reconcile stops the
 * newest gracefully); the next step needs another --scale-down-after. For the built-in
 * worker (ask_idle) a down step also needs a worker with no request in hand: the
 * arbiter then asks each ready worker with a WINCH (once per down step, never per request
 * nor per turn of the loop), each answers STATUS=idle or STATUS=busy: ... on its notify
 * socket, and the next look, AUTOSCALE_ASK_MS later, reads the answers: none idle (or
 * none answered: a worker held by a request cannot) and the pool keeps its size for
 * another delay. A steady load that
 * needs exactly the workers it has leaves the queue empty too, so a retired worker may
 * be missed at once: a down step undone by an up step within the down delay doubles
 * the delay before the next down step (up to 16 times), until the pool is back at its
 * minimum, so such a load costs a few restarts, not one per delay. For a COMMAND the
 * arbiter cannot see a request in hand, and for the built-in worker (which accepts as
 * fast as its loop turns) an empty queue is what spare capacity looks like from outside:
 * idle is the queue staying empty.
 *
 * TTIN, TTOU and `sigvisor workers` move the target by hand; the policy notices the change
 * at its next look and counts its delays from there, so a manual size holds at least one
 * full delay before load moves it. Middle layer: it takes the pool and the listening
 * sockets, and decides nothing during a reload or an upgrade (paused). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "listen_queue.h"
#include "listener_set.h"
#include "pool.h"

#define AUTOSCALE_MAX_BACKOFF 4
/* How long the built-in workers get to say whether they are idle. */
#define AUTOSCALE_ASK_MS 100

enum autoscale_direction { AUTOSCALE_UP, AUTOSCALE_DOWN };

/* A listening socket watched for its first connection (SOURCE_LISTEN_WATCH). */
struct autoscale_watch {
	struct source src;
};

struct autoscale {
	bool on;	   /* --max-workers given */
	bool ask_idle;	   /* the built-in worker: ask before a down step */
	uint64_t asked_ms; /* when the workers were asked (0: not asked) */
	unsigned min, max;
	uint64_t up_ms, down_ms;
	uint64_t next_ms;	/* the next look (0: none) */
	uint64_t busy_since_ms; /* a queue non-empty at every look since (0: empty last look) */
	uint64_t idle_since_ms; /* every queue empty at every look since (0: not) */
	unsigned last_target;	/* the target at the last look: a change by hand resets both */
	bool said_at_max;	/* "at the maximum" said for this episode of waiting */
	bool said_unreadable;	/* the queues could not be read: said once */
	uint64_t looks;		/* for status */
	uint64_t decisions[2];	/* by enum autoscale_direction */
	uint32_t last_queued;	/* the longest queue at the last look */
	/* A down step that load undid (an up step within the down delay after it) was one
	 * too many: the next down waits twice as long, up to AUTOSCALE_MAX_BACKOFF
	 * doublings, until the pool is back at its minimum. */
	uint64_t last_down_ms;
	unsigned backoff;
	/* At the minimum with nothing queued: the sockets watched instead of a timer. */
	struct loop *loop; /* the arbiter's (NULL: no watching, a look per delay instead) */
	struct autoscale_watch watch[LISTEN_QUEUE_MAX];
	size_t n_watch;
	uint64_t woken; /* connections that woke the arbiter from the watch, for status */
};

/* The settings (on: max > 0), at start and after each reload: the timer starts with the
 * first look one delay away. */
void autoscale_configure(struct autoscale *as, unsigned min, unsigned max, uint64_t up_ms,
			 uint64_t down_ms, bool ask_idle, uint64_t now);
/* When to look next (0: never), for the arbiter's one timer. */
uint64_t autoscale_next_deadline(const struct autoscale *as);
/* The timer came (now >= the deadline, or not yet: nothing then): look at the queues of
 * ls and grow or shrink p by one (pool_reconcile), or not, logging each decision. */
void autoscale_tick(struct autoscale *as, struct pool *p, const struct listener_set *ls,
		    bool paused, uint64_t now);
/* A connection came on a watched socket: the watch comes off, a look is due
 * --scale-up-after from now. */
void autoscale_on_connection(struct autoscale *as, uint64_t now);
/* Before the listening sockets change (a reload) or close (a drain): take the watch off;
 * a look comes --scale-up-after from now instead. */
void autoscale_unwatch(struct autoscale *as, uint64_t now);
/* A reload's or an upgrade's new settings: the size to keep, cur within [min, max]. */
unsigned autoscale_bound(unsigned cur, unsigned min, unsigned max);
const char *autoscale_direction_name(enum autoscale_direction d);
