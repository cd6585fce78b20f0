/* The min-heap of shared/heap.h. */
#include "heap.h"

#include <errno.h>
#include <stdlib.h>

static uint64_t key(const struct heap *h, const void *e)
{
	return *(const uint64_t *)((const char *)e + h->key_off);
}

static size_t *pos(const struct heap *h, void *e)
{
	return (size_t *)((char *)e + h->pos_off);
}

static void place(struct heap *h, size_t i, void *e)
{
	h->v[i] = e;
	*pos(h, e) = i + 1;
}

static void up(struct heap *h, size_t i)
{
	void *e = h->v[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		h->steps++;
		if (key(h, h->v[parent]) <= key(h, e))
			break;
		place(h, i, h->v[parent]);
		i = parent;
	}
	place(h, i, e);
}

static void down(struct heap *h, size_t i)
{
	void *e = h->v[i];

	for (;;) {
		size_t c = 2 * i + 1;

		h->steps++;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && key(h, h->v[c + 1]) < key(h, h->v[c]))
			c++;
		if (key(h, e) <= key(h, h->v[c]))
			break;
		place(h, i, h->v[c]);
		i = c;
	}
	place(h, i, e);
}

int heap_insert(struct heap *h, void *e)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		void **v = realloc(h->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		h->v = v;
		h->cap = cap;
	}
	place(h, h->n++, e);
	up(h, h->n - 1);
	return 0;
}

void heap_remove(struct heap *h, void *e)
{
	size_t at = *pos(h, e);
	void *last;

	if (!at)
		return;
	*pos(h, e) = 0;
	last = h->v[--h->n];
	if (last == e)
		return;
	place(h, at - 1, last);
	up(h, at - 1);
	down(h, *pos(h, last) - 1);
}

int heap_update(struct heap *h, void *e)
{
	size_t at = *pos(h, e);

	if (!at)
		return heap_insert(h, e);
	up(h, at - 1);
	down(h, *pos(h, e) - 1);
	return 0;
}

void heap_free(struct heap *h)
{
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}
