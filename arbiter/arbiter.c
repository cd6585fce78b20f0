/* The arbiter's loop: signal intake and dispatch, shutdown, deadlines; the hooks the
 * pool reports through; and arbiter_main, which sets up (setup.c), runs the loop and
 * tears down.
 *
 * Once the loop runs, it never exits on an error a retry could survive: it logs
 * "..., ignoring" and goes on. */
#include "arbiter.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "descendants.h"
#include "killable.h"
#include "log.h"
#include "serving.h"
#include "signames.h"
#include "timeutil.h"
#include "version.h"

static void arm_timer(struct arbiter *a)
{
	uint64_t next = pool_next_deadline(&a->pool);
	struct itimerspec its = {0};

	next = earlier_deadline(next, control_next_deadline(&a->control));
	next = earlier_deadline(next, notify_upstream_deadline(&a->notify)); /* our WatchdogSec= */
	next = earlier_deadline(next, notify_rejected_deadline(&a->notify));
	next = earlier_deadline(next, a->phase_deadline_ms);
	next = earlier_deadline(next, a->leftovers_at_ms);
	next = earlier_deadline(next, a->bpf_load_at_ms);
	next = earlier_deadline(next, a->upgrade.check_deadline_ms);
	next = earlier_deadline(next, a->upgrade.drain_deadline_ms);
	next = earlier_deadline(next, a->log_retry_ms);
	next = earlier_deadline(next, killable_next_deadline(a->killable));
	next = earlier_deadline(next, autoscale_next_deadline(&a->autoscale));
	if (a->config_src.fd >= 0)
		next = earlier_deadline(next, a->config_read.deadline_ms);
	if (next == a->timer_armed_ms)
		return; /* the common idle case: no system call */
	if (next) {
		its.it_value.tv_sec = (time_t)(next / 1000);
		its.it_value.tv_nsec = (long)(next % 1000) * 1000000;
	}
	if (timerfd_settime(a->timer.fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		log_error("cannot arm the deadline timer, ignoring: %m");
	else
		a->timer_armed_ms = next;
}

/* After SIGKILL, how often the tree is walked again (a process may have forked as it
 * was killed, its child adopted by us unseen), and for how long: a process stuck in
 * uninterruptible sleep must not keep the arbiter from exiting. */
#define LEFTOVERS_KILL_RETRY_MS 100
#define LEFTOVERS_KILL_WAIT_MS	5000

/* The workers are gone and some of what they started is not: a child that ignored its
 * worker's TERM, or one that double-forked away (and came to us, the subreaper or PID
 * 1). Nothing we started may outlive us: TERM now, KILL at the graceful deadline. */
static void leftovers_start(struct arbiter *a)
{
	uint64_t now = now_ms(), kill_at = a->drain_started_ms + a->settings->graceful_timeout_ms;
	int n = descendants_signal(SIGTERM);

	if (n < 0) {
		log_warn("cannot list what the workers started (/proc: %s): exiting without "
			 "stopping it",
			 strerror(-n));
		a->done = true;
		return;
	}
	a->leftovers = LEFTOVERS_TERMED;
	a->leftovers_at_ms = kill_at > now ? kill_at : now;
	if (n > 0)
		log_info("%d processes the workers started still run after their workers "
			 "exited: sent SIGTERM, SIGKILL in %.1f s",
			 n, (double)(a->leftovers_at_ms - now) / 1000.0);
}

static void leftovers_tick(struct arbiter *a, uint64_t now)
{
	int n;

	if (!a->leftovers_at_ms || now < a->leftovers_at_ms)
		return;
	if (a->leftovers == LEFTOVERS_KILLED && now >= a->leftovers_give_up_ms) {
		log_warn("processes the workers started still run %.1f s after SIGKILL "
			 "(uninterruptible sleep?): exiting without them",
			 (double)LEFTOVERS_KILL_WAIT_MS / 1000.0);
		a->leftovers_at_ms = 0;
		a->done = true;
		return;
	}
	n = descendants_signal(SIGKILL);
	if (a->leftovers == LEFTOVERS_TERMED) {
		if (n > 0)
			log_warn("%d processes the workers started still run at the graceful "
				 "deadline: sent SIGKILL",
				 n);
		a->leftovers = LEFTOVERS_KILLED;
		a->leftovers_give_up_ms = now + LEFTOVERS_KILL_WAIT_MS;
	}
	a->leftovers_at_ms = now + LEFTOVERS_KILL_RETRY_MS;
}

static void check_done(struct arbiter *a)
{
	if (a->phase < PHASE_DRAINING || pool_count(&a->pool, worker_is_alive) > 0)
		return;
	if (!descendants_any())
		a->done = true;
	else if (a->leftovers == LEFTOVERS_NONE)
		leftovers_start(a);
}

static void begin_drain(struct arbiter *a, bool quick)
{
	if (a->phase < PHASE_DRAINING)
		notify_upstream(&a->notify, "STOPPING=1");
	arbiter_bpf_shutdown(a);
	a->phase = quick ? PHASE_QUITTING : PHASE_DRAINING;
	a->phase_deadline_ms = 0;
	if (!a->drain_started_ms)
		a->drain_started_ms = now_ms();
	arbiter_sync_pool(a);
	/* Stop accepting: the sockets take no new connection from now on and our copies
	 * go; the workers take what is queued when they get the signal, then close
	 * theirs (retire.c in arbiter.h). The watch on them goes first. */
	autoscale_unwatch(&a->autoscale, now_ms());
	retire_all_listeners(a);
	log_info("%s shutdown: sending SIG%s to %u workers, SIGKILL after %.1f s",
		 quick ? "quick" : "graceful", quick ? "QUIT" : "TERM",
		 pool_count(&a->pool, worker_is_alive),
		 (double)a->settings->graceful_timeout_ms / 1000.0);
	pool_stop_all(&a->pool, quick ? WEV_STOP_QUIT : WEV_STOP_TERM);
	check_done(a);
}

static void begin_shutdown(struct arbiter *a, bool quick)
{
	if (!quick && a->phase == PHASE_RUNNING && a->settings->shutdown_delay_ms) {
		/* Kubernetes removes the pod's endpoints asynchronously: keep serving, but
		 * report not ready, until the load balancers have caught up. */
		a->phase = PHASE_DELAYING;
		a->phase_deadline_ms = now_ms() + a->settings->shutdown_delay_ms;
		log_info("shutdown delay: serving %.1f s more while reporting not ready",
			 (double)a->settings->shutdown_delay_ms / 1000.0);
		return;
	}
	begin_drain(a, quick);
}

void arbiter_fatal(struct arbiter *a, int status)
{
	if (!a->exit_status)
		a->exit_status = status;
	if (a->phase < PHASE_DRAINING)
		begin_drain(a, false);
}

/* `sigvisor stop` (commands.c) asked for a shutdown: as TERM or QUIT would, by the
 * same table, unless a signal in this batch has begun one since. */
static void stop_if_asked(struct arbiter *a)
{
	struct action_context ctx = arbiter_action_context(a);
	bool quick = a->stop_asked == STOP_QUICK;
	const char *why;
	enum arbiter_action act;

	if (a->stop_asked == STOP_NONE)
		return;
	a->stop_asked = STOP_NONE;
	act = signal_action(quick ? SIGQUIT : SIGTERM, SI_USER, &ctx, &why);
	if (act == ACTION_SHUTDOWN_GRACEFUL || act == ACTION_SHUTDOWN_QUICK)
		begin_shutdown(a, act == ACTION_SHUTDOWN_QUICK);
}

static void handle_signal(struct arbiter *a, const struct signalfd_siginfo *si)
{
	struct action_context ctx = {
		.phase = a->phase,
		.reloading = reload_busy(a),
		.upgrading = a->upgrade.check_pid || a->upgrade.exec_wanted,
		.daemon = a->settings->daemon,
	};
	int sig = (int)si->ssi_signo;
	const char *why;
	enum arbiter_action act = signal_action(sig, si->ssi_code, &ctx, &why);
	uint64_t scale_by = 1;
	char sender[128];

	if (sig == SIGTTIN || sig == SIGTTOU)
		act = arbiter_scale_signal(a, sig, si->ssi_code, act, &ctx, &scale_by);
	if (sig > 0 && sig < 65)
		a->signals_received[sig]++;
	if (act == ACTION_REAP) {
		pool_child_exited(&a->pool, (pid_t)si->ssi_pid, si->ssi_code, now_ms());
		return; /* CHLD is a hint, not worth a log line per exit */
	}
	signal_describe_sender(si, sender, sizeof(sender));
	if (act == ACTION_IGNORE) {
		if (sig > 0 && sig < 65)
			a->signals_ignored[sig]++;
		log_fields(LOG_LEVEL_INFO,
			   LOG_FIELDS(LOG_STR("signal", signal_name(sig)),
				      LOG_INT("sender_pid", si->ssi_pid),
				      LOG_INT("sender_uid", si->ssi_uid),
				      LOG_STR("action", "ignored")),
			   "received SIG%s from %s: ignored, %s", signal_name(sig), sender, why);
		return;
	}
	log_fields(
		LOG_LEVEL_INFO,
		LOG_FIELDS(LOG_STR("signal", signal_name(sig)), LOG_INT("sender_pid", si->ssi_pid),
			   LOG_INT("sender_uid", si->ssi_uid), LOG_STR("action", action_name(act))),
		"received SIG%s from %s: %s", signal_name(sig), sender, action_name(act));
	switch (act) {
	case ACTION_SHUTDOWN_GRACEFUL:
		begin_shutdown(a, false);
		break;
	case ACTION_SHUTDOWN_QUICK:
		begin_shutdown(a, true);
		break;
	case ACTION_SCALE_UP:
	case ACTION_SCALE_DOWN:
		arbiter_scale_apply(a, sig, scale_by);
		break;
	case ACTION_REOPEN_LOGS:
		(void)arbiter_reopen_logs(a, NULL, NULL, 0);
		break;
	case ACTION_STOP_WORKERS:
		a->pool.target = 0;
		pool_reconcile(&a->pool);
		break;
	case ACTION_RELOAD:
		reload_start(a);
		break;
	case ACTION_UPGRADE:
		upgrade_start(a);
		break;
	case ACTION_RELOAD_LATER:
		a->reload_pending = true; /* reload_check starts it */
		break;
	case ACTION_UPGRADE_LATER:
		a->upgrade.pending = true; /* upgrade_maybe_exec starts it */
		break;
	case ACTION_IGNORE:
	case ACTION_MAX:
	case ACTION_REAP:
		break;
	}
}

static void on_signalfd(struct arbiter *a)
{
	struct signalfd_siginfo si[16];

	/* Drain completely: the fd is level-triggered, but reading everything now keeps
	 * the order the kernel dequeued in and costs one wakeup. */
	for (;;) {
		ssize_t n = read(a->sigfd.fd, si, sizeof(si));

		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_error("reading the signalfd, ignoring: %m");
			return;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(si[0]); i++)
			handle_signal(a, &si[i]);
	}
}

static void on_timer(struct arbiter *a)
{
	uint64_t expirations, now = now_ms();

	(void)!read(a->timer.fd, &expirations, sizeof(expirations));
	a->timer_armed_ms = 0;
	/* WATCHDOG=1 pings wait in the socket until now: pool_run_deadlines reads those
	 * of the workers whose deadline is due before judging them, and only those. */
	if (a->phase_deadline_ms && a->phase_deadline_ms <= now) {
		log_info("shutdown delay over");
		begin_drain(a, false);
	}
	if (a->bpf_load_at_ms && a->bpf_load_at_ms <= now)
		arbiter_bpf_load(a);
	pool_run_deadlines(&a->pool, now);
	leftovers_tick(a, now);
	upgrade_check_timeout(a, now);
	reload_config_timeout(a, now);
	notify_upstream_tick(&a->notify, now);
	notify_rejected_flush(&a->notify, now);
	control_run_deadlines(&a->control, now);
	autoscale_tick(&a->autoscale, &a->pool, &a->listeners,
		       reload_busy(a) || a->upgrade.check_pid || a->upgrade.exec_wanted, now);
	pool_reconcile(&a->pool);
}

static void on_serving(void *ctx, pid_t pid, const char *how)
{
	pool_serving(ctx, pid, how);
}

static void dispatch(struct arbiter *a, const struct loop_event *ev)
{
	switch ((enum source_type)ev->source->type) {
	case SOURCE_SIGNALFD:
		on_signalfd(a);
		break;
	case SOURCE_TIMERFD:
		on_timer(a);
		break;
	case SOURCE_WORKER:
		pool_reap_worker(&a->pool, (struct worker *)ev->source);
		break;
	case SOURCE_CONTROL_LISTENER:
		control_on_listener(&a->control);
		break;
	case SOURCE_CONTROL_CONN:
		control_on_conn(&a->control, (struct control_conn *)ev->source, ev->events);
		break;
	case SOURCE_BPF:
		if (bpf_probes_loading(a->bpf))
			arbiter_bpf_loaded(a);
		else
			bpf_probes_poll(a->bpf);
		break;
	case SOURCE_NOTIFY:
		pool_drain_notify(&a->pool, worker_of_notify(ev->source));
		break;
	case SOURCE_METRICS_LISTENER:
		metrics_on_listener(&a->metrics);
		break;
	case SOURCE_METRICS_CONN:
		metrics_on_conn(&a->metrics, ev->source, ev->events);
		break;
	case SOURCE_UPGRADE_CHECK:
		upgrade_check_done(a);
		break;
	case SOURCE_LOG:
		log_flush();
		break;
	case SOURCE_CONFIG_READ:
		reload_on_config(a);
		break;
	case SOURCE_LISTEN_WATCH:
		autoscale_on_connection(&a->autoscale, now_ms());
		break;
	case SOURCE_SERVING_LOOK:
		serving_on_look(a->pool.serving, ev->source);
		break;
	}
}

/* The log never blocks the loop (log.h): while lines wait for room, wake when the log
 * takes them; otherwise do not watch it at all, so an idle arbiter sleeps. */
static void watch_log(struct arbiter *a)
{
	int fd = log_pending() ? log_pending_fd() : -1;

	if (a->log_retry_ms && a->log_retry_ms <= now_ms()) {
		a->log_retry_ms = 0;
		log_flush();
		fd = log_pending() ? log_pending_fd() : -1;
	}
	if (fd == a->log_src.fd)
		return;
	arbiter_unwatch_log(a);
	a->log_src.fd = fd;
	if (fd >= 0 && loop_add(&a->loop, &a->log_src, LOOP_OUT) < 0)
		a->log_src.fd = -1;
	if (log_pending() && a->log_src.fd < 0 && !a->log_retry_ms)
		a->log_retry_ms = now_ms() + LOG_RETRY_MS;
}

/* READY=1 to our own supervisor once the first generation is fully ready. */
static void announce(struct arbiter *a)
{
	char msg[128];

	if (a->announced_ready || a->phase != PHASE_RUNNING ||
	    pool_count(&a->pool, worker_is_ready) < a->pool.target)
		return;
	a->announced_ready = true;
	arbiter_bpf_first_ready(a);
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%u workers ready\nMAINPID=%d", a->pool.target,
		 (int)a->pid);
	notify_upstream(&a->notify, msg);
	log_info("all %u workers ready", a->pool.target);
}

