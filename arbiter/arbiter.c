/* The arbiter's setup and its loop: signal intake and dispatch, shutdown, deadlines.
 *
 * Setup may fail loudly and exit (doc/RUNBOOK.md, exit statuses). Once the loop runs, it
 * never exits on an error a retry could survive: it logs "..., ignoring" and goes on. */
#include "arbiter.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "check.h"
#include "config_file.h"
#include "descendants.h"
#include "log.h"
#include "safefile.h"
#include "serving.h"
#include "signames.h"
#include "timeutil.h"
#include "version.h"

extern char **environ;

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
	a->phase = quick ? PHASE_QUITTING : PHASE_DRAINING;
	a->phase_deadline_ms = 0;
	if (!a->drain_started_ms)
		a->drain_started_ms = now_ms();
	arbiter_sync_pool(a);
	/* Stop accepting: the sockets take no new connection from now on and our copies
	 * go; the workers take what is queued when they get the signal, then close
	 * theirs (retire.c in arbiter.h). */
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

static void handle_signal(struct arbiter *a, const struct signalfd_siginfo *si)
{
	struct action_context ctx = {
		.phase = a->phase,
		.reloading = reload_busy(a),
		.upgrading = a->upgrade.check_pid || a->upgrade.exec_wanted,
		.daemon = a->settings->daemon,
		.reload_supported = true,
		.upgrade_supported = true,
	};
	int sig = (int)si->ssi_signo;
	const char *why;
	enum arbiter_action act = signal_action(sig, si->ssi_code, &ctx, &why);
	char sender[128];
	int r;

	if (sig > 0 && sig < 65)
		a->signals_received[sig]++;
	if (act == ACTION_REAP) {
		pool_reap_children(&a->pool);
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
		a->pool.target++;
		log_info("pool size %u -> %u", a->pool.target - 1, a->pool.target);
		pool_reconcile(&a->pool);
		break;
	case ACTION_SCALE_DOWN:
		if (a->pool.target <= 1) {
			log_info("pool size stays at %u: never fewer than one worker",
				 a->pool.target);
			break;
		}
		a->pool.target--;
		log_info("pool size %u -> %u", a->pool.target + 1, a->pool.target);
		pool_reconcile(&a->pool);
		break;
	case ACTION_REOPEN_LOGS:
		if (a->settings->log_file) {
			arbiter_unwatch_log(a);
			r = log_open(a->settings->log_file);
			if (r < 0)
				log_error("cannot reopen %s, keeping the old one: %s",
					  a->settings->log_file, safefile_why());
			else
				log_info("reopened log file %s", a->settings->log_file);
		}
		pool_signal_all(&a->pool, SIGUSR1);
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

/* With --bpf auto the verifier's tens of ms of CPU wait until the first workers are
 * ready and have had BPF_LOAD_GRACE_MS to take their first connections (or
 * BPF_LOAD_DELAY_MS after setup at the latest, for a COMMAND slow to boot): on a small
 * machine they would otherwise delay those workers. */
#define BPF_LOAD_DELAY_MS 100
#define BPF_LOAD_GRACE_MS 20

static void start_bpf_loading(struct arbiter *a)
{
	a->bpf_load_at_ms = 0;
	bpf_probes_start_loading(a->bpf);
}

static void on_timer(struct arbiter *a)
{
	uint64_t expirations, now = now_ms();

	(void)!read(a->timer.fd, &expirations, sizeof(expirations));
	a->timer_armed_ms = 0;
	/* WATCHDOG=1 pings wait in the socket until now: read them before judging. */
	pool_drain_all_notify(&a->pool);
	if (a->phase_deadline_ms && a->phase_deadline_ms <= now) {
		log_info("shutdown delay over");
		begin_drain(a, false);
	}
	if (a->bpf_load_at_ms && a->bpf_load_at_ms <= now)
		start_bpf_loading(a);
	pool_run_deadlines(&a->pool, now);
	leftovers_tick(a, now);
	upgrade_check_timeout(a, now);
	reload_config_timeout(a, now);
	notify_upstream_tick(&a->notify, now);
	notify_rejected_flush(&a->notify, now);
	control_run_deadlines(&a->control, now);
	pool_reconcile(&a->pool);
}

static void on_bpf_loaded(struct arbiter *a);
static void log_bpf_on(const struct arbiter *a);

static void on_serving(void *ctx, pid_t pid, const char *how)
{
	pool_serving(ctx, pid, how);
}

static void dispatch(struct arbiter *a, const struct loop_event *ev)
{
	switch (ev->source->type) {
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
			on_bpf_loaded(a);
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
	case SOURCE_SERVING_LOOK:
		serving_on_look(a->pool.serving, ev->source);
		break;
	}
}

void arbiter_unwatch_log(struct arbiter *a)
{
	if (a->log_src.fd >= 0)
		(void)loop_del(&a->loop, &a->log_src);
	a->log_src.fd = -1;
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
	if (a->bpf_load_at_ms && a->bpf_load_at_ms > now_ms() + BPF_LOAD_GRACE_MS)
		a->bpf_load_at_ms = now_ms() + BPF_LOAD_GRACE_MS; /* see start_bpf_loading */
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%u workers ready\nMAINPID=%d", a->pool.target,
		 (int)a->pid);
	notify_upstream(&a->notify, msg);
	log_info("all %u workers ready", a->pool.target);
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
		pool_reconcile(&a->pool);
		reload_check(a);
		upgrade_maybe_exec(a);
		announce(a);
		check_done(a);
	}
	return a->exit_status;
}

