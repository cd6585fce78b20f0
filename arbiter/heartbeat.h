/* Heartbeats in shared memory: how the built-in worker proves it is alive to the
 * --timeout watchdog without a system call on either side.
 *
 * sd_notify's WATCHDOG=1 is a datagram a ping: at 4,096 workers pinging every half
 * --timeout that is 16,000 socket reads a minute for the arbiter, 100 ms of CPU on an
 * idle pool. The built-in worker, which we wrote, writes the monotonic clock's
 * milliseconds into its own 8-byte slot of one shared memfd instead; the arbiter
 * looks at all the slots when the earliest of them could have gone silent (two
 * arrays read in order: microseconds at 4,096 workers; about twice a --timeout
 * whatever their number, as each beats every half --timeout), and only a slot that
 * stopped moving costs it anything more. Programs we did not write keep sd_notify
 * (notify.h).
 *
 * The memfd is one for the pool, so a worker could write another's slot: the workers
 * share a uid, and one that could do that could kill(2) its siblings as well.
 *
 * Low layer: knows nothing of workers; a slot's owner is an opaque pointer. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct heartbeats {
	int fd;			  /* the memfd; -1: none (then workers use sd_notify) */
	volatile uint64_t *beats; /* shared: each slot's last beat, written by its worker */
	uint64_t *seen;		  /* ours: the last beat seen per slot, 0: not watched */
	void **owner;		  /* ours: whose slot, NULL: free */
	size_t cap;		  /* slots mapped */
	size_t hi;		  /* one above the highest slot ever taken: what sweeps read */
	/* Slots below hi to take again, last released first. One claimed since it went
	 * on (an adopted worker's) is skipped when it comes off. 2 * cap entries. */
	int *free;
	size_t n_free;
};

/* The environment variable that tells the built-in worker its fd and slot: "FD:SLOT". */
#define HEARTBEAT_ENV "SIGVISOR_HEARTBEAT"

/* Make the memfd; on failure (no memfd_create under a seccomp filter, no memory)
 * fd stays -1 and the workers ping through sd_notify, said once in the log. */
void heartbeats_init(struct heartbeats *h);
void heartbeats_close(struct heartbeats *h);
/* After an upgrade: take over the previous image's memfd (fd, now ours); false if it
 * cannot be mapped (then fd is closed and h has none). */
bool heartbeats_adopt(struct heartbeats *h, int fd);

/* A free slot for owner, or -1 (none: no memfd, or it could not grow). */
int heartbeats_take(struct heartbeats *h, void *owner);
/* An adopted worker's slot, taken as is; false if out of range. */
bool heartbeats_claim(struct heartbeats *h, int slot, void *owner);
void heartbeats_release(struct heartbeats *h, int slot);

/* Start watching a slot: its worker is ready; now counts as its last beat unless it
 * has beaten since. */
void heartbeats_arm(struct heartbeats *h, int slot, uint64_t now);
void heartbeats_disarm(struct heartbeats *h, int slot);

/* One look at every watched slot: each that has not beaten since silent_ms before now
 * goes to on_silent(ctx, owner, slot, last beat), which disarms it (or the next sweep
 * is at once). Returns when the next could go silent (the earliest last beat +
 * silent_ms), 0 when none is watched. */
uint64_t heartbeats_sweep(struct heartbeats *h, uint64_t now, uint64_t silent_ms,
			  void (*on_silent)(void *ctx, void *owner, int slot, uint64_t last),
			  void *ctx);
