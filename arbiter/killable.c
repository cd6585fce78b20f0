/* Processes a control signal would kill: see killable.h. */
#include "killable.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "signames.h"
#include "timeutil.h"

const int killable_signals[KILLABLE_N_SIGNALS] = {SIGHUP,   SIGUSR1, SIGUSR2,
						  SIGWINCH, SIGTTIN, SIGTTOU};

/* Records of a process to warn about written by one look; the counts cover all. */
#define KILLABLE_RECORDS 256

enum record_type {
	REC_PROC = 1, /* a killable process (the first of its worker for its signal) */
	REC_TOP,      /* a worker itself: what it handles, what would kill it */
	REC_DONE,     /* the look ended: the counts */
};

struct record {
	uint32_t type;
	uint32_t worker, generation;
	int32_t pid, by;
	uint32_t sig;
	uint64_t handled, kills; /* REC_TOP: bit sig-1 */
	uint32_t counts[KILLABLE_N_SIGNALS];
	int32_t ppid; /* REC_PROC: its parent (by may be further up); REC_DONE: 1 if some
		       * worker has processes of its own (a pre-fork master) */
};

/* A worker's top process as a look saw it: for the earlier-generation check. */
struct seen_top {
	unsigned id, generation;
	pid_t pid;
	uint64_t handled;
	bool has_prev; /* prev_*: the same worker id at an earlier generation */
	unsigned prev_generation;
	pid_t prev_pid;
	uint64_t prev_handled;
};

/* Where a look child writes its records: memory shared with the arbiter (no pipe: the
 * arbiter holds no fd for a look), read only once the child is reaped. A look killed at
 * its deadline never wrote its REC_DONE, and a child killed in the kernel never returns
 * to write anything. */
#define AREA_BYTES (128 * 1024)

struct area {
	uint32_t n;
	uint32_t pad;
	struct record rec[];
};

#define AREA_RECORDS ((AREA_BYTES - sizeof(struct area)) / sizeof(struct record))

/* (worker, generation, signal) already warned about. */
struct warned {
	unsigned id, generation;
	int sig;
};

struct killable {
	pid_t arbiter;
	struct disp_worker *w; /* the ready workers, as last told */
	size_t n, cap;
	uint64_t sig_hash; /* of w: a change schedules looks */
	uint64_t due_ms, again_ms;
	bool first;	/* the look due is the first for this change */
	unsigned tries; /* looks killed for this change */
	/* the look under way */
	pid_t pid;	   /* 0: none */
	struct area *area; /* MAP_SHARED, made for the first look */
	uint64_t deadline_ms;
	pid_t stuck[KILLABLE_STUCK]; /* killed, not reaped yet */
	bool said_stuck;
	/* findings */
	bool looked;
	unsigned counts[KILLABLE_N_SIGNALS];
	struct seen_top *tops;
	size_t n_tops;
	struct warned *warned;
	size_t n_warned;
};

static int sig_index(int sig)
{
	for (int i = 0; i < KILLABLE_N_SIGNALS; i++)
		if (killable_signals[i] == sig)
			return i;
	return -1;
}

struct killable *killable_new(pid_t arbiter)
{
	struct killable *k = calloc(1, sizeof(*k));

	if (!k)
		return NULL;
	k->arbiter = arbiter;
	return k;
}

static void kill_look(struct killable *k)
{
	(void)kill(k->pid, SIGKILL); /* not reaped yet: the pid is still ours */
	for (size_t i = 0; i < KILLABLE_STUCK; i++)
		if (!k->stuck[i]) {
			k->stuck[i] = k->pid;
			break;
		}
	k->pid = 0;
	k->deadline_ms = 0;
}

void killable_free(struct killable *k)
{
	if (!k)
		return;
	if (k->pid)
		kill_look(k);
	if (k->area)
		munmap(k->area, AREA_BYTES);
	free(k->w);
	free(k->tops);
	free(k->warned);
	free(k);
}