/* Created beside the path and renamed over it (safefile.h): a link planted at the path
 * is replaced, never written through. */
static int write_pidfile(const char *path, pid_t pid)
{
	char buf[32];
	int len = snprintf(buf, sizeof(buf), "%d\n", (int)pid);

	return safefile_replace(path, buf, (size_t)len);
}

/* Remove the pidfile only if it is still ours (a new arbiter may have replaced it), and
 * only a regular file: a link at the path is not followed, a FIFO not waited on. */
static void remove_pidfile(const char *path, pid_t pid)
{
	char buf[32] = "";
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	struct stat st;
	ssize_t n = -1;

	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n > 0 && atoi(buf) == (int)pid)
		(void)unlink(path);
}

static int daemonize(void)
{
	pid_t pid = fork();
	int fd;

	if (pid < 0)
		return -errno;
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0)
		_exit(0);
	if (chdir("/") < 0)
		return -errno;
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	(void)dup2(fd, STDIN_FILENO);
	(void)dup2(fd, STDOUT_FILENO);
	/* Without --log-file, stderr is where the log goes: keep it then. */
	if (log_fd() != STDERR_FILENO)
		(void)dup2(fd, STDERR_FILENO);
	close(fd);
	return 0;
}

static void on_bpf_event(void *ctx, const char *line)
{
	struct arbiter *a = ctx;

	log_info("%s", line);
	control_event(&a->control, line); /* to `sigvisor status --events` */
}

/* After the fork for --daemon (the probes track our pid). With --bpf on before the
 * first worker; with auto the loading goes on in a thread while the workers start,
 * and the probes adopt what was forked meanwhile (bpf.h). */
