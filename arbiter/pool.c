/* The worker pool (pool.h). */
#include "pool.h"
#include "pool_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "serving.h"
#include "signames.h"
#include "timeutil.h"

#ifndef P_PIDFD
#define P_PIDFD 3 /* glibc 2.36 does not define it */
#endif

void pool_init(struct pool *p, unsigned target, struct loop *loop, struct notify *notify,
	       const struct pool_hooks *hooks)
{
	memset(p, 0, sizeof(*p));
	p->target = target;
	p->generation = 1;
	p->max_generation = 1;
	p->loop = loop;
	p->notify = notify;
	p->hooks = *hooks;
	p->slots.stale = true;
	p->hb.fd = -1;
	p->ready_epoch = 1;
	boot_gate_init(&p->boot, boot_gate_default_cap());
}

void pool_configure(struct pool *p, const struct pool_config *cfg)
{
	bool always = p->cfg.notify_watch_always != cfg->notify_watch_always;

	p->cfg = *cfg;
	/* a reload's: once per generation, not per loop iteration */
	for (size_t i = 0; always && i < p->n; i++)
		pool_mark_watch(p, p->workers[i]);
}

bool worker_is_active(const struct worker *w)
{
	return w->state == WORKER_BOOTING || w->state == WORKER_READY;
}

bool worker_is_alive(const struct worker *w)
{
	return w->state != WORKER_EXITED;
}

bool worker_is_ready(const struct worker *w)
{
	return w->state == WORKER_READY;
}

bool worker_is_booting(const struct worker *w)
{
	return w->state == WORKER_BOOTING;
}

unsigned pool_count_gen(const struct pool *p, bool (*pred)(const struct worker *w), bool current)
{
	unsigned n = 0;

	for (int s = 0; s < WORKER_STATE_MAX; s++) {
		struct worker probe = {.state = (enum worker_state)s};

		if (pred(&probe))
			n += slots_count(p, (enum worker_state)s, current);
	}
	return n;
}

unsigned pool_count(const struct pool *p, bool (*pred)(const struct worker *w))
{
	return pool_count_gen(p, pred, true) + pool_count_gen(p, pred, false);
}

uint64_t backoff_ms(unsigned failures)
{
	uint64_t ms = BACKOFF_FIRST_MS;

	for (unsigned i = 1; i < failures && ms < BACKOFF_MAX_MS; i++)
		ms *= 2;
	return ms < BACKOFF_MAX_MS ? ms : BACKOFF_MAX_MS;
}

static void send_signal(struct worker *w, int sig)
{
	/* Through the pidfd: it names this process, never a recycled pid. ESRCH means
	 * it already exited and waits to be reaped. */
	if (pidfd_send_signal(w->src.fd, sig, NULL, 0) < 0 && errno != ESRCH)
		log_warn("cannot send SIG%s to worker %u (pid %d), ignoring: %m", signal_name(sig),
			 w->id, w->pid);
	else
		log_debug("sent SIG%s to worker %u (pid %d)", signal_name(sig), w->id, w->pid);
}

/* Apply one event through the lifecycle table and carry out its actions, except
 * REPLACE and BOOT_FAILED which only the exit path acts on. */
