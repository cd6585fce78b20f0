/* The kept render buffer (shared/membuf.c): what is written is all there, the buffer of
 * one render is the next one's, two renders at once each get their own, and a failed
 * growth fails the FILE instead of losing text.
 * wrap: realloc
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "membuf.h"

void *__real_realloc(void *p, size_t n);
static unsigned reallocs;
static bool fail_realloc;

void *__wrap_realloc(void *p, size_t n)
{
	reallocs++;
	return fail_realloc ? NULL : __real_realloc(p, n);
}

static int teardown(void **state)
{
	(void)state;
	membuf_drop_kept();
	fail_realloc = false;
	return 0;
}

/* n lines "line I\n" into b; the text expected in want (as large as the output). */
static void render(struct membuf *b, unsigned n, char *want)
{
	FILE *f = membuf_open(b);
	size_t w = 0;

	assert_non_null(f);
	for (unsigned i = 0; i < n; i++) {
		fprintf(f, "line %u\n", i);
		w += (size_t)sprintf(want + w, "line %u\n", i);
	}
	assert_int_equal(fclose(f), 0);
}

static void test_everything_written_is_there_and_terminated(void **state)
{
	static char want[1 << 20];
	struct membuf b;

	(void)state;
	membuf_take(&b);
	assert_null(b.p); /* nothing kept yet */
	render(&b, 50000, want);
	assert_int_equal(b.len, strlen(want));
	assert_true(b.cap > b.len);
	assert_memory_equal(b.p, want, b.len + 1); /* with its NUL */
	free(b.p);
}

static void test_the_next_render_writes_the_same_buffer_without_growing(void **state)
{
	static char want[1 << 20];
	struct membuf b;
	char *first;
	size_t cap;

	(void)state;
	membuf_take(&b);
	render(&b, 40000, want);
	first = b.p;
	cap = b.cap;
	membuf_give_back(b.p, b.cap);

	membuf_take(&b);
	assert_ptr_equal(b.p, first);
	assert_int_equal(b.cap, cap);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.p, "");
	reallocs = 0;
	render(&b, 10, want); /* shorter: only itself, none of the longer text before */
	assert_int_equal(reallocs, 0);
	assert_ptr_equal(b.p, first);
	assert_int_equal(b.len, strlen(want));
	assert_string_equal(b.p, want);
	membuf_give_back(b.p, b.cap);
}

static void test_two_at_once_each_their_own_and_the_larger_is_kept(void **state)
{
	static char want[1 << 20];
	struct membuf a, b, c;

	(void)state;
	membuf_take(&a);
	render(&a, 20000, want);
	membuf_give_back(a.p, a.cap);
	membuf_take(&a); /* the kept one, still being sent */
	membuf_take(&b); /* meanwhile: a fresh one */
	assert_non_null(a.p);
	assert_null(b.p);
	render(&b, 3, want);
	assert_true(b.cap < a.cap);
	assert_string_equal(b.p, want);
	membuf_give_back(b.p, b.cap); /* kept: nothing else is */
	membuf_give_back(a.p, a.cap); /* larger: kept instead, b's freed (ASan would see) */
	membuf_take(&c);
	assert_ptr_equal(c.p, a.p);
	membuf_give_back(c.p, c.cap);
	membuf_give_back(NULL, 0); /* nothing */
}

static void test_a_growth_that_fails_fails_the_file(void **state)
{
	struct membuf b;
	FILE *f;

	(void)state;
	membuf_take(&b);
	f = membuf_open(&b);
	assert_non_null(f);
	fail_realloc = true;
	for (unsigned i = 0; i < 10000; i++)
		fprintf(f, "line %u\n", i);
	assert_int_not_equal(fclose(f), 0);
	fail_realloc = false;
	assert_int_equal(b.len, 0); /* nothing half-written */
	free(b.p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_everything_written_is_there_and_terminated,
					  teardown),
		cmocka_unit_test_teardown(
			test_the_next_render_writes_the_same_buffer_without_growing, teardown),
		cmocka_unit_test_teardown(test_two_at_once_each_their_own_and_the_larger_is_kept,
					  teardown),
		cmocka_unit_test_teardown(test_a_growth_that_fails_fails_the_file, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
