/* Text rendered into memory, as open_memstream does, but into a buffer that is kept
 * and written again by the next render. `status --json` of 4,096 workers is 345 KB:
 * open_memstream took a fresh buffer for every request, zeroed and copied at every
 * doubling, and the kernel faulted in each of its pages (a page fault costs tens of
 * microseconds in a VM): half of what the arbiter spent answering. One buffer is
 * kept, the largest given back; the arbiter is single-threaded, so nothing locks. */
#pragma once

#include <stddef.h>
#include <stdio.h>

struct membuf {
	char *p; /* NUL-terminated at len when not NULL */
	size_t len, cap;
};

/* Start b empty, on the kept buffer if there is one (then there is none until it is
 * given back). */
void membuf_take(struct membuf *b);
/* A FILE appending to b, growing it (doubling, never zeroing); after fclose, b->p and
 * b->len hold what was written. NULL with errno. */
FILE *membuf_open(struct membuf *b);
/* Done with p, a buffer of cap bytes from a membuf: kept for the next membuf_take
 * when none as large is kept (the other one is freed), else freed. NULL is nothing. */
void membuf_give_back(char *p, size_t cap);
/* Free the kept buffer (at exit, for leak checkers; and for tests). */
void membuf_drop_kept(void);