/* The look for processes a control signal would kill (killable.h): told the ready
 * workers after every batch (nothing happens unless they changed), while running. */
#define KILLABLE_MAX_WORKERS 1024

static void watch_killable(struct arbiter *a)
{
	struct disp_worker w[KILLABLE_MAX_WORKERS];
	uint64_t now = now_ms();
	size_t n = 0;

	if (!a->killable)
		a->killable = killable_new(a->pid);
	/* A pass over the workers only when the ready ones changed: not one per batch
	 * (a ping, a TTIN) at 4,096 workers. */
	if (a->killable_epoch == a->pool.ready_epoch &&
	    a->killable_told_running == (a->phase == PHASE_RUNNING)) {
		killable_run(a->killable, now);
		return;
	}
	/* Nor one per READY=1 while a generation starts (4,096 passes, each starting
	 * a look at the whole tree that a moment later is stale): once its workers are
	 * all up, or, while some keep booting, at the first event KILLABLE_AGAIN_MS
	 * after the last pass (one that never gets ready, or a crash loop, must not
	 * hold the look off for good). */
	if (a->phase == PHASE_RUNNING && a->killable_told_running &&
	    pool_count(&a->pool, worker_is_booting) &&
	    now - a->killable_told_ms < KILLABLE_AGAIN_MS) {
		killable_run(a->killable, now);
		return;
	}
	a->killable_told_ms = now;
	a->killable_epoch = a->pool.ready_epoch;
	a->killable_told_running = a->phase == PHASE_RUNNING;
	for (size_t i = 0; a->phase == PHASE_RUNNING && i < a->pool.n && n < KILLABLE_MAX_WORKERS;
	     i++) {
		const struct worker *wk = a->pool.workers[i];

		if (worker_is_ready(wk))
			w[n++] = (struct disp_worker){wk->id, wk->generation, wk->pid};
	}
	killable_workers(a->killable, w, n, now);
	killable_run(a->killable, now);
}