unsigned pool_apply(struct pool *p, struct worker *w, enum worker_event ev)
{
	struct transition t = worker_transition(w->state, ev);
	enum worker_state was = w->state;

	if (w->state == WORKER_BOOTING && t.next == WORKER_READY)
		w->ready_ms = now_ms(); /* the boot window counts from here */
	w->state = t.next;
	if (was == WORKER_BOOTING && w->state != WORKER_BOOTING)
		boot_gate_leave(&p->boot, w->pid);
	slots_moved(p, w, was);
	if (was != w->state)
		pool_mark_watch(p, w);
	/* A worker that is stopped (SIGSTOP, a debugger, or the TTIN a terminal sends its
	 * background group) would see its stop signal only when continued, and be killed
	 * at the graceful timeout instead: continue it first (systemd sends SIGCONT too).
	 * Before, not after: a worker that exits at once may be stopped again by then on
	 * purpose (LeakSanitizer's ptrace attach at exit, a crash handler's), and a late
	 * SIGCONT would discard that stop and hang it. */
	if (t.actions & (WACT_SEND_TERM | WACT_SEND_QUIT | WACT_SEND_ABRT))
		send_signal(w, SIGCONT);
	if (t.actions & WACT_SEND_TERM) {
		w->stop_signal = SIGTERM;
		send_signal(w, SIGTERM);
	}
	if (t.actions & WACT_SEND_QUIT) {
		w->stop_signal = SIGQUIT;
		send_signal(w, SIGQUIT);
	}
	if (t.actions & WACT_SEND_ABRT) {
		w->stop_signal = SIGABRT;
		send_signal(w, SIGABRT);
	}
	if (t.actions & WACT_SEND_KILL) {
		log_warn("worker %u (pid %d) still running %.1f s after SIG%s, sending SIGKILL",
			 w->id, w->pid, (double)p->cfg.graceful_timeout_ms / 1000.0,
			 signal_name(w->stop_signal));
		p->counters.killed++;
		send_signal(w, SIGKILL);
	}
	if (t.actions & WACT_ARM_STOP)
		slots_set_deadline(p, w, now_ms() + p->cfg.graceful_timeout_ms);
	if (t.actions & WACT_CLEAR_DEADLINE)
		slots_set_deadline(p, w, 0);
	return t.actions;
}

void pool_worker_event(struct pool *p, struct worker *w, enum worker_event ev)
{
	(void)pool_apply(p, w, ev);
}

static struct worker *find_pid(struct pool *p, pid_t pid)
{
	struct worker *w = slots_find_pid(p, pid);

	return w && worker_is_alive(w) ? w : NULL;
}

/* Whether a worker that left unasked failed to boot: it never got ready, its exec
 * failed, or it died within BOOT_WINDOW_MS of getting ready. READY=1 alone proves
 * nothing: a worker that says it and exits at once would otherwise be restarted at
 * once, forever (systemd, too, counts every restart against StartLimitBurst, whatever
 * the unit said before it died). */
static bool boot_failed(const struct worker *w, unsigned actions, const siginfo_t *si, uint64_t now)
{
	if (actions & WACT_BOOT_FAILED)
		return true;
	if (si->si_code == CLD_EXITED && si->si_status == 127)
		return true;
	return w->ready_ms && now - w->ready_ms < BOOT_WINDOW_MS;
}

void pool_record_boot_failure(struct pool *p, struct worker *w, uint64_t now)
{
	if (p->boot_failures && now - p->last_boot_failure_ms > BOOT_FAILURE_RESET_MS)
		p->boot_failures = 0;
	p->boot_failures++;
	p->counters.boot_failures_total++;
	p->last_boot_failure_ms = now;
	if (p->boot_failures >= BOOT_FAILURE_LIMIT) {
		log_error("worker %u failed to boot %u times in a row, giving up (exit status 3)",
			  w->id, p->boot_failures);
		p->hooks.fatal(p->hooks.ctx, 3);
		return;
	}
	p->respawn_at_ms = now + backoff_ms(p->boot_failures);
	if (w->ready_ms)
		log_warn("worker %u failed to boot (%u of %u): it died %.3f s after it was ready "
			 "(less than %.1f s); next start in %llu ms",
			 w->id, p->boot_failures, BOOT_FAILURE_LIMIT,
			 (double)(now - w->ready_ms) / 1000.0, (double)BOOT_WINDOW_MS / 1000.0,
			 (unsigned long long)(p->respawn_at_ms - now));
	else
		log_warn("worker %u failed to boot (%u of %u); next start in %llu ms", w->id,
			 p->boot_failures, BOOT_FAILURE_LIMIT,
			 (unsigned long long)(p->respawn_at_ms - now));
}

/* Deregister before close (see control.c's conn_free for why). */
static void close_notify(struct pool *p, struct worker *w)
{
	if (w->notify_src.fd < 0)
		return;
	if (w->notify_watched)
		(void)loop_del(p->loop, &w->notify_src);
	notify_close_worker(p->notify, w->notify_src.fd);
	w->notify_src.fd = -1;
	w->notify_watched = false;
	heartbeats_release(&p->hb, w->hb_slot);
	w->hb_slot = -1;
}