static int setup_bpf(struct arbiter *a, char *err, size_t errlen)
{
	const struct settings *s = a->settings;
	struct bpf_options opt = {
		.mode = s->bpf,
		.pin_dir = s->bpf_pin ? s->bpf_pin : "/sys/fs/bpf/sigvisor",
		.sigaction = s->bpf_sigaction,
		.workers = s->workers,
		.on_event = on_bpf_event,
		.ctx = a,
		.handover = a->upgrade.bpf_state,
	};
	enum bpf_open_result opened =
		bpf_probes_open(&a->bpf, &opt, a->bpf_why, sizeof(a->bpf_why));
	int r;

	if (a->upgrade.bpf_state)
		upgrade_bpf_taken(a);

	if (opened == BPF_OPEN_FAILED) {
		snprintf(err, errlen, "--bpf on: cannot load the probes: %s", a->bpf_why);
		return -ENODEV;
	}
	if (opened == BPF_OPEN_OFF) {
		if (s->bpf == BPF_AUTO)
			log_info("BPF probes off: %s", a->bpf_why);
		return 0;
	}
	a->bpf_src.type = SOURCE_BPF;
	a->bpf_src.fd = bpf_probes_fd(a->bpf);
	if (a->bpf_src.fd >= 0 && (r = loop_add(&a->loop, &a->bpf_src, LOOP_IN)) < 0) {
		if (bpf_probes_loading(a->bpf)) {
			/* Nothing would ever finish the loading: do it now. */
			a->bpf_src.fd = -1;
			on_bpf_loaded(a);
			return 0;
		}
		log_warn("cannot follow BPF events, counting only: %s", strerror(-r));
	}
	if (bpf_probes_loading(a->bpf)) {
		a->bpf_load_at_ms = now_ms() + BPF_LOAD_DELAY_MS;
		if (a->announced_ready)
			start_bpf_loading(a);
		return 0; /* said by on_bpf_loaded() */
	}
	if (bpf_probes_adopted(a->bpf))
		log_info("BPF probes kept from the image before the upgrade: not loaded again, "
			 "attached all along, the counts go on");
	log_bpf_on(a);
	return 0;
}

/* The loader thread of --bpf auto is done: attach, or go without the probes. */
static void on_bpf_loaded(struct arbiter *a)
{
	int r;

	if (a->bpf_src.fd >= 0)
		(void)loop_del(&a->loop, &a->bpf_src);
	a->bpf_src.fd = -1;
	r = bpf_probes_finish(a->bpf, a->bpf_why, sizeof(a->bpf_why));
	if (r < 0) {
		bpf_probes_close(a->bpf);
		a->bpf = NULL;
		log_info("BPF probes off: %s", a->bpf_why);
		serving_set_probes(a->pool.serving, NULL);
		return;
	}
	a->bpf_src.fd = bpf_probes_fd(a->bpf);
	if (a->bpf_src.fd >= 0 && (r = loop_add(&a->loop, &a->bpf_src, LOOP_IN)) < 0) {
		log_warn("cannot follow BPF events, counting only: %s", strerror(-r));
		a->bpf_src.fd = -1;
	}
	log_bpf_on(a);
}

static void log_bpf_on(const struct arbiter *a)
{
	serving_set_probes(a->pool.serving, a->bpf);
	if (*bpf_probes_pin_dir(a->bpf))
		log_info("BPF probes on, maps pinned in %s", bpf_probes_pin_dir(a->bpf));
	else
		log_info("BPF probes on, counting for status only (maps not pinned)");
}

void arbiter_bpf_stop(struct arbiter *a)
{
	if (!a->bpf)
		return;
	if (a->bpf_src.fd >= 0)
		(void)loop_del(&a->loop, &a->bpf_src);
	serving_set_probes(a->pool.serving, NULL);
	bpf_probes_close(a->bpf);
	a->bpf = NULL;
	a->bpf_src.fd = -1;
	a->bpf_load_at_ms = 0;
}

int arbiter_bpf_handover(struct arbiter *a, FILE *f, uint64_t identity)
{
	if (!a->bpf)
		return 0;
	if (bpf_probes_loading(a->bpf)) {
		/* Do not wait for the verifier: the exec ends the thread, and the new image
		 * loads them. If it is done, attach and hand them over. */
		if (!bpf_probes_load_done(a->bpf))
			return 2;
		on_bpf_loaded(a);
		if (!a->bpf)
			return 0;
	}
	if (!identity || identity != bpf_probes_identity())
		return 0;
	return bpf_probes_handover(a->bpf, f) == 0 ? 1 : 0;
}

void arbiter_bpf_start(struct arbiter *a)
{
	char err[512];

	if (!a->bpf && setup_bpf(a, err, sizeof(err)) < 0)
		log_error("%s", err);
}

