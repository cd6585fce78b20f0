/* The pool's indexes (struct pool_slots in pool.h): slot ids, counts per state, pids,
 * the deadline heap, and the workers whose notify watch may change. */
#include "pool_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"
#include "log.h"
#include "pool.h"
#include "timeutil.h"

static bool is_current(const struct pool *p, const struct worker *w)
{
	return w->generation == p->generation;
}

static bool active_state(enum worker_state s)
{
	return s == WORKER_BOOTING || s == WORKER_READY;
}

/* -- slot ids ---------------------------------------------------------------------- */

static size_t summary_words(size_t words)
{
	return (words + 63) / 64;
}

/* Room for id: doubling, so a pool growing one TTIN at a time copies O(N) in all. */
static int ids_grow(struct pool_slots *s, unsigned id)
{
	size_t words = s->words ? s->words : 1, old_sum = summary_words(s->words), sum;
	uint64_t *taken, *full, *any;
	struct worker **by_id;

	while ((size_t)id >= words * 64)
		words *= 2;
	if (words == s->words)
		return 0;
	sum = summary_words(words);
	taken = realloc(s->taken, words * sizeof(*taken));
	if (!taken)
		return -ENOMEM;
	s->taken = taken;
	full = realloc(s->full, sum * sizeof(*full));
	if (!full)
		return -ENOMEM;
	s->full = full;
	any = realloc(s->any, sum * sizeof(*any));
	if (!any)
		return -ENOMEM;
	s->any = any;
	by_id = realloc(s->by_id, words * 64 * sizeof(*by_id));
	if (!by_id)
		return -ENOMEM;
	s->by_id = by_id;
	memset(taken + s->words, 0, (words - s->words) * sizeof(*taken));
	memset(full + old_sum, 0, (sum - old_sum) * sizeof(*full));
	memset(any + old_sum, 0, (sum - old_sum) * sizeof(*any));
	memset(by_id + s->words * 64, 0, (words - s->words) * 64 * sizeof(*by_id));
	s->words = words;
	return 0;
}

static void id_take(struct pool_slots *s, struct worker *w)
{
	size_t word = w->id / 64;

	if (ids_grow(s, w->id) < 0)
		return; /* out of memory: the id is found free again, a duplicate slot number */
	s->taken[word] |= 1ULL << (w->id % 64);
	s->by_id[w->id] = w;
	s->any[word / 64] |= 1ULL << (word % 64);
	if (s->taken[word] == ~0ULL)
		s->full[word / 64] |= 1ULL << (word % 64);
}

static void id_release(struct pool_slots *s, const struct worker *w)
{
	size_t word = w->id / 64;

	if (word >= s->words || s->by_id[w->id] != w)
		return;
	s->by_id[w->id] = NULL;
	s->taken[word] &= ~(1ULL << (w->id % 64));
	s->full[word / 64] &= ~(1ULL << (word % 64));
	if (!s->taken[word])
		s->any[word / 64] &= ~(1ULL << (word % 64));
}

/* -- pid -> worker ----------------------------------------------------------------- */

static size_t pid_hash(pid_t pid, size_t cap)
{
	return ((size_t)(unsigned)pid * 2654435761u) & (cap - 1);
}

static int pids_insert(struct pool_slots *s, struct worker *w);

static int pids_grow(struct pool_slots *s)
{
	struct worker **old = s->pids;
	size_t old_cap = s->pid_cap, cap = old_cap ? old_cap * 2 : 64;

	if ((s->pid_n + 1) * 2 <= old_cap)
		return 0; /* at most half full: probes stay short */
	s->pids = calloc(cap, sizeof(*s->pids));
	if (!s->pids) {
		s->pids = old;
		return -ENOMEM;
	}
	s->pid_cap = cap;
	s->pid_n = 0;
	for (size_t i = 0; i < old_cap; i++)
		if (old[i])
			(void)pids_insert(s, old[i]);
	free(old);
	return 0;
}

static int pids_insert(struct pool_slots *s, struct worker *w)
{
	size_t i;

	if (pids_grow(s) < 0)
		return -ENOMEM;
	for (i = pid_hash(w->pid, s->pid_cap); s->pids[i]; i = (i + 1) & (s->pid_cap - 1)) {
		s->steps++;
		if (s->pids[i] == w)
			return 0;
	}
	s->pids[i] = w;
	s->pid_n++;
	return 0;
}

/* Linear probing's deletion: move later entries of the run back into the hole, so a
 * lookup never stops short at it (no tombstones to pile up over a pool's life). */
static void pids_remove(struct pool_slots *s, const struct worker *w)
{
	size_t mask = s->pid_cap - 1, i, j;

	if (!s->pid_cap)
		return;
	for (i = pid_hash(w->pid, s->pid_cap); s->pids[i] != w; i = (i + 1) & mask) {
		s->steps++;
		if (!s->pids[i])
			return;
	}
	s->pids[i] = NULL;
	s->pid_n--;
	for (j = (i + 1) & mask; s->pids[j]; j = (j + 1) & mask) {
		size_t home = pid_hash(s->pids[j]->pid, s->pid_cap);

		s->steps++;
		/* j's entry may move to the hole at i unless its home lies in (i, j] */
		if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
			s->pids[i] = s->pids[j];
			s->pids[j] = NULL;
			i = j;
		}
	}
}