static void worker_exited(struct pool *p, struct worker *w, const siginfo_t *si)
{
	uint64_t now = now_ms(), up = now - w->started_ms;
	bool asked = w->state == WORKER_STOPPING || w->state == WORKER_KILLING;
	unsigned actions;
	bool failed;

	p->counters.exited++;
	if (si->si_code == CLD_EXITED) {
		if (si->si_status == 0)
			p->counters.exited_clean++;
		else
			p->counters.exited_error++;
		log_fields(asked || si->si_status == 0 ? LOG_LEVEL_INFO : LOG_LEVEL_WARN,
			   LOG_FIELDS(LOG_INT("worker_id", w->id), LOG_INT("worker_pid", w->pid),
				      LOG_INT("generation", w->generation),
				      LOG_INT("exit_status", si->si_status)),
			   "worker %u (pid %d, generation %u) exited with status %d after %.3f s%s",
			   w->id, w->pid, w->generation, si->si_status, (double)up / 1000.0,
			   asked ? "" : ", unexpectedly");
	} else {
		/* Died of the very signal it was sent to stop (puma re-raises TERM once
		 * it has finished): a retirement, not a crash. A SIGKILL at the deadline
		 * is neither; it is counted in `killed` too. */
		if (asked && si->si_code == CLD_KILLED && si->si_status == w->stop_signal &&
		    w->stop_signal != SIGKILL)
			p->counters.exited_retired++;
		else
			p->counters.exited_signal++;
		log_fields(asked && si->si_status == w->stop_signal ? LOG_LEVEL_INFO
								    : LOG_LEVEL_WARN,
			   LOG_FIELDS(LOG_INT("worker_id", w->id), LOG_INT("worker_pid", w->pid),
				      LOG_INT("generation", w->generation),
				      LOG_STR("signal", signal_name(si->si_status))),
			   "worker %u (pid %d, generation %u) killed by SIG%s%s after %.3f s%s",
			   w->id, w->pid, w->generation, signal_name(si->si_status),
			   si->si_code == CLD_DUMPED ? " (core dumped)" : "", (double)up / 1000.0,
			   asked ? "" : ", unexpectedly");
	}

	actions = pool_apply(p, w, WEV_EXITED);
	failed = boot_failed(w, actions, si, now);
	(void)loop_del(p->loop, &w->src);
	close(w->src.fd);
	w->src.fd = -1;
	close_notify(p, w);
	serving_forget(p->serving, w->pid);
	slots_set_deadline(p, w, 0);
	p->garbage = true;

	if (asked || p->draining)
		return;
	if (p->trial && w->generation == p->generation &&
	    (failed || si->si_code != CLD_EXITED || si->si_status != 0)) {
		/* A broken new generation must not take the serving one down with it. */
		p->hooks.trial_failed(p->hooks.ctx, "a worker of the new generation failed");
		return;
	}
	/* gunicorn's convention, kept (doc/RUNBOOK.md): 3 = the worker failed to boot,
	 * 4 = the application failed to load. Either stops the whole server. */
	if (si->si_code == CLD_EXITED && (si->si_status == 3 || si->si_status == 4)) {
		log_error("worker %u exited with status %d: %s; shutting down", w->id,
			  si->si_status,
			  si->si_status == 3 ? "it failed to boot"
					     : "the application failed to load");
		p->hooks.fatal(p->hooks.ctx, si->si_status);
		return;
	}
	/* The replacement itself comes from pool_reconcile(): the slot is now empty. */
	if (failed)
		pool_record_boot_failure(p, w, now);
	else
		p->boot_failures = 0;
	if (!p->draining)
		p->counters.replaced++;
}

void pool_reap_worker(struct pool *p, struct worker *w)
{
	siginfo_t si;

	if (!worker_is_alive(w))
		return;
	memset(&si, 0, sizeof(si));
	if (waitid((idtype_t)P_PIDFD, (id_t)w->src.fd, &si, WEXITED | WNOHANG) < 0) {
		log_warn("waitid on worker %u (pid %d), ignoring: %m", w->id, w->pid);
		return;
	}
	if (si.si_pid == 0)
		return; /* not exited: a spurious wakeup */
	p->reaped_recent[p->reaped_next++ % POOL_REAPED_RECENT] = si.si_pid;
	worker_exited(p, w, &si);
}

