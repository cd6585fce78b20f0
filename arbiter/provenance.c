/* Where a disposition came from: see provenance.h. */
#include "provenance.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>

/* How far up the tree an inherited disposition is traced. */
#define PV_DEPTH 16

struct provenance {
	struct pv_fork *forks; /* by tgid */
	size_t n_forks;
	struct pv_set *sets; /* by (tgid, sig) */
	size_t n_sets;
};

static int cmp_fork(const void *a, const void *b)
{
	uint32_t x = ((const struct pv_fork *)a)->tgid, y = ((const struct pv_fork *)b)->tgid;

	return x < y ? -1 : x > y;
}

static int cmp_set(const void *a, const void *b)
{
	const struct sv_sigset_key *x = &((const struct pv_set *)a)->k,
				   *y = &((const struct pv_set *)b)->k;

	if (x->tgid != y->tgid)
		return x->tgid < y->tgid ? -1 : 1;
	return x->sig < y->sig ? -1 : x->sig > y->sig;
}

struct provenance *provenance_from(const struct pv_fork *forks, size_t n_forks,
				   const struct pv_set *sets, size_t n_sets)
{
	struct provenance *pv = calloc(1, sizeof(*pv));

	if (!pv)
		return NULL;
	pv->forks = malloc((n_forks ? n_forks : 1) * sizeof(*forks));
	pv->sets = malloc((n_sets ? n_sets : 1) * sizeof(*sets));
	if (!pv->forks || !pv->sets) {
		provenance_free(pv);
		return NULL;
	}
	if (n_forks)
		memcpy(pv->forks, forks, n_forks * sizeof(*forks));
	if (n_sets)
		memcpy(pv->sets, sets, n_sets * sizeof(*sets));
	pv->n_forks = n_forks;
	pv->n_sets = n_sets;
	qsort(pv->forks, n_forks, sizeof(*forks), cmp_fork);
	qsort(pv->sets, n_sets, sizeof(*sets), cmp_set);
	return pv;
}

void provenance_free(struct provenance *pv)
{
	if (!pv)
		return;
	free(pv->forks);
	free(pv->sets);
	free(pv);
}

/* Every entry of the pinned map dir/name into a malloc'd array of (key, value) pairs
 * of elem bytes each, the value at offset voff. 0 or -errno (why set). */
static int read_map(const char *dir, const char *name, size_t klen, size_t vlen, size_t elem,
		    size_t voff, void **ret, size_t *ret_n, char *why, size_t whylen)
{
	char path[4200], key[32], next[32];
	unsigned char *out = NULL;
	size_t n = 0, cap = 0;
	void *prev = NULL;
	int fd, r = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = bpf_obj_get(path);
	if (fd < 0) {
		r = -errno;
		snprintf(why, whylen, "cannot open %s: %s", path, strerror(errno));
		return r;
	}
	/* Entries may come and go as we read (an LRU map): a key deleted under us
	 * restarts the walk at the first key, which can only repeat entries, and the
	 * bound keeps it from going round for ever. */
	while (bpf_map_get_next_key(fd, prev, next) == 0 && n < 4 * SV_MAX_COUNTERS) {
		memcpy(key, next, klen);
		prev = key;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 256;
			unsigned char *no = realloc(out, nc * elem);

			if (!no) {
				r = -ENOMEM;
				snprintf(why, whylen, "out of memory reading %s", path);
				break;
			}
			out = no;
			cap = nc;
		}
		memset(out + n * elem, 0, elem);
		memcpy(out + n * elem, key, klen);
		if (bpf_map_lookup_elem(fd, key, out + n * elem + voff) == 0)
			n++;
	}
	close(fd);
	if (r < 0) {
		free(out);
		return r;
	}
	(void)vlen;
	*ret = out;
	*ret_n = n;
	return 0;
}

struct provenance *provenance_read(const char *dir, char *why, size_t whylen)
{
	struct pv_fork *forks = NULL;
	struct pv_set *sets = NULL;
	struct provenance *pv = NULL;
	size_t nf = 0, ns = 0;

