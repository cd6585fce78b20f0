/* HUP: re-read everything, start a new generation, and retire the old one as the new
 * one becomes ready (pool_reconcile does the one-for-one handover).
 *
 * What a reload replaces (settings, spawn template, listening sockets) is kept in
 * a->old until the old generation is gone, so a new generation that never gets ready
 * can be rolled back and the old one keeps serving. A HUP during a reload is not
 * lost: one more reload follows the current one (several HUPs merge into that one). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arbiter.h"
#include "config_file.h"
#include "log.h"
#include "safefile.h"
#include "timeutil.h"

extern char **environ;

/* Settings a running arbiter cannot take over; a restart or USR2 applies them. */
static void warn_fixed(const struct settings *o, const struct settings *n)
{
#define CHANGED_STR(f) ((o->f == NULL) != (n->f == NULL) || (o->f && strcmp(o->f, n->f) != 0))
	if (CHANGED_STR(control) || CHANGED_STR(pidfile) || CHANGED_STR(bpf_pin) ||
	    CHANGED_STR(metrics) || o->loop != n->loop || o->bpf != n->bpf ||
	    o->bpf_sigaction != n->bpf_sigaction || o->daemon != n->daemon ||
	    o->backlog != n->backlog)
		log_warn("reload: control, pid, metrics, loop, bpf*, daemon and backlog changes "
			 "take effect only after a restart or an upgrade (USR2)");
#undef CHANGED_STR
}

bool reload_busy(const struct arbiter *a)
{
	return a->reloading || a->config_src.fd >= 0;
}

/* How reload a->reload_seq ended, for `sigvisor reload` (it waits for its number in
 * `status`): result a word, reason one line. */
static void reload_outcome(struct arbiter *a, const char *result, const char *reason)
{
	upstate_outcome_push(&a->reload_outcomes, a->reload_seq, result, reason, a->pool.generation,
			     0);
}

/* A HUP that came while the config file was read or a generation replaced: it may
 * carry a fixed configuration, try it. */
static void reload_next(struct arbiter *a)
{
	if (a->reload_pending && !reload_busy(a)) {
		a->reload_pending = false;
		reload_start(a);
	}
}

static void reload_begin(struct arbiter *a, struct config_read *pre);

void reload_start(struct arbiter *a)
{
	char err[1024], *path;
	int r;

	if (reload_busy(a)) {
		a->reload_pending = true;
		log_info("reload already in progress; one more will follow it");
		return;
	}
	a->reload_seq++;
	/* The file is read by a child while the loop goes on: a file whose filesystem
	 * stalls (NFS, FUSE) holds the child, never TERM, status or the workers' exits. */
	path = options_config_path(a->argc, a->argv, getenv("SIGVISOR_ARGS"));
	if (!path) {
		reload_begin(a, NULL); /* no file (or the arguments say why not) */
		return;
	}
	r = config_read_start(&a->config_read, path, err, sizeof(err));
	free(path);
	if (r == 0) {
		a->config_src.fd = a->config_read.fd;
		r = loop_add(&a->loop, &a->config_src, LOOP_IN);
		if (r < 0) {
			snprintf(err, sizeof(err), "cannot watch the config file's reader: %s",
				 strerror(-r));
			a->config_src.fd = -1;
			config_read_free(&a->config_read);
		}
	}
	if (r < 0) {
		log_error("reload: %s; keeping the current configuration", err);
		reload_outcome(a, "config-error", err);
	}
}

static void config_read_done(struct arbiter *a, bool timed_out)
{
	char err[1024];
	int r;

	(void)loop_del(&a->loop, &a->config_src);
	a->config_src.fd = -1;
	r = config_read_finish(&a->config_read, timed_out, err, sizeof(err));
	if (r < 0) {
		log_error("reload: %s; keeping the current configuration", err);
		reload_outcome(a, "config-error", err);
	} else
		reload_begin(a, &a->config_read);
	config_read_free(&a->config_read);
	reload_next(a);
}

void reload_on_config(struct arbiter *a)
{
	if (a->config_src.fd >= 0 && config_read_feed(&a->config_read))
		config_read_done(a, false);
}

void reload_config_timeout(struct arbiter *a, uint64_t now)
{
	if (a->config_src.fd >= 0 && a->config_read.deadline_ms <= now)
		config_read_done(a, true);
}

/* The new generation's size. The configuration's workers applies when it changed;
 * when it did not, a pool grown or shrunk since (TTIN/TTOU, `sigvisor workers`) keeps
 * its size. A pool stopped by WINCH (target 0) starts again at the configuration's.
 * After a USR2 the old image's configured workers comes in the state (upgrade.c): 0
 * when an older image did not say, and then the configuration applies. */