void pool_child_exited(struct pool *p, pid_t pid, int code, uint64_t now)
{
	bool exit = code == CLD_EXITED || code == CLD_KILLED || code == CLD_DUMPED, known = false;

	/* A worker, alive or reaped just before through its pidfd (the loop's events
	 * come in either order): the sweep can wait for more. */
	for (size_t i = 0; exit && !known && i < POOL_REAPED_RECENT; i++)
		known = p->reaped_recent[i] == pid;
	if (!exit || (!known && !slots_find_pid(p, pid))) {
		pool_reap_children(p);
		return;
	}
	if (!p->reap_sweep_ms)
		p->reap_sweep_ms = now + POOL_REAP_SWEEP_MS;
}

void pool_reap_children(struct pool *p)
{
	p->reap_sweep_ms = 0;
	/* Peek with WNOWAIT so a worker's exit status is never taken by the P_ALL wait:
	 * workers are reaped through their pidfd, and while one is an unreaped zombie its
	 * pid cannot have been recycled, so matching it against the table is safe. */
	for (;;) {
		siginfo_t si;

		memset(&si, 0, sizeof(si));
		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0) {
			if (errno != ECHILD)
				log_warn("waitid, ignoring: %m");
			return;
		}
		if (si.si_pid == 0)
			return;
		struct worker *w = find_pid(p, si.si_pid);

		if (w) {
			pool_reap_worker(p, w);
			if (worker_is_alive(w))
				return; /* cannot happen; never spin on it */
			continue;
		}
		/* the arbiter's own children (a USR2's --check) are its to reap */
		int other =
			p->hooks.other_child ? p->hooks.other_child(p->hooks.ctx, si.si_pid) : 0;

		if (other < 0)
			return; /* cannot happen; never spin on it */
		if (other > 0)
			continue;
		pid_t orphan = si.si_pid;

		if (waitid(P_PID, (id_t)orphan, &si, WEXITED | WNOHANG) < 0) {
			log_warn("reaping orphan pid %d, ignoring: %m", (int)orphan);
			return;
		}
		p->counters.orphans_reaped++;
		log_debug("reaped orphan pid %d", (int)orphan);
	}
}

/* A worker just became ready with --timeout on: whether it uses the watchdog shows in
 * its first WATCHDOG=1, which may wait unread in the notify socket (see notify.h). Its
 * own deadline, a --timeout from now, reads it; a worker that has not pinged by then
 * does not use the watchdog (pool_run_deadlines). Each its own: one sweep for all
 * judged those ready more than half a timeout after the first before their first ping
 * was due, and never read their sockets again (4,096 workers take longer than that to
 * start). */
void pool_watch_for_pings(struct pool *p, struct worker *w)
{
	if (!p->cfg.timeout_ms || w->watchdog || w->state != WORKER_READY)
		return;
	if (w->hb_slot >= 0) {
		/* It beats from before its READY=1 (worker/boot.c): watched from now. */
		w->watchdog = true;
		pool_heartbeat_watch(p, w, now_ms());
		return;
	}
	slots_set_deadline(p, w, now_ms() + p->cfg.timeout_ms);
}

/* --timeout and a grace of 1/32 of it, at most 100 ms: far above a timer's jitter, far
 * below anything a user would notice, and a ping or beat due just as the deadline
 * falls is not taken for silence. */
uint64_t pool_watchdog_silent_ms(const struct pool *p)
{
	uint64_t t = p->cfg.timeout_ms;

	return t + (t / 32 < 100 ? t / 32 : 100);
}

void pool_heartbeat_watch(struct pool *p, struct worker *w, uint64_t now)
{
	uint64_t due = now + pool_watchdog_silent_ms(p);

	heartbeats_arm(&p->hb, w->hb_slot, now);
	if (!p->hb_sweep_ms || due < p->hb_sweep_ms)
		p->hb_sweep_ms = due;
}

static int grow(struct pool *p)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 8;
		struct worker **nw = realloc(p->workers, cap * sizeof(*nw));

		if (!nw)
			return -ENOMEM;
		p->workers = nw;
		p->cap = cap;
	}
	return 0;
}

int pool_adopt(struct pool *p, struct worker *w)
{
	if (grow(p) < 0)
		return -ENOMEM;
	p->workers[p->n++] = w;
	/* its fields are filled in after this (upgrade_adopt.c): indexed at the next use */
	p->slots.stale = true;
	p->ready_epoch++;
	return 0;
}