static int run(struct arbiter *a)
{
	pool_reconcile(&a->pool);
	/* Workers that count as ready once started (--ready-mode start, a COMMAND in
	 * auto) are ready now: say so before the first wait, which may be long. */
	announce(a);
	while (!a->done) {
		int n;

		watch_log(a);
		arm_timer(a);
		/* Wake for READY=1 only while a worker is booting (see notify.h). */
		pool_watch_notify(&a->pool);
		n = loop_wait(&a->loop, -1);
		if (n < 0) {
			/* EINTR: stopped and continued (SIGSTOP/SIGCONT); nothing to do. */
			if (n != -EINTR)
				log_error("waiting for events, ignoring: %s", strerror(-n));
			continue;
		}
		for (int i = 0; i < n; i++)
			if (a->loop.batch[i].source) /* NULL: deleted by an earlier handler */
				dispatch(a, &a->loop.batch[i]);
		/* A worker reaped while handling SIGCHLD may still have its pidfd event in
		 * the batch: it is freed only here, after the whole batch. */
		pool_gc(&a->pool);
		stop_if_asked(a);
		pool_reconcile(&a->pool);
		reload_check(a);
		upgrade_maybe_exec(a);
		announce(a);
		watch_killable(a);
		check_done(a);
	}
	return a->exit_status;
}