static unsigned reload_target(struct arbiter *a, const struct settings *s)
{
	unsigned cur = a->pool.target, before = a->settings->workers;

	if (a->upgrade.config_workers_pending) {
		a->upgrade.config_workers_pending = false;
		before = a->upgrade.config_workers ? a->upgrade.config_workers : (unsigned)-1;
	}
	/* --max-workers: the size the load made (or a hand set) stays, within the new
	 * bounds. */
	if (s->max_workers && cur) {
		unsigned t = autoscale_bound(cur, s->workers, s->max_workers);

		if (t != cur)
			log_info("reload: pool size %u -> %u, within --workers %u and "
				 "--max-workers %u",
				 cur, t, s->workers, s->max_workers);
		return t;
	}
	if (s->workers != before || cur == 0) {
		if (cur != s->workers && cur != 0)
			log_info("reload: pool size %u -> %u from the configuration's workers", cur,
				 s->workers);
		return s->workers;
	}
	if (cur != s->workers)
		log_info("reload: keeping the pool at %u workers (set by TTIN/TTOU or `sigvisor "
			 "workers`; the configuration's workers is still %u)",
			 cur, s->workers);
	return cur;
}

/* The new generation, with the settings the command line, SIGVISOR_ARGS and the config
 * file (pre: already read, or NULL) make now. */
static void reload_begin(struct arbiter *a, struct config_read *pre)
{
	struct settings *s;
	struct spawn_template tmpl;
	struct listener_set fresh;
	char err[1024];
	unsigned target;
	int r;

	if (a->phase != PHASE_RUNNING) {
		/* a TERM came while the file was read */
		reload_outcome(a, "refused", "shutting down");
		return;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		log_error("reload: out of memory; keeping the current configuration");
		reload_outcome(a, "failed", "out of memory");
		return;
	}
	r = options_load_read(s, a->argc, a->argv, getenv("SIGVISOR_ARGS"), pre, err, sizeof(err));
	if (r == 0 && activation_apply_binds(&a->activation, s, "reload: ") < 0) {
		snprintf(err, sizeof(err), "out of memory");
		r = -ENOMEM;
	}
	if (r == 0 && s->n_binds == 0) {
		s->binds[0] = strdup("127.0.0.1:8000");
		s->n_binds = s->binds[0] ? 1 : 0;
	}
	if (r == 0)
		r = spawn_template_init(&tmpl, s, environ, err, sizeof(err));
	if (r < 0) {
		log_error("reload: %s; keeping the current configuration", err);
		reload_outcome(a, "config-error", err);
		settings_free(s);
		free(s);
		return;
	}
	/* The addresses kept share their sockets, and accept queues, with the old set. */
	r = listener_set_build(&fresh, &a->listeners, s->binds, s->n_binds, s->backlog, err,
			       sizeof(err));
	if (r < 0) {
		log_error("reload: %s; keeping the current configuration", err);
		reload_outcome(a, "failed", err);
		spawn_template_free(&tmpl);
		settings_free(s);
		free(s);
		return;
	}
	warn_fixed(a->settings, s);
	target = reload_target(a, s);

	/* Commit: what was current becomes a->old, kept for a rollback. */
	a->old.settings = a->settings;
	a->old.tmpl = a->tmpl;
	a->old.generation = a->pool.generation;
	a->old.target = a->pool.target;
	a->settings = s;
	a->tmpl = tmpl;
	/* Its watch is on sockets that may close with the old set: off before they go. */
	autoscale_unwatch(&a->autoscale, now_ms());
	listener_set_replace(&a->listeners, &a->old.listeners, &fresh);
	if (listener_set_refresh(&a->listeners) < 0) {
		reload_abort(a, "out of memory");
		return;
	}
	if (s->log_file &&
	    (!a->old.settings->log_file || strcmp(s->log_file, a->old.settings->log_file) != 0)) {
		arbiter_unwatch_log(a);
		r = log_open(s->log_file);
		if (r < 0)
			log_error("reload: cannot open %s, logging where we did: %s", s->log_file,
				  safefile_why());
	}
	log_setup("sigvisor", s->log_format, LOG_LEVEL_INFO);

	a->reloading = true;
	arbiter_sync_pool(a);
	a->pool.generation = ++a->pool.max_generation;
	a->pool.target = target;
	a->old.trial_target = target;
	a->pool.boot_failures = 0;
	a->pool.spawn_failures = 0; /* --ready-timeout for its starts counts from here */
	a->pool.respawn_at_ms = 0;
	a->pool.counters.reloads++;
	{
		char msg[96];

		snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
			 (unsigned long long)now_us());
		notify_upstream(&a->notify, msg);
	}
	log_info("reload: starting generation %u with %u workers; generation %u serves until "
		 "it is ready",
		 a->pool.generation, a->pool.target, a->old.generation);
	pool_reconcile(&a->pool);
}