static int add_worker(struct pool *p, unsigned id)
{
	struct worker *w;
	pid_t pid;
	int pidfd, r;

	if (grow(p) < 0)
		return -ENOMEM;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->notify_src.type = SOURCE_NOTIFY;
	r = notify_open_worker(p->notify, p->cfg.notify_uid, p->cfg.notify_gid, &w->notify_src.fd,
			       w->notify_env, sizeof(w->notify_env));
	if (r < 0) {
		free(w);
		return r;
	}
	w->hb_slot = -1;
	if (p->cfg.heartbeat && p->cfg.timeout_ms) {
		if (!p->hb_tried) {
			p->hb_tried = true;
			heartbeats_init(&p->hb);
		}
		w->hb_slot = heartbeats_take(&p->hb, w);
	}
	r = p->hooks.spawn(p->hooks.ctx, id, p->generation, w->notify_env, w->hb_slot, &pid,
			   &pidfd);
	if (r < 0) {
		heartbeats_release(&p->hb, w->hb_slot);
		notify_close_worker(p->notify, w->notify_src.fd);
		free(w);
		return r;
	}
	w->src.type = SOURCE_WORKER;
	w->src.fd = pidfd;
	w->id = id;
	w->pid = pid;
	w->generation = p->generation;
	w->state = WORKER_BOOTING;
	w->started_ms = now_ms();
	boot_gate_enter(&p->boot, pid, w->started_ms);
	p->workers[p->n++] = w;
	(void)slots_add(p, w);
	pool_mark_watch(p, w);
	p->counters.spawned++;
	r = loop_add(p->loop, &w->src, LOOP_IN);
	if (r < 0)
		log_error("cannot watch worker %u's pidfd, ignoring: %s", id, strerror(-r));
	log_fields(LOG_LEVEL_INFO,
		   LOG_FIELDS(LOG_INT("worker_id", id), LOG_INT("worker_pid", pid),
			      LOG_INT("generation", w->generation)),
		   "worker %u started (pid %d, generation %u)", id, pid, w->generation);
	w->notify = p->cfg.wait_notify;
	if (!w->notify && p->cfg.wait_serving && p->serving) {
		/* READY=1, seen serving, or the fallback: whichever comes first */
		w->notify = serving_watch(p->serving, pid, w->started_ms,
					  p->cfg.ready_timeout_ms ? p->cfg.ready_timeout_ms
								  : 30000) == 0;
	}
	if (!w->notify) {
		/* Without sd_notify a worker counts as ready once started (doc/USAGE.md). */
		pool_apply(p, w, WEV_READY);
		pool_watch_for_pings(p, w);
	} else if (p->cfg.ready_timeout_ms && !serving_watching(p->serving, pid)) {
		slots_set_deadline(p, w, w->started_ms + p->cfg.ready_timeout_ms);
	}
	return 0;
}

void pool_serving(struct pool *p, pid_t pid, const char *how)
{
	struct worker *w = find_pid(p, pid);
	double up;

	if (!w || w->state != WORKER_BOOTING)
		return;
	up = (double)(now_ms() - w->started_ms) / 1000.0;
	if (how)
		log_info("worker %u (pid %d, generation %u) ready after %.3f s: %s", w->id, w->pid,
			 w->generation, up, how);
	else
		log_warn("worker %u (pid %d, generation %u) not seen serving after %.1f s (no "
			 "READY=1, no accept or wait on a listening socket): counting it as ready "
			 "(--ready-mode start or notify: no waiting)",
			 w->id, w->pid, w->generation, up);
	pool_apply(p, w, WEV_READY);
	pool_watch_for_pings(p, w);
}

/* The highest-numbered active worker of the current generation (current) or of an older
 * one (!current), or NULL. */
static struct worker *highest(struct pool *p, bool current)
{
	return current ? slots_highest_current(p) : slots_highest_old(p);
}