/* -- what the modules below ask of the arbiter (pool.h, control.h, metrics.h) -------- */

static int pool_spawn(void *ctx, unsigned id, unsigned generation, char *notify_env, int hb_slot,
		      pid_t *ret_pid, int *ret_pidfd)
{
	struct arbiter *a = ctx;
	struct spawn_request rq = {
		.tmpl = &a->tmpl,
		.settings = a->settings,
		.listen_fds = a->listeners.fds,
		.n_listen_fds = a->listeners.n,
		.listen_fdnames = a->listeners.fdnames,
		.arbiter_pid = a->pid,
		.id = id,
		.generation = generation,
		.notify_env = notify_env,
		.heartbeat_fd = hb_slot >= 0 ? a->pool.hb.fd : -1,
		.heartbeat_slot = hb_slot,
	};

	serving_set_sockets(a->pool.serving, a->listeners.fds, a->listeners.n);
	return spawn_worker(&rq, ret_pid, ret_pidfd);
}

static void pool_fatal(void *ctx, int status)
{
	arbiter_fatal(ctx, status == 4 ? EXIT_WORKER_APP : EXIT_WORKER_BOOT);
}

static void pool_trial_failed(void *ctx, const char *why)
{
	reload_abort(ctx, why);
}

static void pool_old_retiring(void *ctx)
{
	retire_old_listeners(ctx);
}

