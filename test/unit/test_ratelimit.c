/* The one rate limit for log lines that a flood could repeat (shared/ratelimit.c): a
 * line a second at most, and every event accounted for, in a line or a summary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ratelimit.h"

static void test_first_passes_then_held_for_the_interval(void **state)
{
	struct ratelimit rl = {0};
	uint64_t held = 99;

	(void)state;
	assert_true(ratelimit_pass(&rl, 5000, &held));
	assert_int_equal(held, 0);
	assert_int_equal(ratelimit_deadline(&rl), 0); /* nothing held: no timer */
	for (int i = 0; i < 1999; i++)
		assert_false(ratelimit_pass(&rl, 5000 + (uint64_t)i % 1000, &held));
	assert_int_equal(ratelimit_deadline(&rl), 6000);
	/* the next line past the interval says how many it stands for */
	assert_true(ratelimit_pass(&rl, 6000, &held));
	assert_int_equal(held, 1999);
	assert_int_equal(ratelimit_deadline(&rl), 0);
}

static void test_summary_on_the_timer_when_the_flood_stops(void **state)
{
	struct ratelimit rl = {0};
	uint64_t held;

	(void)state;
	assert_true(ratelimit_pass(&rl, 1000, &held));
	assert_false(ratelimit_pass(&rl, 1200, &held));
	assert_false(ratelimit_pass(&rl, 1300, &held));
	assert_int_equal(ratelimit_flush(&rl, 1999), 0); /* not yet */
	assert_int_equal(ratelimit_flush(&rl, 2000), 2);
	assert_int_equal(ratelimit_deadline(&rl), 0);
	assert_int_equal(ratelimit_flush(&rl, 5000), 0); /* said once */
	/* the summary counts as the interval's line */
	assert_false(ratelimit_pass(&rl, 2500, &held));
	assert_true(ratelimit_pass(&rl, 3000, &held));
	assert_int_equal(held, 1);
}

static void test_time_zero_is_a_time(void **state)
{
	struct ratelimit rl = {0};
	uint64_t held;

	(void)state;
	assert_true(ratelimit_pass(&rl, 0, &held));
	assert_false(ratelimit_pass(&rl, 0, &held)); /* 0 is not "never logged" */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_passes_then_held_for_the_interval),
		cmocka_unit_test(test_summary_on_the_timer_when_the_flood_stops),
		cmocka_unit_test(test_time_zero_is_a_time),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