void pool_reconcile(struct pool *p)
{
	unsigned active, ready, old;
	uint64_t now;

	if (p->draining)
		return;
	active = pool_count_gen(p, worker_is_active, true);
	ready = pool_count_gen(p, worker_is_ready, true);
	old = pool_count_gen(p, worker_is_active, false);

	/* Too many (TTOU, WINCH): retire the highest slots, keeping ids compact. */
	for (struct worker *w; active > p->target && (w = highest(p, true)); active--) {
		log_info("stopping worker %u (pid %d): pool size is now %u", w->id, w->pid,
			 p->target);
		pool_apply(p, w, WEV_STOP_TERM);
		if (ready && w->state == WORKER_READY)
			ready--;
	}
	/* A reload: each new worker that is ready lets one old worker go, so the pool
	 * never serves with fewer than its size. */
	for (struct worker *w; old && ready + old > p->target && (w = highest(p, false)); old--) {
		/* its drain must be the last (retire.c in arbiter.h) */
		if (old == 1)
			p->hooks.old_retiring(p->hooks.ctx);
		log_info("retiring worker %u (pid %d, generation %u)", w->id, w->pid,
			 w->generation);
		pool_apply(p, w, WEV_STOP_TERM);
	}
	if (!old)
		p->hooks.old_retiring(p->hooks.ctx);
	if (active >= p->target)
		return;
	now = now_ms();
	if (p->respawn_at_ms > now)
		return; /* the deadline timer brings us back */
	p->respawn_at_ms = 0;
	for (unsigned started = 0; active < p->target; started++) {
		int r;

		/* 200 TTIN counted by the probes, or `sigvisor workers 4096`: a few at a
		 * time, the rest once the events waiting now are served (the deadline
		 * timer brings us back at once), so the loop never starts hundreds of
		 * processes before it answers TERM or status again. And for SPAWN_BATCH_MS
		 * at most: a clone of a large arbiter (its fd table, its page tables) takes
		 * longer on a busy machine. */
		if (started == SPAWN_BATCH || (started && now_ms() - now >= SPAWN_BATCH_MS)) {
			p->respawn_at_ms = now;
			return;
		}
		/* Not more booting at once than the CPUs can run without starving
		 * the loop (boot_gate.h): a worker ready, gone or seen waiting lets
		 * the next one start; the gate's deadline brings us back. */
		if (!boot_gate_open(&p->boot, now_ms()))
			return;
		r = add_worker(p, slots_free_id(p));

		if (r < 0) {
			p->counters.spawn_errors++;
			if (!p->spawn_failures++)
				p->spawn_failing_since_ms = now;
			p->spawn_error = -r;
			/* pool_next_deadline() wakes the loop for it, even while an old
			 * generation fills the pool. */
			p->respawn_at_ms = now + backoff_ms(p->spawn_failures);
			errno = -r;
			if (p->trial && p->spawn_failures == 1 && p->cfg.ready_timeout_ms)
				log_error(
					"cannot start a worker: %m; retrying in %llu ms (the old "
					"generation serves meanwhile; the reload is abandoned if "
					"its workers cannot start within %.1f s, --ready-timeout)",
					(unsigned long long)(p->respawn_at_ms - now),
					(double)p->cfg.ready_timeout_ms / 1000.0);
			else
				log_error("cannot start a worker: %m; retrying in %llu ms",
					  (unsigned long long)(p->respawn_at_ms - now));
			return;
		}
		p->spawn_failures = 0;
		active++;
	}
}

void pool_stop_all(struct pool *p, enum worker_event ev)
{
	for (size_t i = 0; i < p->n; i++)
		if (worker_is_alive(p->workers[i]))
			pool_apply(p, p->workers[i], ev);
}

enum forward_verdict {
	FORWARD_OK,
	FORWARD_NOT_YET, /* between clone and exec: nothing to reopen, and deadly later */
	FORWARD_KILLS,	 /* neither blocked, ignored nor caught: the default kills it */
};

/* Whether forwarding sig to pid is safe (/proc/PID/status). The seed of this check: a
 * handler installed in a leader before fork that the worker's framework reset, so a
 * "log rotation" USR1 kills it. A worker still blocking exactly what the arbiter
 * blocks has not reached exec: the signal would wait there and kill it once the
 * post-fork code unblocks everything, so it is not sent at all. */
static enum forward_verdict forward_verdict(const struct pool *p, pid_t pid, int sig)
{
	char path[64], line[256];
	unsigned long long mask = 0, blk = 0, bit = 1ULL << (sig - 1);
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return FORWARD_NOT_YET;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long v;