/* -- what the modules below ask of the arbiter (pool.h, control.h, metrics.h) -------- */

static int pool_spawn(void *ctx, unsigned id, unsigned generation, char *notify_env, pid_t *ret_pid,
		      int *ret_pidfd)
{
	struct arbiter *a = ctx;
	struct spawn_request rq = {
		.tmpl = &a->tmpl,
		.settings = a->settings,
		.listen_fds = a->listen_fds,
		.n_listen_fds = a->n_listeners,
		.listen_fdnames = a->listen_fdnames,
		.arbiter_pid = a->pid,
		.id = id,
		.generation = generation,
		.notify_env = notify_env,
	};

	serving_set_sockets(a->pool.serving, a->listen_fds, a->n_listeners);
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

	if (config_read_reap(&a->config_read, pid))
		return 1;
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

/* --ready-mode auto: the built-in worker always sends READY=1; a COMMAND may not. */
static bool waits_for_notify(const struct settings *s)
{
	switch (s->ready_mode) {
	case READY_NOTIFY:
		return true;
	case READY_START:
		return false;
	case READY_AUTO:
		break;
	}
	return !s->command;
}

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

void arbiter_sync_pool(struct arbiter *a)
{
	const struct settings *s = a->settings;
	struct pool_config cfg = {
		.graceful_timeout_ms = s->graceful_timeout_ms,
		.ready_timeout_ms = s->ready_timeout_ms,
		.timeout_ms = s->timeout_ms,
		.wait_notify = waits_for_notify(s),
		.wait_serving = s->ready_mode == READY_AUTO && s->command,
		.notify_access = s->notify_access,
		.notify_uid = a->tmpl.drop_privileges ? a->tmpl.uid : (uid_t)-1,
		.notify_gid = a->tmpl.drop_privileges ? a->tmpl.gid : (gid_t)-1,
	};

	pool_configure(&a->pool, &cfg);
	a->pool.trial = a->reloading;
	a->pool.draining = a->phase >= PHASE_DRAINING;
}

static int control_render(void *ctx, bool json, char **ret, size_t *ret_len)
{
	return arbiter_render_status(ctx, json, ret, ret_len);
}

static const char *control_events_off(void *ctx)
{
	const struct arbiter *a = ctx;

	return a->bpf ? NULL : a->bpf_why;
}

static void metrics_render(void *ctx, FILE *f)
{
	struct arbiter *a = ctx;

	/* READY=1 and STATUS= may wait in the notify socket (see notify.h): read them, so
	 * a scrape and `sigvisor status` agree. */
	pool_drain_all_notify(&a->pool);
	arbiter_render_prometheus(a, f);
}

static const char *metrics_not_ready(void *ctx)
{
	struct arbiter *a = ctx;

	pool_drain_all_notify(&a->pool);
	if (arbiter_is_ready(a))
		return NULL;
	return a->phase != PHASE_RUNNING ? "not ready: shutting down\n"
					 : "not ready: no worker is ready\n";
}

/* Bind i: a socket inherited through an upgrade when one has that spec, else a new one. */
static int open_or_adopt_listener(struct arbiter *a, size_t i, char *err, size_t errlen)
{
	const char *spec = a->settings->binds[i];
	struct listener *l = &a->listeners[a->n_listeners];
	int r;

	for (size_t k = 0; k < a->n_adopted; k++) {
		if (a->adopted[k].fd < 0 || strcmp(a->adopted[k].spec, spec) != 0)
			continue;
		r = listener_adopt(l, a->adopted[k].fd, spec);
		a->adopted[k].fd = -1;
		if (r < 0)
			snprintf(err, errlen, "upgrade: cannot take over %s: %s", spec,
				 strerror(-r));
		return r;
	}
	return listener_open(l, spec, a->settings->backlog, err, errlen);
}

/* Inherited sockets the new configuration no longer binds stay in a->adopted: the
 * adopted workers may still serve them, and retire_old_listeners closes them before the
 * last of those is stopped. */
static void keep_unadopted(struct arbiter *a)
{
	size_t n = 0;

	for (size_t k = 0; k < a->n_adopted; k++) {
		if (a->adopted[k].fd >= 0)
			a->adopted[n++] = a->adopted[k];
		else
			free(a->adopted[k].spec);
	}
	a->n_adopted = n;
}

/* --metrics: the listener the image before a USR2 handed over when it was opened for
 * the same address (it keeps its port, even a port 0, and its pending scrapes), else a
 * new one; a handed-over listener no longer configured is closed. */
static int setup_metrics(struct arbiter *a, char *err, size_t errlen)
{
	const struct settings *s = a->settings;
	struct upgrade *u = &a->upgrade;
	int r = 0;

	if (u->metrics_fd >= 0 &&
	    !(s->metrics && u->metrics_spec && strcmp(s->metrics, u->metrics_spec) == 0)) {
		log_info("upgrade: --metrics %s is no longer configured, closing it",
			 u->metrics_spec ? u->metrics_spec : "?");
		listener_close_inherited(u->metrics_fd, u->metrics_spec ? u->metrics_spec : "");
		u->metrics_fd = -1;
	}
	if (s->metrics) {
		if (u->metrics_fd >= 0)
			r = metrics_adopt(&a->metrics, u->metrics_fd, s->metrics, err, errlen);
		else
			r = metrics_open(&a->metrics, s->metrics, err, errlen);
		u->metrics_fd = -1;
		if (r == 0)
			r = metrics_start(
				&a->metrics, &a->loop,
				&(struct metrics_view){a, metrics_render, metrics_not_ready});
		if (r < 0)
			return r;
		log_info("metrics on http://%s/metrics", a->metrics.address);
	}
	free(u->metrics_spec);
	u->metrics_spec = NULL;
	return 0;
}

/* Started with LISTEN_FDS for us: those sockets are our binds (activation.h). The
 * new image of an upgrade gets their fds with the other handed-over listeners. */
static int setup_activation(struct arbiter *a, char *err, size_t errlen)
{
	int fds[MAX_BINDS];
	int n = activation_take(&a->activation, fds, err, errlen);

	for (int i = 0; i < n; i++) {
		if (fds[i] < 0)
			continue;
		a->adopted[a->n_adopted].spec = strdup(a->activation.spec[i]);
		if (!a->adopted[a->n_adopted].spec)
			return -ENOMEM;
		a->adopted[a->n_adopted++].fd = fds[i];
		log_info("socket activation: serving on %s (fd %d%s%s), passed by systemd",
			 a->activation.spec[i], fds[i], a->activation.name[i] ? ", " : "",
			 a->activation.name[i] ? a->activation.name[i] : "");
	}
	if (n > 0 && activation_apply_binds(&a->activation, a->settings, "") < 0)
		return -ENOMEM;
	return n < 0 ? n : 0;
}

static int setup(struct arbiter *a, char *err, size_t errlen, int *ret_status)
{
	struct settings *s = a->settings;
	const struct loop_backend *backend;
	char control_path[256];
	int r;

	*ret_status = EXIT_FATAL;
	r = setup_activation(a, err, errlen);
	if (r < 0)
		return r;
	if (s->n_binds == 0) {
		s->binds[0] = strdup("127.0.0.1:8000");
		if (!s->binds[0])
			return -ENOMEM;
		s->n_binds = 1;
	}
	for (size_t i = 0; i < s->n_binds; i++) {
		struct sockaddr_storage ss;
		socklen_t len;

		r = listener_parse(s->binds[i], &ss, &len, err, errlen);
		if (r < 0) {
			*ret_status = EXIT_USAGE;
			return r;
		}
	}
	if (s->metrics && (r = metrics_check_address(s->metrics, err, errlen)) < 0) {
		*ret_status = EXIT_USAGE;
		return r;
	}
	r = spawn_template_init(&a->tmpl, s, environ, err, errlen);
	if (r < 0) {
		*ret_status = EXIT_USAGE;
		return r;
	}
	if (s->log_file) {
		r = log_open(s->log_file);
		if (r < 0) {
			snprintf(err, errlen, "--log-file %s: %s", s->log_file, safefile_why());
			*ret_status = EXIT_USAGE;
			return r;
		}
	}
	if (s->check) {
		r = check_startup(s, upgrade_check_holds, upgrade_checking(), err, errlen);
		if (r < 0)
			return r;
		*ret_status = EXIT_OK;
		upgrade_check_handshake();
		return 1;
	}

	if (a->upgrade_fd >= 0) {
		r = upgrade_adopt_sockets(a, a->upgrade_fd, err, errlen);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < s->n_binds; i++) {
		r = open_or_adopt_listener(a, i, err, errlen);
		if (r < 0 && a->upgrade.rolled_back) {
			/* back from a failed upgrade: serve on with what we had */
			log_warn("%s; serving without it", err);
			continue;
		}
		if (r < 0)
			return r;
		a->n_listeners++;
	}
	keep_unadopted(a);
	if (activation_mark(&a->activation, a->listeners, a->n_listeners) < 0 ||
	    listeners_fdnames(a) < 0)
		return -ENOMEM;

	if (s->daemon && a->upgrade_fd < 0) {
		r = daemonize();
		if (r < 0) {
			snprintf(err, errlen, "cannot detach (--daemon): %s", strerror(-r));
			return r;
		}
	}
	a->pid = getpid();
	if (!a->started_ms) /* an upgrade keeps the original start */
		a->started_ms = now_ms();
	/* As PID 1 we are every orphan's reaper already; otherwise ask to be, so the
	 * workers' orphaned children come to us and not to an init that may not reap. */
	if (a->pid != 1 && prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		log_warn("cannot become a child subreaper, ignoring: %m");

	if (s->pidfile) {
		r = write_pidfile(s->pidfile, a->pid);
		if (r < 0 && a->upgrade.rolled_back)
			log_warn("--pid %s: %s, ignoring: it names this pid already", s->pidfile,
				 safefile_why());
		else if (r < 0) {
			snprintf(err, errlen, "--pid %s: %s", s->pidfile, safefile_why());
			*ret_status = EXIT_USAGE;
			return r;
		}
	}

	backend = loop_backend_select(s->loop, err, errlen);
	if (!backend)
		return -ENOTSUP;
	r = loop_init(&a->loop, backend);
	if (r < 0) {
		snprintf(err, errlen, "cannot create the %s event loop: %s", backend->name,
			 strerror(-r));
		return r;
	}
	a->sigfd.type = SOURCE_SIGNALFD;
	a->sigfd.fd = signals_open_fd(&a->sigmask);
	a->timer.type = SOURCE_TIMERFD;
	a->timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (a->sigfd.fd < 0 || a->timer.fd < 0) {
		snprintf(err, errlen, "cannot create the signalfd or timerfd: %s", strerror(errno));
		return -errno;
	}
	if ((r = loop_add(&a->loop, &a->sigfd, LOOP_IN)) < 0 ||
	    (r = loop_add(&a->loop, &a->timer, LOOP_IN)) < 0) {
		snprintf(err, errlen, "cannot register with the event loop: %s", strerror(-r));
		return r;
	}

	if (a->control.listen.fd < 0)
		control_forget(&a->control); /* the image before a USR2 had none */
	if (a->control.listen.fd >= 0) {
		/* inherited through an upgrade: same pid, same path */
		snprintf(control_path, sizeof(control_path), "%s", a->control.path);
	} else if (s->control) {
		snprintf(control_path, sizeof(control_path), "%s", s->control);
	} else if (control_default_path(control_path, sizeof(control_path), (int)a->pid) < 0) {
		snprintf(err, errlen, "no writable directory for the control socket (%s)",
			 control_default_dirs());
		control_path[0] = '\0';
		r = -ENOENT;
	}
	/* The control socket is optional (a read-only root has no place for it), unless
	 * --control asked for one: then not having it is an error. */
	if (a->control.listen.fd < 0 && control_path[0])
		r = control_open(&a->control, control_path, err, errlen);
	if (a->control.listen.fd < 0) {
		if (s->control || r == -EADDRINUSE)
			return r;
		log_warn("%s: running without a control socket, `sigvisor status` is unavailable "
			 "(give --control PATH in a writable directory)",
			 err);
		control_forget(&a->control);
	}
	r = control_start(&a->control, &a->loop,
			  &(struct control_view){a, control_render, control_events_off});
	if (r < 0) {
		snprintf(err, errlen, "cannot register the control socket: %s", strerror(-r));
		return r;
	}
	notify_init(&a->notify, a->pid);
	if (a->upgrade.have_notify)
		notify_adopt(&a->notify, a->upgrade.notify_cookie, a->upgrade.notify_seq);
	r = setup_metrics(a, err, errlen);
	if (r == 0)
		r = setup_bpf(a, err, errlen);
	if (r < 0 && a->upgrade.rolled_back) {
		log_warn("%s; going on without it after the rollback", err);
		r = 0;
	}
	return r;
}

static void teardown(struct arbiter *a)
{
	if (a->upgrade.check.fd >= 0)
		close(a->upgrade.check.fd);
	if (bpf_probes_abandon(a->bpf)) {
		serving_set_probes(a->pool.serving, NULL);
		a->bpf = NULL;
	}
	arbiter_bpf_stop(a);
	free(a->upgrade.bpf_state); /* not taken: a set-up that failed before the probes */
	a->upgrade.bpf_state = NULL;
	reload_discard(a);
	if (a->config_src.fd >= 0)
		(void)loop_del(&a->loop, &a->config_src);
	config_read_free(&a->config_read); /* a reader still running gets SIGKILL */
	metrics_close(&a->metrics);
	retire_all_listeners(a); /* already done, unless setup failed half-way */
	control_close(&a->control);
	if (a->settings->pidfile && a->pid)
		remove_pidfile(a->settings->pidfile, a->pid);
	pool_free(&a->pool);
	serving_free(a->pool.serving);
	a->pool.serving = NULL;
	notify_close(&a->notify); /* after the workers' sockets: it removes their directory */
	if (a->sigfd.fd > 0)
		close(a->sigfd.fd);
	if (a->timer.fd > 0)
		close(a->timer.fd);
	loop_fini(&a->loop);
	spawn_template_free(&a->tmpl);
	free(a->listen_fdnames);
	activation_free(&a->activation);
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
		fprintf(stderr, "sigvisor: %s\n", err);
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
	arbiter_init_pool(a);
	r = setup(a, err, sizeof(err), &status);
	arbiter_sync_pool(a); /* with the spawn template setup made (--user) */
	if (r != 0) {
		if (r < 0) {
			log_error("%s", err);
			upgrade_rollback(a, err); /* returns only if it cannot */
		} else if (settings->log_format == LOG_FORMAT_JSON)
			log_info("configuration ok"); /* --check: every line JSON */
		else
			printf("sigvisor: configuration ok\n"); /* --check */
		teardown(a);
		free_settings(a->settings);
		free(a->self_path);
		log_flush_for(LOG_EXIT_FLUSH_MS);
		return status;
	}
	upgrade_commit(a);
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
		reload_start(a);
	}
	for (size_t i = 0; i < a->n_listeners; i++)
		log_info("listening on %s%s",
			 strncmp(a->listeners[i].spec, "unix:", 5) ? "http://" : "",
			 a->listeners[i].address);
	log_info("sigvisor %s started: pid %d, %u workers (%s), loop %s, control %s%s",
		 SIGVISOR_VERSION, (int)a->pid, a->pool.target,
		 settings->command ? settings->command[0] : "built-in", a->loop.backend->name,
		 a->control.path ? a->control.path : "none", a->pid == 1 ? ", PID 1" : "");

	status = run(a);
	log_info("shut down, exit status %d", status);
	teardown(a);
	free_settings(a->settings);
	free(a->self_path);
	log_flush_for(LOG_EXIT_FLUSH_MS);
	return status;
}