	if (read_map(dir, "forks", sizeof(uint32_t), sizeof(struct sv_fork), sizeof(*forks),
		     offsetof(struct pv_fork, f), (void **)&forks, &nf, why, whylen) == 0 &&
	    read_map(dir, "sigsets", sizeof(struct sv_sigset_key), sizeof(struct sv_sigset),
		     sizeof(*sets), offsetof(struct pv_set, v), (void **)&sets, &ns, why,
		     whylen) == 0) {
		pv = provenance_from(forks, nf, sets, ns);
		if (!pv)
			snprintf(why, whylen, "out of memory");
	}
	free(forks);
	free(sets);
	return pv;
}

static const struct sv_fork *fork_of(const struct provenance *pv, uint32_t tgid)
{
	struct pv_fork k = {.tgid = tgid};
	const struct pv_fork *e = bsearch(&k, pv->forks, pv->n_forks, sizeof(k), cmp_fork);

	return e ? &e->f : NULL;
}

/* The last sigaction of sig by tgid, if it was made by the process forked at fork_ns
 * (not by an earlier one with the same tgid). */
static const struct sv_sigset *set_of(const struct provenance *pv, uint32_t tgid, int sig,
				      uint64_t fork_ns)
{
	struct pv_set k = {.k = {.tgid = tgid, .sig = (uint32_t)sig}};
	const struct pv_set *e = bsearch(&k, pv->sets, pv->n_sets, sizeof(k), cmp_set);

	return e && e->v.ts_ns >= fork_ns ? &e->v : NULL;
}

/* The host tgid of the process with pid in the arbiter's namespace: the one forked
 * last (a pid reused by the namespace leaves the old entry until it is evicted). */
static uint32_t tgid_of(const struct provenance *pv, pid_t pid)
{
	uint64_t best_ns = 0;
	uint32_t best = 0;

	for (size_t i = 0; i < pv->n_forks; i++)
		if (pv->forks[i].f.nspid == (uint32_t)pid &&
		    (!best || pv->forks[i].f.fork_ns >= best_ns)) {
			best = pv->forks[i].tgid;
			best_ns = pv->forks[i].f.fork_ns;
		}
	return best;
}

static pid_t shown_pid(const struct provenance *pv, uint32_t tgid)
{
	const struct sv_fork *f = fork_of(pv, tgid);

	return f && f->nspid ? (pid_t)f->nspid : (pid_t)tgid;
}

void provenance_duration(int64_t ns, char *buf, size_t len)
{
	double v = (double)(ns < 0 ? -ns : ns);

	if (v < 10e6)
		snprintf(buf, len, "%.1f ms", v / 1e6);
	else if (v < 1e9)
		snprintf(buf, len, "%.0f ms", v / 1e6);
	else
		snprintf(buf, len, "%.1f s", v / 1e9);
}

static const char *kind_word(int kind)
{
	return kind == sig_dfl ? "default" : kind == sig_ign ? "ignore" : "handler";
}

/* Append one part of the sentence, after a comma if it is not the first. */
static void add(char *text, size_t len, const char *part)
{
	size_t off = strlen(text);

	snprintf(text + off, len - off, "%s%s", off ? ", " : "", part);
}

