/* A binary min-heap of pointers to records that carry their own key and place: the
 * key is a uint64_t at key_off in each record (a deadline), the place a size_t at
 * pos_off (1 + its index in the heap; 0: not in it), so a record is removed or moved
 * without a search. The arbiter's worker deadlines and the built-in worker's parked
 * connections both sit on one.
 *
 * Every operation is O(log n); steps counts the records each visited, for the tests
 * that check a cost does not grow with n. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct heap {
	void **v;
	size_t n, cap;
	size_t key_off, pos_off;
	uint64_t steps;
};

#define HEAP_INIT(type, key, pos)                                                                  \
	{                                                                                          \
		.key_off = offsetof(type, key), .pos_off = offsetof(type, pos)                     \
	}

/* 0, or -ENOMEM (the record is then not in the heap). */
int heap_insert(struct heap *h, void *e);
/* Out of the heap, if in it. */
void heap_remove(struct heap *h, void *e);
/* Its key changed: back in its place (inserted if it was not in the heap). 0 or -ENOMEM. */
int heap_update(struct heap *h, void *e);
/* The record with the smallest key, or NULL. */
static inline void *heap_top(const struct heap *h)
{
	return h->n ? h->v[0] : NULL;
}
/* Forget every record (their places are not cleared) and free the array. */
void heap_free(struct heap *h);
