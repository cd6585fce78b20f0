/* The kept render buffer; see membuf.h for why. */
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "membuf.h"

/* The smallest buffer: a text status of a few workers fits. */
#define MEMBUF_FIRST 4096u

static struct {
	char *p;
	size_t cap;
} kept;

void membuf_take(struct membuf *b)
{
	b->p = kept.p;
	b->cap = kept.cap;
	b->len = 0;
	if (b->p)
		b->p[0] = '\0';
	kept.p = NULL;
	kept.cap = 0;
}

void membuf_give_back(char *p, size_t cap)
{
	if (!p)
		return;
	if (kept.p && kept.cap >= cap) {
		free(p);
		return;
	}
	free(kept.p);
	kept.p = p;
	kept.cap = cap;
}

void membuf_drop_kept(void)
{
	free(kept.p);
	kept.p = NULL;
	kept.cap = 0;
}

/* fopencookie's write: all of data, or 0 (an error: the FILE fails, fclose says so). */
static ssize_t membuf_write(void *cookie, const char *data, size_t n)
{
	struct membuf *b = cookie;

	if (b->cap - b->len <= n) {
		size_t cap = b->cap ? b->cap : MEMBUF_FIRST;
		char *p;

		while (cap - b->len <= n) {
			if (cap > ((size_t)-1) / 2)
				return 0;
			cap *= 2;
		}
		p = realloc(b->p, cap);
		if (!p)
			return 0;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return (ssize_t)n;
}

FILE *membuf_open(struct membuf *b)
{
	static const cookie_io_functions_t io = {.write = membuf_write};

	return fopencookie(b, "w", io);
}
