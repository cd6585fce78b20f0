/* shared/heap.h: a random mix of inserts, key changes and removals on records that
 * carry their own key and place, checked after each step against the records
 * themselves: the top is a smallest key, every place points back at its record, the
 * heap property holds, and a record out of the heap has place 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "heap.h"

struct rec {
	int other; /* the key and the place need not come first */
	uint64_t key;
	size_t pos;
};

#define N 300

static void check(const struct heap *h, const struct rec *r)
{
	size_t in = 0;
	uint64_t least = UINT64_MAX;

	for (size_t i = 0; i < N; i++) {
		if (!r[i].pos)
			continue;
		in++;
		assert_true(r[i].pos <= h->n);
		assert_ptr_equal(h->v[r[i].pos - 1], &r[i]);
		if (r[i].key < least)
			least = r[i].key;
	}
	assert_int_equal(in, h->n);
	for (size_t i = 1; i < h->n; i++)
		assert_true(((struct rec *)h->v[(i - 1) / 2])->key <= ((struct rec *)h->v[i])->key);
	if (h->n)
		assert_int_equal(((struct rec *)heap_top(h))->key, least);
	else
		assert_null(heap_top(h));
}

static void test_random_operations_keep_the_heap(void **state)
{
	struct heap h = HEAP_INIT(struct rec, key, pos);
	struct rec *r = calloc(N, sizeof(*r));

	(void)state;
	assert_non_null(r);
	srand(7);
	for (int step = 0; step < 20000; step++) {
		struct rec *e = &r[rand() % N];

		switch (rand() % 3) {
		case 0:
			if (!e->pos) {
				e->key = (uint64_t)(rand() % 1000);
				assert_int_equal(heap_insert(&h, e), 0);
			}
			break;
		case 1:
			e->key = (uint64_t)(rand() % 1000);
			assert_int_equal(heap_update(&h, e), 0); /* inserts one not in it */
			break;
		default:
			heap_remove(&h, e);
			assert_int_equal(e->pos, 0);
			heap_remove(&h, e); /* twice: nothing */
			break;
		}
		check(&h, r);
	}
	/* Drained in order. */
	for (uint64_t last = 0; heap_top(&h);) {
		struct rec *e = heap_top(&h);

		assert_true(e->key >= last);
		last = e->key;
		heap_remove(&h, e);
	}
	heap_free(&h);
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_operations_keep_the_heap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
