/* The one JSON string writer (shared/json.c): escapes, and invalid UTF-8 as U+FFFD so
 * that `status --json` stays valid when a worker's STATUS= was cut mid-character. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json.h"

static char *quoted(const char *s)
{
	static char buf[512];
	FILE *f = fmemopen(buf, sizeof(buf), "w");

	assert_non_null(f);
	json_fputs(f, s);
	fclose(f);
	return buf;
}

static void test_escapes(void **state)
{
	(void)state;
	assert_string_equal(quoted("plain"), "\"plain\"");
	assert_string_equal(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
	assert_string_equal(quoted("tab\there\n"), "\"tab\\u0009here\\u000a\"");
	assert_string_equal(quoted(""), "\"\"");
}

static void test_valid_utf8_passes_through(void **state)
{
	(void)state;
	assert_string_equal(quoted("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
			    "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
}

static void test_invalid_utf8_becomes_replacement(void **state)
{
	(void)state;
	/* A 3-byte character cut after its first two bytes, as a STATUS= truncated at
	 * 127 bytes would end. */
	assert_string_equal(quoted("ready \xe2\x82"), "\"ready \\ufffd\\ufffd\"");
	/* Overlong NUL, a UTF-16 surrogate, a stray continuation byte, above U+10FFFF. */
	assert_string_equal(quoted("\xc0\x80"), "\"\\ufffd\\ufffd\"");
	assert_string_equal(quoted("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\"");
	assert_string_equal(quoted("\x80x"), "\"\\ufffdx\"");
	assert_string_equal(quoted("\xf4\x90\x80\x80"), "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
}

static void test_utf8_len(void **state)
{
	(void)state;
	assert_int_equal(json_utf8_len((const unsigned char *)"\xc3\xa9"), 2);
	assert_int_equal(json_utf8_len((const unsigned char *)"\xe2\x82\xac"), 3);
	assert_int_equal(json_utf8_len((const unsigned char *)"\xf0\x9f\x98\x80"), 4);
	assert_int_equal(json_utf8_len((const unsigned char *)"\xe2\x82"), 0);
	assert_int_equal(json_utf8_len((const unsigned char *)"a"), 0); /* not multi-byte */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_valid_utf8_passes_through),
		cmocka_unit_test(test_invalid_utf8_becomes_replacement),
		cmocka_unit_test(test_utf8_len),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