int provenance_of(const struct provenance *pv, pid_t pid, int sig, struct prov_answer *ret)
{
	struct prov_answer a;
	uint32_t tgid = tgid_of(pv, pid), up;
	const struct sv_fork *me = tgid ? fork_of(pv, tgid) : NULL;
	const struct sv_sigset *own;
	uint64_t t;
	int state = -1; /* what the process had as the story goes: unknown so far */
	char d1[32], d2[32], part[200];

	memset(&a, 0, sizeof(a));
	if (!me)
		return -ENOENT;
	own = set_of(pv, tgid, sig, me->fork_ns);
	/* Up the tree to the nearest ancestor that set it: what it had set when the
	 * process on the way down forked is what came down, unless an exec on the way
	 * reset a handler. */
	up = me->ppid;
	t = me->fork_ns;
	for (int depth = 0; up && depth < PV_DEPTH; depth++) {
		const struct sv_fork *f = fork_of(pv, up);
		const struct sv_sigset *s;

		if (!f)
			break;
		s = set_of(pv, up, sig, f->fork_ns);
		if (s && s->ts_ns <= t) {
			a.inherited = true;
			a.inh_kind = (int)s->kind;
			a.inh_pid = shown_pid(pv, up);
			a.inh_before_ns = (int64_t)(me->fork_ns - s->ts_ns);
			if (f->exec_ns > s->ts_ns && f->exec_ns <= t && s->kind == caught)
				a.exec_pid = a.inh_pid;
			break;
		}
		if (s) {
			a.inh_unknown = true;
			a.inh_kind = (int)s->kind;
			a.inh_pid = shown_pid(pv, up);
			a.inh_before_ns = -(int64_t)(s->ts_ns - me->fork_ns);
			break;
		}
		/* It passed on what it inherited, unless its exec reset a handler. */
		if (f->exec_ns && f->exec_ns >= f->fork_ns && f->exec_ns <= t && !a.exec_pid)
			a.exec_pid = shown_pid(pv, up);
		t = f->fork_ns;
		up = f->ppid;
	}
	if (!a.inherited)
		a.exec_pid = 0;
	if (own) {
		a.own = true;
		a.own_kind = (int)own->kind;
		a.own_after_ns = (int64_t)(own->ts_ns - me->fork_ns);
	}
	if (!a.inherited && !a.inh_unknown && !a.own)
		return -ENOENT;

	if (a.inherited) {
		provenance_duration(a.inh_before_ns, d1, sizeof(d1));
		snprintf(part, sizeof(part), "%s inherited from pid %d (set %s before fork)",
			 kind_word(a.inh_kind), (int)a.inh_pid, d1);
		add(a.text, sizeof(a.text), part);
		state = a.inh_kind;
		if (a.exec_pid && state == caught) {
			snprintf(part, sizeof(part), "reset to default by the exec of pid %d",
				 (int)a.exec_pid);
			add(a.text, sizeof(a.text), part);
			state = sig_dfl;
		}
	} else if (a.inh_unknown) {
		provenance_duration(-a.inh_before_ns, d1, sizeof(d1));
		snprintf(part, sizeof(part),
			 "inherited from pid %d, which set %s %s after the fork (what it passed "
			 "on is not known)",
			 (int)a.inh_pid, kind_word(a.inh_kind), d1);
		add(a.text, sizeof(a.text), part);
	}
	/* Its own sigaction and its own exec, in the order they happened. */
	{
		bool exec_mine = me->exec_ns >= me->fork_ns && me->exec_ns;
		bool exec_first = exec_mine && (!own || me->exec_ns < own->ts_ns);

		for (int step = 0; step < 2; step++) {
			bool do_exec = (step == 0) == exec_first;

			if (do_exec && exec_mine && state == caught) {
				a.own_exec = true;
				a.own_exec_after_ns = (int64_t)(me->exec_ns - me->fork_ns);
				provenance_duration(a.own_exec_after_ns, d2, sizeof(d2));
				snprintf(part, sizeof(part),
					 "reset to default by this process's exec %s after fork",
					 d2);
				add(a.text, sizeof(a.text), part);
				state = sig_dfl;
			} else if (!do_exec && own) {
				provenance_duration(a.own_after_ns, d2, sizeof(d2));
				snprintf(part, sizeof(part), "%s by this process %s after fork",
					 own->kind == sig_dfl	? "reset to default"
					 : own->kind == sig_ign ? "set to ignore"
								: "handler set",
					 d2);
				add(a.text, sizeof(a.text), part);
				state = (int)own->kind;
			}
		}
	}
	*ret = a;
	return 0;
}