		if (sscanf(line, "SigBlk: %llx", &v) == 1)
			blk = v;
		else if (sscanf(line, "SigIgn: %llx", &v) == 1 ||
			 sscanf(line, "SigCgt: %llx", &v) == 1)
			mask |= v;
	}
	fclose(f);
	if (blk == p->blocked_mask)
		return FORWARD_NOT_YET;
	return (mask | blk) & bit ? FORWARD_OK : FORWARD_KILLS;
}

void pool_signal_all(struct pool *p, int sig, struct pool_signalled *ret)
{
	struct pool_signalled none;

	if (!ret)
		ret = &none;
	*ret = (struct pool_signalled){0};
	for (size_t i = 0; i < p->n; i++) {
		struct worker *w = p->workers[i];
		enum forward_verdict v = FORWARD_OK;

		if (!worker_is_active(w))
			continue;
		/* a booting worker has not opened its logs yet, nor installed handlers */
		if (sig == SIGUSR1)
			v = w->state == WORKER_BOOTING ? FORWARD_NOT_YET
						       : forward_verdict(p, w->pid, sig);
		if (v == FORWARD_NOT_YET) {
			log_debug("not sending SIG%s to worker %u (pid %d): still starting",
				  signal_name(sig), w->id, w->pid);
			ret->starting++;
			continue;
		}
		if (v == FORWARD_KILLS) {
			ret->would_kill++;
			log_warn("not sending SIG%s to worker %u (pid %d): it neither handles, "
				 "ignores "
				 "nor blocks it, so the default action would kill it",
				 signal_name(sig), w->id, w->pid);
			continue;
		}
		send_signal(w, sig);
		ret->sent++;
	}
}

void pool_stop_worker(struct pool *p, struct worker *w, int sig)
{
	struct transition t;

	if (sig == SIGTERM || sig == SIGQUIT) {
		(void)pool_apply(p, w, sig == SIGTERM ? WEV_STOP_TERM : WEV_STOP_QUIT);
		return;
	}
	/* INT or KILL: the lifecycle of a quick stop (the state, the graceful deadline
	 * with KILL after it), with this signal in place of QUIT. */
	enum worker_state was = w->state;

	t = worker_transition(w->state, WEV_STOP_QUIT);
	w->state = t.next;
	slots_moved(p, w, was);
	pool_mark_watch(p, w);
	if (sig != SIGKILL)
		send_signal(w, SIGCONT); /* see apply() */
	w->stop_signal = sig;
	send_signal(w, sig);
	if (t.actions & WACT_ARM_STOP)
		slots_set_deadline(p, w, now_ms() + p->cfg.graceful_timeout_ms);
}

int pool_send_worker(struct worker *w, int sig)
{
	if (pidfd_send_signal(w->src.fd, sig, NULL, 0) < 0)
		return -errno;
	return 0;
}

void pool_gc(struct pool *p)
{
	size_t k = 0;

	if (!p->garbage)
		return;
	for (size_t i = 0; i < p->n_dirty; i++)
		if (p->watch_dirty[i]->state != WORKER_EXITED)
			p->watch_dirty[k++] = p->watch_dirty[i];
	p->n_dirty = k;
	k = 0;
	for (size_t i = 0; i < p->n; i++) {
		if (p->workers[i]->state == WORKER_EXITED) {
			slots_remove(p, p->workers[i]);
			free(p->workers[i]);
		} else
			p->workers[k++] = p->workers[i];
	}
	p->n = k;
	p->garbage = false;
}

void pool_free(struct pool *p)
{
	struct notify *n = p->notify;

	for (size_t i = 0; i < p->n; i++) {
		if (p->workers[i]->src.fd >= 0)
			close(p->workers[i]->src.fd);
		notify_close_worker(n, p->workers[i]->notify_src.fd);
		free(p->workers[i]);
	}
	free(p->workers);
	p->workers = NULL;
	p->n = p->cap = 0;
	slots_free(p);
	free(p->watch_dirty);
	p->watch_dirty = NULL;
	p->n_dirty = p->dirty_cap = 0;
	heartbeats_close(&p->hb);
	p->hb_tried = false;
	p->hb_sweep_ms = 0;
}
