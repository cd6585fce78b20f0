/* Unit tests for the loop layer (arbiter/loop.h) on both backends, with real pipes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>

#include <cmocka.h>

#include "loop.h"

/* Two readable pipes give one batch of two events. A handler of the first may free
 * the second source: loop_del must blank its entry so the caller never reads it. */
static void del_blanks_the_rest_of_the_batch(const struct loop_backend *backend)
{
	struct loop l;
	struct source src[2], *first;
	int fds[2][2], n;

	assert_int_equal(loop_init(&l, backend), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pipe(fds[i]), 0);
		src[i].type = 7; /* any tag: the loop gives it no meaning */
		src[i].fd = fds[i][0];
		assert_int_equal(loop_add(&l, &src[i], LOOP_IN), 0);
		assert_int_equal(write(fds[i][1], "x", 1), 1);
	}
	n = loop_wait(&l, 1000);
	assert_int_equal(n, 2);
	assert_ptr_not_equal(l.batch[0].source, l.batch[1].source);

	/* The handler of the first event deletes the second event's source. */
	first = l.batch[0].source;
	assert_int_equal(loop_del(&l, l.batch[1].source), 0);
	assert_null(l.batch[1].source);
	assert_ptr_equal(l.batch[0].source, first);
	assert_true(l.batch[0].events & LOOP_IN);

	assert_int_equal(loop_del(&l, first), 0);
	for (int i = 0; i < 2; i++) {
		close(fds[i][0]);
		close(fds[i][1]);
	}
	loop_fini(&l);
}

static void test_epoll_del_blanks_the_rest_of_the_batch(void **state)
{
	(void)state;
	del_blanks_the_rest_of_the_batch(&loop_backend_epoll);
}

static void test_uring_del_blanks_the_rest_of_the_batch(void **state)
{
	char why[256];

	(void)state;
	if (loop_uring_probe(why, sizeof(why)) < 0)
		skip(); /* the integration suite's io_uring run fails under CI=true instead */
	del_blanks_the_rest_of_the_batch(&loop_backend_io_uring);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_epoll_del_blanks_the_rest_of_the_batch),
		cmocka_unit_test(test_uring_del_blanks_the_rest_of_the_batch),
	};

	return cmocka_run_group_tests_name("test_loop", tests, NULL, NULL);
}
