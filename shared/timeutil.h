/* Monotonic time and duration parsing, shared by both sides. */
#pragma once

#include <stdint.h>
#include <time.h>

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

static inline uint64_t now_us(void)
{
	return now_ns() / 1000;
}

static inline uint64_t now_ms(void)
{
	return now_ns() / 1000000;
}

/* The earlier of two deadlines in ms, 0 meaning none. */
static inline uint64_t earlier_deadline(uint64_t a, uint64_t b)
{
	return !a || (b && b < a) ? b : a;
}

/* "30", "0.5", "1.25s", "250ms" -> milliseconds. Plain numbers are seconds, as in
 * gunicorn. Returns 0 or -EINVAL/-ERANGE. */
int parse_duration_ms(const char *s, uint64_t *ret_ms);