/* -- deadlines --------------------------------------------------------------------- */

/* On a heap keyed by deadline_ms (shared/heap.h), set up on first use: struct pool is
 * zeroed by its owner, not built by us. */
static struct heap *deadlines(struct pool_slots *s)
{
	if (!s->deadlines.pos_off)
		s->deadlines = (struct heap)HEAP_INIT(struct worker, deadline_ms, heap_pos);
	return &s->deadlines;
}

/* -- the old generations' order ------------------------------------------------------ */

static int by_id(const void *a, const void *b)
{
	const struct worker *x = *(struct worker *const *)a, *y = *(struct worker *const *)b;

	return x->id < y->id ? -1 : x->id > y->id;
}

static void old_forget(struct pool_slots *s, struct worker *w)
{
	if (w->old_pos)
		s->old[w->old_pos - 1] = NULL; /* popped past by slots_highest_old */
	w->old_pos = 0;
}

/* -- the whole ----------------------------------------------------------------------- */

static void index_worker(struct pool *p, struct worker *w)
{
	struct pool_slots *s = &p->slots;

	s->steps++;
	s->count[w->state][is_current(p, w)]++;
	if (w->state == WORKER_EXITED)
		return;
	(void)pids_insert(s, w);
	if (w->deadline_ms)
		(void)heap_insert(deadlines(s), w);
	if (active_state(w->state) && is_current(p, w))
		id_take(s, w);
}

static void rebuild(struct pool *p)
{
	struct pool_slots *s = &p->slots;

	memset(s->count, 0, sizeof(s->count));
	if (s->words) {
		memset(s->taken, 0, s->words * sizeof(*s->taken));
		memset(s->full, 0, summary_words(s->words) * sizeof(*s->full));
		memset(s->any, 0, summary_words(s->words) * sizeof(*s->any));
		memset(s->by_id, 0, s->words * 64 * sizeof(*s->by_id));
	}
	if (s->pid_cap)
		memset(s->pids, 0, s->pid_cap * sizeof(*s->pids));
	s->pid_n = 0;
	deadlines(s)->n = 0; /* its entries may be freed workers: never looked at */
	free(s->old);
	s->old = NULL;
	s->old_n = 0;
	for (size_t i = 0; i < p->n; i++) {
		p->workers[i]->heap_pos = 0;
		p->workers[i]->old_pos = 0;
	}
	for (size_t i = 0; i < p->n; i++)
		index_worker(p, p->workers[i]);
	s->old = calloc(p->n + 1, sizeof(*s->old));
	for (size_t i = 0; s->old && i < p->n; i++)
		if (active_state(p->workers[i]->state) && !is_current(p, p->workers[i]))
			s->old[s->old_n++] = p->workers[i];
	if (s->old_n)
		qsort(s->old, s->old_n, sizeof(*s->old), by_id);
	for (size_t i = 0; i < s->old_n; i++)
		s->old[i]->old_pos = i + 1;
	s->gen = p->generation;
	s->stale = false;
}

void slots_ensure(struct pool *p)
{
	if (p->slots.stale || p->slots.gen != p->generation)
		rebuild(p);
}

int slots_add(struct pool *p, struct worker *w)
{
	w->heap_pos = 0;
	w->old_pos = 0;
	if (p->slots.stale || p->slots.gen != p->generation) {
		p->slots.stale = true; /* the rebuild will see it in p->workers */
		return 0;
	}
	index_worker(p, w);
	/* a new worker is of the current generation: no place among the old ones */
	if (active_state(w->state) && !is_current(p, w))
		p->slots.stale = true;
	return 0;
}

void slots_remove(struct pool *p, struct worker *w)
{
	struct pool_slots *s = &p->slots;

	if (s->stale || s->gen != p->generation)
		return; /* rebuilt from p->workers, without it, at the next use */
	s->count[w->state][is_current(p, w)]--;
	heap_remove(deadlines(s), w);
	pids_remove(s, w);
	old_forget(s, w);
	if (active_state(w->state) && is_current(p, w))
		id_release(s, w);
}

void slots_moved(struct pool *p, struct worker *w, enum worker_state was)
{
	struct pool_slots *s = &p->slots;
	bool cur = is_current(p, w);

	if (was == w->state)
		return;
	if ((was == WORKER_READY) != (w->state == WORKER_READY))
		p->ready_epoch++;
	if (s->stale || s->gen != p->generation)
		return;
	s->steps++;
	s->count[was][cur]--;
	s->count[w->state][cur]++;
	if (active_state(was) && !active_state(w->state)) {
		if (cur)
			id_release(s, w);
		else
			old_forget(s, w);
	}
	if (w->state == WORKER_EXITED)
		pids_remove(s, w);
}