static int pool_other_child(void *ctx, pid_t pid)
{
	struct arbiter *a = ctx;
	int r;

	if (config_read_reap(&a->config_read, pid))
		return 1;
	r = killable_reap(a->killable, pid);
	if (r)
		return r;
	r = bpf_probes_reap(pid); /* the --bpf auto loader */
	if (r)
		return r;
	if (!a->upgrade.check_pid || pid != a->upgrade.check_pid)
		return serving_reap(a->pool.serving, pid); /* a look at /proc, or 0 */
	upgrade_check_done(a);
	return a->upgrade.check_pid ? -1 : 1;
}

static const struct pool_hooks pool_hooks = {
	.ctx = NULL, /* the arbiter, set by arbiter_main */
	.spawn = pool_spawn,
	.fatal = pool_fatal,
	.trial_failed = pool_trial_failed,
	.old_retiring = pool_old_retiring,
	.other_child = pool_other_child,
};

void arbiter_init_pool(struct arbiter *a)
{
	struct pool_hooks hooks = pool_hooks;

	hooks.ctx = a;
	pool_init(&a->pool, a->settings->workers, &a->loop, &a->notify, &hooks);
	a->pool.serving =
		serving_new(&(struct serving_hooks){.ctx = &a->pool, .seen = on_serving}, &a->loop);
	a->pool.blocked_mask = a->blocked_mask;
	arbiter_sync_pool(a);
}

