/* What pool.c, pool_watch.c and pool_slots.c share, and nobody else calls. Calls go
 * pool_watch.c -> pool.c -> pool_slots.c, never back. */
#pragma once

#include "pool.h"

/* Apply one event through the lifecycle table and carry out its actions (pool.c). */
unsigned pool_apply(struct pool *p, struct worker *w, enum worker_event ev);
/* A worker just became ready with --timeout on: find out whether it pings (pool.c). */
void pool_watch_for_pings(struct pool *p, struct worker *w);
/* A worker failed to boot: the back-off, or the boot limit's fatal hook (pool.c). */
void pool_record_boot_failure(struct pool *p, struct worker *w, uint64_t now);

/* The indexes (struct pool_slots in pool.h), in pool_slots.c. */
/* Rebuild if stale. Every function below calls it first (slots_count counts instead). */
void slots_ensure(struct pool *p);
/* A worker joins or leaves p->workers (before it is freed). */
int slots_add(struct pool *p, struct worker *w);
void slots_remove(struct pool *p, struct worker *w);
/* w->state changed from was to w->state: counts, ids, the old generation's order. */
void slots_moved(struct pool *p, struct worker *w, enum worker_state was);
/* The lowest slot id no active worker of the current generation holds. */
unsigned slots_free_id(struct pool *p);
/* The highest-numbered active worker of the current generation, or NULL. */
struct worker *slots_highest_current(struct pool *p);
/* The highest-numbered active worker of an older generation, or NULL. */
struct worker *slots_highest_old(struct pool *p);
/* Workers in state s, of the current generation (current) or of older ones. */
unsigned slots_count(const struct pool *p, enum worker_state s, bool current);
struct worker *slots_find_pid(struct pool *p, pid_t pid);
/* Set w->deadline_ms (0: none) and its place in the heap. */
void slots_set_deadline(struct pool *p, struct worker *w, uint64_t ms);
/* The worker with the earliest deadline, or NULL. */
struct worker *slots_earliest(struct pool *p);
void slots_free(struct pool *p);
/* Its socket may need (un)watching: looked at by the next pool_watch_notify. */
void pool_mark_watch(struct pool *p, struct worker *w);