void killable_workers(struct killable *k, const struct disp_worker *w, size_t n, uint64_t now)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a over the workers */

	if (!k)
		return;
	for (size_t i = 0; i < n; i++) {
		const uint64_t v[3] = {w[i].id, (uint64_t)w[i].pid, w[i].generation};

		for (size_t j = 0; j < 3; j++)
			h = (h ^ v[j]) * 1099511628211ULL;
	}
	h ^= n;
	if (h == k->sig_hash)
		return; /* the common case */
	k->sig_hash = h;
	if (n > k->cap) {
		struct disp_worker *nw = realloc(k->w, n * sizeof(*nw));

		if (!nw)
			return; /* looked at with the old list, or at the next change */
		k->w = nw;
		k->cap = n;
	}
	if (n)
		memcpy(k->w, w, n * sizeof(*w));
	k->n = n;
	k->tries = 0;
	k->first = true;
	k->due_ms = n ? now : 0;
	k->again_ms = 0;
}

/* ---- the look child ------------------------------------------------------------------ */

/* A record, if there is room: the last slot is REC_DONE's. */
static void put(struct area *a, const struct record *r)
{
	if (a->n + (r->type == REC_DONE ? 0 : 1) < AREA_RECORDS)
		a->rec[a->n++] = *r;
}

/* Bits (sig-1) of the signals meant to control the process that its masks handle, and
 * of those that would kill it. */
static void top_masks(const struct disp_proc *r, uint64_t *handled, uint64_t *kills)
{
	*handled = *kills = 0;
	for (int i = 0; i < KILLABLE_N_SIGNALS; i++) {
		int sig = killable_signals[i], d = disposition_of(&r->m, sig);

		if ((d & ~DISP_BLOCKED) == DISP_HANDLER)
			*handled |= 1ULL << (sig - 1);
		if (d == DISP_DEFAULT_KILLS)
			*kills |= 1ULL << (sig - 1);
	}
}

/* In the child: the whole look, its records in the shared area, then _exit. fork()
 * (not a raw clone3) makes malloc and stdio safe here, the BPF loader's thread
 * notwithstanding. */
static _Noreturn void look_child(const struct killable *k, pid_t parent)
{
	struct record done = {.type = REC_DONE};
	struct area *out = k->area;
	unsigned written = 0;

	/* Keep nothing of the arbiter's open: a child stuck in the kernel must not hold
	 * the listening sockets, pidfds or links. */
	(void)close_range(3, ~0U, 0);
	/* Nor write to the arbiter's log: dispositions_walk's notes are for a terminal. */
	{
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

		if (null >= 0) {
			(void)dup2(null, STDOUT_FILENO);
			(void)dup2(null, STDERR_FILENO);
			close(null);
		}
	}
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	/* A test hook only: a look that never finishes, as one on a worker whose /proc
	 * does not answer, to prove the deadline, the retries and the giving up. */
	if (getenv("SIGVISOR_TEST_KILLABLE_STALL"))
		for (;;)
			pause();
	for (size_t i = 0; i < k->n; i++) {
		struct disp_procs rs = {0};
		uint64_t first = 0; /* signals already written for this worker */

		dispositions_walk(&rs, &k->w[i], k->arbiter);
		if (rs.n > 1)
			done.ppid = 1;
		for (size_t j = 0; j < rs.n; j++) {
			if (j == 0 && rs.r[0].pid == k->w[i].pid) {
				struct record t = {.type = REC_TOP,
						   .worker = k->w[i].id,
						   .generation = k->w[i].generation,
						   .pid = rs.r[0].pid};

				top_masks(&rs.r[0], &t.handled, &t.kills);
				put(out, &t);
				continue;
			}
			for (int s = 0; s < KILLABLE_N_SIGNALS; s++) {
				int sig = killable_signals[s];
				struct record p = {.type = REC_PROC,
						   .worker = k->w[i].id,
						   .generation = k->w[i].generation,
						   .pid = rs.r[j].pid,
						   .sig = (uint32_t)sig};
				pid_t by;

				if (!dispositions_killable(&rs, j, sig, &by))
					continue;
				done.counts[s]++;
				if ((first >> s) & 1 || written >= KILLABLE_RECORDS)
					continue;
				first |= 1ULL << s;
				written++;
				p.by = by;
				p.ppid = rs.r[j].ppid;
				put(out, &p);
			}
		}
		free(rs.r);
	}
	put(out, &done);
	_exit(0);
}

