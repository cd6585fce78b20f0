/* Heartbeats in shared memory; see heartbeat.h. */
#include "heartbeat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* 4,096 workers, two generations of them during a reload: 64 KiB. Grown by doubling
 * past that (ftruncate, mremap); a worker maps only the page of its own slot, so it
 * never sees the file move. */
#define FIRST_CAP 8192
#define MAX_CAP	  (1u << 20)

static void reset(struct heartbeats *h)
{
	memset(h, 0, sizeof(*h));
	h->fd = -1;
}

/* Our side arrays for cap slots (the new part zeroed). */
static bool grow_ours(struct heartbeats *h, size_t cap)
{
	uint64_t *seen = realloc(h->seen, cap * sizeof(*seen));
	void **owner;
	int *free_;

	if (!seen)
		return false;
	h->seen = seen;
	owner = realloc(h->owner, cap * sizeof(*owner));
	if (!owner)
		return false;
	h->owner = owner;
	free_ = realloc(h->free, 2 * cap * sizeof(*free_));
	if (!free_)
		return false;
	h->free = free_;
	memset(h->seen + h->cap, 0, (cap - h->cap) * sizeof(*seen));
	memset(h->owner + h->cap, 0, (cap - h->cap) * sizeof(*owner));
	return true;
}

static bool map(struct heartbeats *h, size_t cap)
{
	size_t bytes = cap * sizeof(uint64_t);
	void *m;

	if (h->beats)
		m = mremap((void *)h->beats, h->cap * sizeof(uint64_t), bytes, MREMAP_MAYMOVE);
	else
		m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, h->fd, 0);
	if (m == MAP_FAILED)
		return false;
	h->beats = m;
	if (!grow_ours(h, cap))
		return false; /* the mapping is kept; cap stays */
	h->cap = cap;
	return true;
}

void heartbeats_init(struct heartbeats *h)
{
	reset(h);
	h->fd = memfd_create("sigvisor-heartbeats", MFD_CLOEXEC);
	if (h->fd < 0 || ftruncate(h->fd, FIRST_CAP * sizeof(uint64_t)) < 0 || !map(h, FIRST_CAP)) {
		log_warn("no shared memory for the built-in worker's heartbeats (%m): it pings "
			 "with sd_notify's WATCHDOG=1 instead");
		heartbeats_close(h);
	}
}

void heartbeats_close(struct heartbeats *h)
{
	if (h->beats)
		(void)munmap((void *)h->beats, h->cap * sizeof(uint64_t));
	if (h->fd >= 0)
		close(h->fd);
	free(h->seen);
	free(h->owner);
	free(h->free);
	reset(h);
}

bool heartbeats_adopt(struct heartbeats *h, int fd)
{
	struct stat st;
	size_t cap;

	heartbeats_close(h);
	if (fstat(fd, &st) < 0 || st.st_size < (off_t)sizeof(uint64_t)) {
		close(fd);
		return false;
	}
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	cap = (size_t)st.st_size / sizeof(uint64_t);
	h->fd = fd;
	if (!map(h, cap)) {
		heartbeats_close(h);
		return false;
	}
	return true;
}

static bool grow(struct heartbeats *h)
{
	size_t cap = h->cap * 2;

	if (cap > MAX_CAP || ftruncate(h->fd, (off_t)(cap * sizeof(uint64_t))) < 0)
		return false;
	return map(h, cap);
}

static void push_free(struct heartbeats *h, size_t slot)
{
	if (h->n_free < 2 * h->cap)
		h->free[h->n_free++] = (int)slot;
}

int heartbeats_take(struct heartbeats *h, void *owner)
{
	size_t slot;

	if (h->fd < 0)
		return -1;
	for (;;) {
		if (!h->n_free) {
			if (h->hi == h->cap && !grow(h))
				return -1;
			slot = h->hi++;
			break;
		}
		slot = (size_t)h->free[--h->n_free];
		if (!h->owner[slot])
			break;
	}
	h->owner[slot] = owner;
	h->seen[slot] = 0;
	h->beats[slot] = 0;
	return (int)slot;
}

bool heartbeats_claim(struct heartbeats *h, int slot, void *owner)
{
	if (h->fd < 0 || slot < 0 || (size_t)slot >= h->cap || h->owner[slot])
		return false;
	/* Slots between the old hi and this one are free. */
	while (h->hi < (size_t)slot)
		push_free(h, h->hi++);
	if (h->hi == (size_t)slot)
		h->hi++;
	h->owner[slot] = owner;
	h->seen[slot] = 0;
	return true;
}

void heartbeats_release(struct heartbeats *h, int slot)
{
	if (slot < 0 || (size_t)slot >= h->hi || !h->owner[slot])
		return;
	h->owner[slot] = NULL;
	h->seen[slot] = 0;
	push_free(h, (size_t)slot);
}

void heartbeats_arm(struct heartbeats *h, int slot, uint64_t now)
{
	uint64_t b;

	if (slot < 0 || (size_t)slot >= h->hi)
		return;
	b = h->beats[slot];
	h->seen[slot] = b > now ? b : now;
}

void heartbeats_disarm(struct heartbeats *h, int slot)
{
	if (slot >= 0 && (size_t)slot < h->hi)
		h->seen[slot] = 0;
}

uint64_t heartbeats_sweep(struct heartbeats *h, uint64_t now, uint64_t silent_ms,
			  void (*on_silent)(void *ctx, void *owner, int slot, uint64_t last),
			  void *ctx)
{
	uint64_t next = 0;

	for (size_t i = 0; i < h->hi; i++) {
		uint64_t seen = h->seen[i], b;

		if (!seen)
			continue;
		b = h->beats[i];
		if (b > seen)
			h->seen[i] = seen = b;
		if (now >= seen + silent_ms) {
			on_silent(ctx, h->owner[i], (int)i, seen);
			/* this one is disarmed, unless on_silent kept it */
			if (!h->seen[i])
				continue;
			seen = now; /* kept: looked at again a silent_ms from now */
		}
		if (!next || seen + silent_ms < next)
			next = seen + silent_ms;
	}
	return next;
}
