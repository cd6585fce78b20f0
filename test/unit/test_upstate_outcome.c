/* Unit tests for the reloads' and upgrades' outcomes (arbiter/upstate.c), which
 * `sigvisor reload` and `sigvisor upgrade` look for by number: the last few kept, the
 * oldest going first; each read back across an exec exactly, reason and all; one line
 * each whatever the reason holds; a reload's line never taken for an upgrade's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "upstate.h"

static char *write_kind(const char *kind, const struct upstate_outcomes *h)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	assert_int_equal(upstate_outcomes_write(f, kind, h), 0);
	assert_int_equal(fclose(f), 0);
	return buf;
}

static void test_keeps_the_last_ones_and_finds_by_number(void **state)
{
	struct upstate_outcomes h = {0};

	(void)state;
	assert_null(upstate_outcome_find(&h, 1));
	for (uint64_t id = 1; id <= UPSTATE_OUTCOMES + 3; id++)
		upstate_outcome_push(&h, id, id % 2 ? "ok" : "abandoned", NULL, id + 1, 0);
	assert_int_equal(h.n, UPSTATE_OUTCOMES);
	assert_int_equal(h.o[0].id, 4); /* the three oldest went */
	assert_null(upstate_outcome_find(&h, 3));
	assert_string_equal(upstate_outcome_find(&h, 6)->result, "abandoned");
	assert_int_equal(upstate_outcome_find(&h, UPSTATE_OUTCOMES + 3)->generation,
			 UPSTATE_OUTCOMES + 4);
}

static void test_round_trip_across_an_exec(void **state)
{
	struct upstate_outcomes in = {0}, out = {0}, other = {0};
	char *text;

	(void)state;
	upstate_outcome_push(&in, 7, "config-error",
			     "/etc/sv.conf:2: option '--workers': 'many' is not a whole number", 3,
			     0);
	upstate_outcome_push(&in, 8, "ok", "", 4, 0);
	upstate_outcome_push(&in, 9, "abandoned", "a worker  of the new generation failed ", 4, 0);
	text = write_kind("reload", &in);
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		assert_false(upstate_outcome_read_line(line, "upgrade", &other));
		assert_true(upstate_outcome_read_line(line, "reload", &out));
	}
	assert_int_equal(other.n, 0);
	assert_memory_equal(&in, &out, sizeof(in));
	free(text);
}

static void test_an_upgrade_keeps_its_reload(void **state)
{
	struct upstate_outcomes in = {0}, out = {0};
	char *text;

	(void)state;
	upstate_outcome_push(&in, 2, "ok", NULL, 1, 5);
	text = write_kind("upgrade", &in);
	assert_string_equal(text, "outcome upgrade 2 1 5 ok \n");
	text[strcspn(text, "\n")] = '\0';
	assert_true(upstate_outcome_read_line(text, "upgrade", &out));
	assert_int_equal(out.n, 1);
	assert_int_equal(out.o[0].reload, 5);
	assert_string_equal(out.o[0].reason, "");
	free(text);
}

static void test_one_line_whatever_the_reason_holds(void **state)
{
	struct upstate_outcomes h = {0};
	char *text;

	(void)state;
	upstate_outcome_push(&h, 1, "rolled back", "--pid /x\n: gone\r\x1b[2J", 1, 0);
	assert_string_equal(h.o[0].result, "rolled-back");
	assert_string_equal(h.o[0].reason, "--pid /x?: gone??[2J");
	text = write_kind("upgrade", &h);
	assert_int_equal(strchr(text, '\n') - text, (long)strlen(text) - 1);
	free(text);
}

static void test_a_broken_line_is_taken_and_dropped(void **state)
{
	struct upstate_outcomes h = {0};

	(void)state;
	assert_true(upstate_outcome_read_line("outcome reload x 1 2 ok", "reload", &h));
	assert_true(upstate_outcome_read_line("outcome reload 1 2", "reload", &h));
	assert_false(upstate_outcome_read_line("outcome reloads 1 2 0 ok", "reload", &h));
	assert_false(upstate_outcome_read_line("counter reloads 1", "reload", &h));
	assert_int_equal(h.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keeps_the_last_ones_and_finds_by_number),
		cmocka_unit_test(test_round_trip_across_an_exec),
		cmocka_unit_test(test_an_upgrade_keeps_its_reload),
		cmocka_unit_test(test_one_line_whatever_the_reason_holds),
		cmocka_unit_test(test_a_broken_line_is_taken_and_dropped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