static void start_look(struct killable *k, uint64_t now)
{
	pid_t parent = getpid(), pid;
	size_t stuck = 0;

	for (size_t i = 0; i < KILLABLE_STUCK; i++)
		stuck += k->stuck[i] != 0;
	if (stuck == KILLABLE_STUCK) {
		if (!k->said_stuck)
			log_warn("signals: %d looks at /proc for processes a control signal would "
				 "kill are stuck in the kernel (killed, not gone yet); no new look "
				 "until one ends",
				 KILLABLE_STUCK);
		k->said_stuck = true;
		return;
	}
	if (!k->area) {
		void *m = mmap(NULL, AREA_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			       -1, 0);

		if (m == MAP_FAILED) {
			log_warn("signals: cannot map memory for a look at /proc, ignoring: %m");
			return;
		}
		k->area = m;
	}
	k->area->n = 0;
	pid = fork();
	if (pid == 0)
		look_child(k, parent);
	if (pid < 0) {
		log_warn("signals: cannot start a look at /proc, ignoring: %m");
		return;
	}
	k->pid = pid;
	k->deadline_ms = now + KILLABLE_LOOK_MS;
}

/* ---- findings ------------------------------------------------------------------------ */

static bool warned_before(struct killable *k, unsigned id, unsigned generation, int sig)
{
	struct warned *nw;

	for (size_t i = 0; i < k->n_warned; i++)
		if (k->warned[i].id == id && k->warned[i].generation == generation &&
		    k->warned[i].sig == sig)
			return true;
	/* Forget the generations no worker has any more: the list stays as long as the
	 * pool's signals times its generations alive. */
	for (size_t i = 0; i < k->n_warned;) {
		bool current = false;

		for (size_t j = 0; j < k->n && !current; j++)
			current = k->w[j].generation == k->warned[i].generation;
		if (current)
			i++;
		else
			k->warned[i] = k->warned[--k->n_warned];
	}
	nw = realloc(k->warned, (k->n_warned + 1) * sizeof(*nw));
	if (!nw)
		return false; /* said again next time: better than never */
	k->warned = nw;
	k->warned[k->n_warned++] = (struct warned){id, generation, sig};
	return false;
}

static void take_proc(struct killable *k, const struct record *r)
{
	const char *sn = signal_name((int)r->sig);

	if (sig_index((int)r->sig) < 0 || warned_before(k, r->worker, r->generation, (int)r->sig))
		return;
	log_warn("worker %u (pid %d, generation %u): %s would kill it (default action); its "
		 "%s pid %d handles %s: see sigvisor signals",
		 r->worker, (int)r->pid, r->generation, sn,
		 r->by == r->ppid ? "parent" : "ancestor", (int)r->by, sn);
}

/* A worker itself: killable by a signal its earlier generation handled. Adds to
 * counts. */
static void take_top(struct killable *k, const struct record *r, unsigned *counts)
{
	struct seen_top *t = NULL;

	for (size_t i = 0; i < k->n_tops && !t; i++)
		if (k->tops[i].id == r->worker)
			t = &k->tops[i];
	if (!t) {
		struct seen_top *nt = realloc(k->tops, (k->n_tops + 1) * sizeof(*nt));

		if (!nt)
			return;
		k->tops = nt;
		t = &k->tops[k->n_tops++];
		memset(t, 0, sizeof(*t));
		t->id = r->worker;
		t->generation = r->generation;
	}
	if (r->generation < t->generation)
		return; /* an old worker still draining while its successor runs */
	if (r->generation > t->generation) {
		t->has_prev = true;
		t->prev_generation = t->generation;
		t->prev_pid = t->pid;
		t->prev_handled = t->handled;
	}
	t->generation = r->generation;
	t->pid = r->pid;
	t->handled = r->handled;
	if (!t->has_prev)
		return;
	for (int s = 0; s < KILLABLE_N_SIGNALS; s++) {
		int sig = killable_signals[s];
		const char *sn = signal_name(sig);

		if (!((r->kills & t->prev_handled) >> (sig - 1) & 1))
			continue;
		counts[s]++;
		if (warned_before(k, r->worker, r->generation, sig))
			continue;
		log_warn("worker %u (pid %d, generation %u): %s would kill it (default action); "
			 "its earlier generation (pid %d, generation %u) handled %s: see sigvisor "
			 "signals",
			 r->worker, (int)r->pid, r->generation, sn, (int)t->prev_pid,
			 t->prev_generation, sn);
	}
}

