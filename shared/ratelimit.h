/* One log line per interval for a kind of event that anyone able to reach a socket can
 * repeat at will (a refused client, a rejected notify datagram): a flood costs the log
 * one line a second, and how many were not logged is told, in the next line or in a
 * summary on the caller's timer when no next one comes. Pure: the caller passes the
 * time. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define RATELIMIT_INTERVAL_MS 1000

struct ratelimit {
	uint64_t last_ms; /* when a line was last written, */
	bool logged;	  /* if one was */
	uint64_t held;	  /* events since then that were not logged */
};

/* An event at now: true when it is to be logged, with *ret_held the events held back
 * before it (then forgotten); false when it is only counted. */
bool ratelimit_pass(struct ratelimit *rl, uint64_t now, uint64_t *ret_held);

/* When the events held back are to be summed up (0: none are held). */
uint64_t ratelimit_deadline(const struct ratelimit *rl);

/* On the caller's timer: at or past the deadline, the number held back, to be logged
 * as one summary line (which counts as the interval's line), and forgotten; else 0. */
uint64_t ratelimit_flush(struct ratelimit *rl, uint64_t now);
