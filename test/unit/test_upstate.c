/* Unit tests for the numbers of the upgrade state (arbiter/upstate.c): what one image
 * writes, the next reads back exactly, field by field; version 1's positional line is
 * still read; a name this image does not know is skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "upstate.h"

/* Read back what f holds, line by line, as upgrade.c does; returns the lines not taken. */
static unsigned read_all(char *text, struct upstate_numbers *n)
{
	unsigned other = 0;

	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
		if (!upstate_read_line(line, n))
			other++;
	return other;
}

static char *write_all(const struct upstate_numbers *n)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	assert_int_equal(upstate_write(f, n), 0);
	assert_int_equal(fclose(f), 0);
	return buf;
}

static void test_round_trip_keeps_every_field(void **state)
{
	struct upstate_numbers in, out;
	uint64_t *w = (uint64_t *)&in;
	char *text;

	(void)state;
	/* every field a different value, none zero: a field the writer or the reader
	 * forgets, or two that trade places, shows */
	for (size_t i = 0; i < sizeof(in) / sizeof(uint64_t); i++)
		w[i] = 1000003ULL * (i + 1) + (i << 40);
	in.signals_received[0] = in.signals_ignored[0] = 0; /* no signal 0 */
	text = write_all(&in);
	memset(&out, 0, sizeof(out));
	assert_int_equal(read_all(text, &out), 0);
	assert_memory_equal(&in, &out, sizeof(in));
	free(text);
}

static void test_values_are_named(void **state)
{
	struct upstate_numbers in = {.pool.spawned = 7, .upgrade_rollbacks = 2};
	char *text;

	(void)state;
	in.signals_received[1] = 3; /* HUP */
	text = write_all(&in);
	assert_non_null(strstr(text, "counter spawned 7\n"));
	assert_non_null(strstr(text, "counter upgrade_rollbacks 2\n"));
	assert_non_null(strstr(text, "signal 1 3 0\n"));
	assert_null(strstr(text, "signal 2 ")); /* zeros are left out */
	free(text);
}

static void test_unknown_names_are_skipped_missing_ones_stay(void **state)
{
	char text[] = "counter spawned 5\ncounter from_the_future 9\ncounter killed 2\n"
		      "pool 4 2 2\n";
	struct upstate_numbers n = {.pool.reloads = 11};

	(void)state;
	assert_int_equal(read_all(text, &n), 1); /* the pool line is someone else's */
	assert_int_equal(n.pool.spawned, 5);
	assert_int_equal(n.pool.killed, 2);
	assert_int_equal(n.pool.reloads, 11);
}

static void test_version_1_is_read(void **state)
{
	char text[] = "started 123456\n"
		      "counters 1 2 3 4 5 6 7 8 9 10 11 12 13 14\n"
		      "rollbacks 15\n"
		      "signal 10 4 1\n";
	struct upstate_numbers n = {0};

	(void)state;
	assert_int_equal(read_all(text, &n), 0);
	assert_int_equal(n.started_ms, 123456);
	assert_int_equal(n.pool.spawned, 1);
	assert_int_equal(n.pool.spawn_errors, 2);
	assert_int_equal(n.pool.exited, 3);
	assert_int_equal(n.pool.exited_clean, 4);
	assert_int_equal(n.pool.exited_error, 5);
	assert_int_equal(n.pool.exited_signal, 6);
	assert_int_equal(n.pool.killed, 7);
	assert_int_equal(n.pool.replaced, 8);
	assert_int_equal(n.pool.boot_failures_total, 9);
	assert_int_equal(n.pool.orphans_reaped, 10);
	assert_int_equal(n.pool.reloads, 11);
	assert_int_equal(n.pool.reload_failures, 12);
	assert_int_equal(n.upgrades, 13);
	assert_int_equal(n.upgrade_refused, 14);
	assert_int_equal(n.upgrade_rollbacks, 15);
	assert_int_equal(n.signals_received[10], 4);
	assert_int_equal(n.signals_ignored[10], 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_keeps_every_field),
		cmocka_unit_test(test_values_are_named),
		cmocka_unit_test(test_unknown_names_are_skipped_missing_ones_stay),
		cmocka_unit_test(test_version_1_is_read),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