/* The look's records, all there: the child is gone. */
static void take_records(struct killable *k, uint64_t now)
{
	unsigned counts[KILLABLE_N_SIGNALS] = {0};
	bool done = false;
	struct record r;

	for (uint32_t i = 0; i < k->area->n && i < AREA_RECORDS; i++) {
		r = k->area->rec[i];
		if (r.type == REC_PROC)
			take_proc(k, &r);
		else if (r.type == REC_TOP)
			take_top(k, &r, counts);
		else if (r.type == REC_DONE) {
			for (int s = 0; s < KILLABLE_N_SIGNALS; s++)
				counts[s] += r.counts[s];
			done = true;
			/* A pre-fork master may say it is ready before its own workers
			 * set their signals up: look once more, later. A worker alone
			 * (the built-in one) is looked at once: an idle arbiter sleeps. */
			if (r.ppid && k->first && !k->due_ms)
				k->again_ms = now + KILLABLE_AGAIN_MS;
			k->first = false;
		}
	}
	if (!done) {
		log_warn("signals: a look at /proc for processes a control signal would kill "
			 "ended without its findings (pid %d), ignoring",
			 (int)k->pid);
		return;
	}
	memcpy(k->counts, counts, sizeof(counts));
	k->looked = true;
}

int killable_reap(struct killable *k, pid_t pid)
{
	siginfo_t si;

	if (!k || !pid)
		return 0;
	for (size_t i = 0; i < KILLABLE_STUCK; i++)
		if (k->stuck[i] == pid) {
			memset(&si, 0, sizeof(si));
			(void)waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG);
			k->stuck[i] = 0;
			k->said_stuck = false;
			return 1;
		}
	if (pid != k->pid)
		return 0;
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG) < 0 || si.si_pid != pid)
		return -1; /* cannot happen: the caller saw it exit */
	take_records(k, now_ms());
	k->pid = 0;
	k->deadline_ms = 0;
	return 1;
}

void killable_run(struct killable *k, uint64_t now)
{
	if (!k)
		return;
	if (k->pid && k->deadline_ms <= now) {
		pid_t pid = k->pid;

		kill_look(k);
		k->tries++;
		if (k->tries < KILLABLE_TRIES) {
			k->due_ms = now + KILLABLE_RETRY_MS;
			log_info("signals: the look at /proc for processes a control signal would "
				 "kill did not finish in %.1f s; killed it (pid %d), looking again "
				 "in %.1f s",
				 KILLABLE_LOOK_MS / 1000.0, (int)pid, KILLABLE_RETRY_MS / 1000.0);
		} else {
			k->due_ms = k->again_ms = 0;
			log_warn("signals: the look at /proc for processes a control signal would "
				 "kill did not finish in %.1f s, %d times (a worker's /proc does "
				 "not "
				 "answer); killed it (pid %d), not looking again until the workers "
				 "change",
				 KILLABLE_LOOK_MS / 1000.0, KILLABLE_TRIES, (int)pid);
		}
	}
	if (k->pid)
		return;
	if (k->due_ms && k->due_ms <= now) {
		k->due_ms = 0;
		start_look(k, now);
	} else if (!k->due_ms && k->again_ms && k->again_ms <= now) {
		k->again_ms = 0;
		start_look(k, now);
	}
}

uint64_t killable_next_deadline(const struct killable *k)
{
	uint64_t next;

	if (!k)
		return 0;
	if (k->pid)
		return k->deadline_ms;
	next = k->due_ms;
	if (!next || (k->again_ms && k->again_ms < next))
		next = k->again_ms;
	return next;
}

unsigned killable_count(const struct killable *k, size_t i)
{
	return k && i < KILLABLE_N_SIGNALS ? k->counts[i] : 0;
}

bool killable_looked(const struct killable *k)
{
	return k && k->looked;
}