unsigned slots_free_id(struct pool *p)
{
	struct pool_slots *s = &p->slots;
	size_t sum;

	slots_ensure(p);
	sum = summary_words(s->words);
	for (size_t i = 0; i < sum; i++) {
		size_t word;

		s->steps++;
		if (s->full[i] == ~0ULL)
			continue;
		word = i * 64 + (size_t)__builtin_ctzll(~s->full[i]);
		if (word >= s->words)
			break;
		return (unsigned)(word * 64 + (size_t)__builtin_ctzll(~s->taken[word]));
	}
	return (unsigned)(s->words * 64);
}

struct worker *slots_highest_current(struct pool *p)
{
	struct pool_slots *s = &p->slots;

	slots_ensure(p);
	for (size_t i = summary_words(s->words); i-- > 0;) {
		size_t word;

		s->steps++;
		if (!s->any[i])
			continue;
		word = i * 64 + 63 - (size_t)__builtin_clzll(s->any[i]);
		return s->by_id[word * 64 + 63 - (size_t)__builtin_clzll(s->taken[word])];
	}
	return NULL;
}

struct worker *slots_highest_old(struct pool *p)
{
	struct pool_slots *s = &p->slots;

	slots_ensure(p);
	/* popped for good: an old worker never becomes active again */
	while (s->old_n && !s->old[s->old_n - 1]) {
		s->steps++;
		s->old_n--;
	}
	return s->old_n ? s->old[s->old_n - 1] : NULL;
}

unsigned slots_count(const struct pool *p, enum worker_state st, bool current)
{
	unsigned n = 0;

	if (!p->slots.stale && p->slots.gen == p->generation)
		return p->slots.count[st][current];
	/* not rebuilt yet (a new generation, adopted workers): counted this once */
	for (size_t i = 0; i < p->n; i++)
		n += p->workers[i]->state == st && is_current(p, p->workers[i]) == current;
	return n;
}

struct worker *slots_find_pid(struct pool *p, pid_t pid)
{
	struct pool_slots *s = &p->slots;

	slots_ensure(p);
	if (!s->pid_cap)
		return NULL;
	for (size_t i = pid_hash(pid, s->pid_cap); s->pids[i]; i = (i + 1) & (s->pid_cap - 1)) {
		s->steps++;
		if (s->pids[i]->pid == pid)
			return s->pids[i];
	}
	return NULL;
}

void slots_set_deadline(struct pool *p, struct worker *w, uint64_t ms)
{
	struct pool_slots *s = &p->slots;
	uint64_t was = w->deadline_ms;

	w->deadline_ms = ms;
	if (s->stale || s->gen != p->generation)
		return;
	if (!ms)
		heap_remove(deadlines(s), w);
	else if (ms != was || !w->heap_pos)
		(void)heap_update(deadlines(s), w);
}

struct worker *slots_earliest(struct pool *p)
{
	slots_ensure(p);
	return heap_top(&p->slots.deadlines);
}

void slots_free(struct pool *p)
{
	struct pool_slots *s = &p->slots;

	free(s->taken);
	free(s->full);
	free(s->any);
	free(s->by_id);
	free(s->pids);
	heap_free(&s->deadlines);
	free(s->old);
	memset(s, 0, sizeof(*s));
	s->stale = true;
}

/* The worker's socket may need (un)watching: looked at by the next pool_watch_notify. */
void pool_mark_watch(struct pool *p, struct worker *w)
{
	if (w->watch_dirty)
		return;
	if (p->n_dirty == p->dirty_cap) {
		size_t cap = p->dirty_cap ? p->dirty_cap * 2 : 64;
		struct worker **d = realloc(p->watch_dirty, cap * sizeof(*d));

		if (!d)
			return; /* stays as it is: its messages are read at its deadline */
		p->watch_dirty = d;
		p->dirty_cap = cap;
	}
	p->watch_dirty[p->n_dirty++] = w;
	w->watch_dirty = true;
}

void pool_watch_notify(struct pool *p)
{
	uint64_t now = now_ms();
	size_t k = 0;

	/* Only the workers marked since (mark_watch): no pass over all of them per loop
	 * iteration. One lingering after its READY=1 stays marked until that ends. */
	for (size_t i = 0; i < p->n_dirty; i++) {
		struct worker *w = p->watch_dirty[i];
		bool lingering = now < w->notify_linger_ms && w->notify_src.fd >= 0;
		/* One with a heartbeat slot sends nothing but the odd STATUS=: watched. */
		bool want = (w->state == WORKER_BOOTING || p->cfg.notify_watch_always ||
			     lingering || w->hb_slot >= 0) &&
			    w->notify_src.fd >= 0;
		int r;

		p->slots.steps++;
		if (lingering)
			p->watch_dirty[k++] = w;
		else
			w->watch_dirty = false;
		if (want == w->notify_watched)
			continue;
		r = want ? loop_add(p->loop, &w->notify_src, LOOP_IN)
			 : loop_del(p->loop, &w->notify_src);
		if (r < 0)
			log_warn("cannot %s worker %u's notify socket, ignoring: %s",
				 want ? "watch" : "unwatch", w->id, strerror(-r));
		else
			w->notify_watched = want;
	}
	p->n_dirty = k;
}