/* Our blocked mask as the kernel reports it (glibc leaves out its internal signals),
 * to recognise a worker that has not reached exec yet. */
static unsigned long long own_blocked_mask(void)
{
	char line[256];
	unsigned long long v = 0;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "SigBlk: %llx", &v) == 1)
			break;
	fclose(f);
	return v;
}

static void free_settings(struct settings *s)
{
	settings_free(s);
	free(s);
}

/* Said once, at start: past the limit, starts fail with EMFILE and back off. */
static void nofile_check(unsigned workers)
{
	unsigned long hard = 0, need = spawn_nofile_short(workers, &hard);

	if (need)
		log_warn("the open files limit is %lu (hard), %u workers need about %lu: starts "
			 "beyond it fail with \"Too many open files\"; raise it (ulimit -Hn, "
			 "docker run --ulimit nofile=%lu:%lu)",
			 hard, workers, need, need, need);
}

int arbiter_main(int argc, char **argv)
{
	struct settings *settings;
	struct arbiter arb;
	struct arbiter *a = &arb;
	char err[1024] = "";
	int r, status;

	memset(a, 0, sizeof(*a));
	a->sigfd.fd = a->timer.fd = -1;
	a->control.listen.fd = a->control.reserve_fd = -1;
	a->notify.upstream.fd = -1;
	a->metrics.listen.fd = -1;
	a->upgrade.check.fd = a->upgrade.metrics_fd = -1;
	a->upgrade.bpf_state_off = -1;
	a->upgrade.check_out = a->upgrade.check_errno = -1;
	a->log_src = (struct source){SOURCE_LOG, -1};
	a->config_src = (struct source){SOURCE_CONFIG_READ, -1};
	a->config_read.fd = -1;
	a->argc = argc;
	a->argv = argv;
	/* First: at 4,096 workers we hold more fds than the usual soft limit (spawn.h). */
	spawn_raise_nofile();
	/* Before anything else: from here on no signal can interrupt us, they queue up
	 * in the kernel until the loop reads them from the signalfd. */
	r = signals_block_all(&a->sigmask);
	if (r < 0) {
		fprintf(stderr, "sigvisor: cannot block signals: %s\n", strerror(-r));
		return EXIT_FATAL;
	}
	/* Then: a new image of an upgrade whose options no longer parse rolls back. */
	upgrade_inherit(a);
	a->blocked_mask = own_blocked_mask();

	/* On the heap: a reload swaps in a new one. */
	settings = calloc(1, sizeof(*settings));
	if (!settings) {
		fprintf(stderr, "sigvisor: out of memory\n");
		return EXIT_FATAL;
	}
	/* Back from a failed upgrade: the settings we ran with are in the state (we wrote
	 * it), so a config file broken or removed since cannot stop us. Read as at startup
	 * only if the state is damaged. */
	r = a->upgrade.rolled_back ? upgrade_settings(a, settings, err, sizeof(err)) : -ENOENT;
	if (r < 0 && r != -ENOENT)
		fprintf(stderr, "sigvisor: %s; reading the options and config file again\n", err);
	if (r < 0) {
		settings_free(settings);
		r = options_load(settings, argc, argv, getenv("SIGVISOR_ARGS"), err, sizeof(err));
	}
	if (r < 0) {
		if (options_json_wanted(settings, argc, argv, getenv("SIGVISOR_ARGS"))) {
			/* A log collector that parses JSON gets the usage error as JSON too. */
			log_setup("sigvisor", LOG_FORMAT_JSON, LOG_LEVEL_INFO);
			log_error("%s", err);
		} else {
			fprintf(stderr, "sigvisor: %s\n", err);
		}
		upgrade_rollback(a, err);
		free_settings(settings);
		return EXIT_USAGE;
	}
	if (settings->help || settings->version) {
		if (settings->help)
			options_print_help("sigvisor");
		else
			printf("%s\n", sigvisor_version_string());
		free_settings(settings);
		return EXIT_OK;
	}
	a->settings = settings;
	if (upgrade_resolve_self(argv[0], &a->self_path) < 0)
		a->self_path = NULL;
	log_setup("sigvisor", settings->log_format, LOG_LEVEL_INFO);
	/* A log reader that stalls must not stall us, from the first line on (--check
	 * is a command: its answer waits for the reader). */
	if (!settings->check)
		log_nonblocking();
	nofile_check(settings->workers);
	arbiter_init_pool(a);
	r = arbiter_setup(a, err, sizeof(err), &status);
	arbiter_sync_pool(a); /* with the spawn template setup made (--user) */
	if (r != 0) {
		if (r < 0) {
			log_error("%s", err);
			upgrade_rollback(a, err); /* returns only if it cannot */
		} else if (settings->log_format == LOG_FORMAT_JSON)
			log_info("configuration ok"); /* --check: every line JSON */
		else
			printf("sigvisor: configuration ok\n"); /* --check */
		arbiter_teardown(a);
		free_settings(a->settings);
		free(a->self_path);
		log_flush_for(LOG_EXIT_FLUSH_MS);
		return status;
	}
	upgrade_commit(a);
	retire_check_freeze(a, a->upgrade_fd >= 0); /* said at the first start only */
	if (a->upgrade_fd >= 0 && a->upgrade.rolled_back) {
		/* Back from an upgrade that failed: the workers are ours as they were. */
		upgrade_adopt_workers(a, a->upgrade_fd);
		a->upgrade_fd = -1;
	} else if (a->upgrade_fd >= 0) {
		/* The new image of a USR2 upgrade: the running workers are the old
		 * generation, and a reload replaces them exactly as on HUP. */
		upgrade_adopt_workers(a, a->upgrade_fd);
		a->upgrade_fd = -1;
		a->announced_ready = true; /* the reload says READY=1 when it completes */
		a->upgrade.config_workers_pending = true;
		reload_start(a);
	}
	for (size_t i = 0; i < a->listeners.n; i++)
		log_info("listening on %s%s",
			 strncmp(a->listeners.l[i].spec, "unix:", 5) ? "http://" : "",
			 a->listeners.l[i].address);
	log_info("sigvisor %s started: pid %d, %u workers (%s), loop %s, control %s%s",
		 SIGVISOR_VERSION, (int)a->pid, a->pool.target,
		 settings->command ? settings->command[0] : "built-in", a->loop.backend->name,
		 a->control.path ? a->control.path : "none", a->pid == 1 ? ", PID 1" : "");

	status = run(a);
	log_info("shut down, exit status %d", status);
	arbiter_teardown(a);
	free_settings(a->settings);
	free(a->self_path);
	log_flush_for(LOG_EXIT_FLUSH_MS);
	return status;
}
