/* See ratelimit.h. */
#include "ratelimit.h"

bool ratelimit_pass(struct ratelimit *rl, uint64_t now, uint64_t *ret_held)
{
	if (rl->logged && now - rl->last_ms < RATELIMIT_INTERVAL_MS) {
		rl->held++;
		return false;
	}
	*ret_held = rl->held;
	rl->held = 0;
	rl->last_ms = now;
	rl->logged = true;
	return true;
}

uint64_t ratelimit_deadline(const struct ratelimit *rl)
{
	return rl->held ? rl->last_ms + RATELIMIT_INTERVAL_MS : 0;
}

uint64_t ratelimit_flush(struct ratelimit *rl, uint64_t now)
{
	uint64_t held = rl->held;

	if (!held || now < ratelimit_deadline(rl))
		return 0;
	rl->held = 0;
	rl->last_ms = now;
	return held;
}