/* Free what a->old holds, closing the listeners the new set no longer uses. */
void reload_discard(struct arbiter *a)
{
	if (!a->old.settings)
		return;
	listener_set_close(&a->old.listeners, &a->listeners);
	spawn_template_free(&a->old.tmpl);
	settings_free(a->old.settings);
	free(a->old.settings);
	memset(&a->old, 0, sizeof(a->old));
	a->reloading = false;
	arbiter_sync_pool(a);
}

void reload_check(struct arbiter *a)
{
	struct pool *p = &a->pool;

	if (!a->reloading || a->phase >= PHASE_DRAINING)
		return;
	if (pool_count_gen(p, worker_is_active, false) > 0 ||
	    pool_count_gen(p, worker_is_ready, true) < p->target)
		return;
	log_info("reload complete: generation %u serving with %u workers", p->generation,
		 p->target);
	reload_outcome(a, "ok", NULL);
	reload_discard(a);
	notify_upstream(&a->notify, "READY=1");
	reload_next(a);
}

void reload_abort(struct arbiter *a, const char *why)
{
	struct pool *p = &a->pool;
	unsigned failed = p->generation;

	if (!a->reloading)
		return;
	log_error("reload failed: %s; stopping generation %u, generation %u keeps serving", why,
		  failed, a->old.generation);
	retire_new_listeners(a);
	for (size_t i = 0; i < p->n; i++)
		if (p->workers[i]->generation == failed && worker_is_alive(p->workers[i]))
			pool_worker_event(p, p->workers[i], WEV_STOP_TERM);

	/* Swap back: the new set goes, the old one is current again. */
	listener_set_restore(&a->listeners, &a->old.listeners);
	spawn_template_free(&a->tmpl);
	settings_free(a->settings);
	free(a->settings);
	a->settings = a->old.settings;
	a->tmpl = a->old.tmpl;
	p->generation = a->old.generation;
	/* TTIN/TTOU during the trial moved its size: the old generation takes the same
	 * step, or the signals would be lost with the reload. */
	{
		long delta = (long)p->target - (long)a->old.trial_target,
		     t = (long)a->old.target + delta;

		if (t < 1)
			t = 1;
		if (t > SETTINGS_MAX_WORKERS)
			t = SETTINGS_MAX_WORKERS;
		if (delta)
			log_info("reload failed: the pool size changed by %+ld during it "
				 "(TTIN/TTOU); "
				 "generation %u goes from %u to %ld workers",
				 delta, a->old.generation, a->old.target, t);
		p->target = (unsigned)t;
	}
	p->respawn_at_ms = 0;
	p->spawn_failures = 0;
	log_setup("sigvisor", a->settings->log_format, LOG_LEVEL_INFO);
	memset(&a->old, 0, sizeof(a->old));
	a->reloading = false;
	arbiter_sync_pool(a);
	retire_thaw_listeners(a);
	p->counters.reload_failures++;
	reload_outcome(a, "abandoned", why);
	notify_upstream(&a->notify, "READY=1\nSTATUS=reload failed");
	reload_next(a);
	pool_reconcile(&a->pool);
}

int64_t reload_request(struct arbiter *a, const struct control_peer *peer, char *why, size_t whylen)
{
	char asked[96];
	int64_t id;

	control_peer_words(peer, asked, sizeof(asked));
	if (a->phase != PHASE_RUNNING)
		snprintf(why, whylen, "shutting down");
	/* HUP's table would let the exec wait for this reload; the command refuses instead,
	 * so that its outcome never has to be told across an exec it did not ask for. */
	else if (a->upgrade.check_pid || a->upgrade.exec_wanted || a->upgrade.pending)
		snprintf(why, whylen, "an upgrade is in progress; try again when it ends");
	else
		why[0] = '\0';
	if (why[0]) {
		control_log_command("reload", peer, "refused",
				    "control: reload from %s refused: %s", asked, why);
		return -1;
	}
	/* As a HUP: during a reload one more follows it, and every request meanwhile is
	 * that one (they merge as HUPs do), numbered next. */
	id = (int64_t)a->reload_seq + 1;
	control_log_command("reload", peer, reload_busy(a) ? "queued" : "applied",
			    "control: reload #%lld from %s%s", (long long)id, asked,
			    reload_busy(a) ? ", after the one in progress" : "");
	if (reload_busy(a))
		a->reload_pending = true;
	else
		reload_start(a);
	return id;
}
