/* The arbiter's state as Prometheus metrics (the text format, version 0.0.4), for the
 * --metrics endpoint (metrics.c serves it). Wiring layer: it reads the whole arbiter. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "arbiter.h"
#include "killable.h"
#include "listen_queue.h"
#include "serving.h"
#include "signames.h"
#include "timeutil.h"
#include "version.h"

typedef unsigned long long ull;

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void value(FILE *f, const char *name, const char *type, const char *help, ull v)
{
	family(f, name, type, help);
	fprintf(f, "%s %llu\n", name, v);
}

/* A label value in the text format: backslash, double quote and newline escaped. */
static void label_value(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void labelled(FILE *f, const char *name, const char *label, const char *lv, ull v)
{
	fprintf(f, "%s{%s=\"", name, label);
	label_value(f, lv);
	fprintf(f, "\"} %llu\n", v);
}

static void render_pool(const struct arbiter *a, FILE *f)
{
	const struct pool *p = &a->pool;
	ull by_state[WORKER_STATE_MAX] = {0};

	for (size_t i = 0; i < p->n; i++)
		if (p->workers[i]->state < WORKER_STATE_MAX)
			by_state[p->workers[i]->state]++;
	family(f, "sigvisor_workers", "gauge", "Workers in each state of their lifecycle.");
	/* Every state, zeros included: a series that comes and goes breaks rate() and
	 * alerts on absence. */
	for (int s = 0; s < WORKER_STATE_MAX; s++)
		labelled(f, "sigvisor_workers", "state", worker_state_name((enum worker_state)s),
			 by_state[s]);
	value(f, "sigvisor_target_workers", "gauge",
	      "Pool size wanted (--workers, changed by TTIN and TTOU).", p->target);
	value(f, "sigvisor_generation", "gauge",
	      "Generation of the current workers; each reload starts a new one.", p->generation);
	value(f, "sigvisor_reloading", "gauge", "1 while a reload (HUP) is in progress.",
	      a->reloading);
	value(f, "sigvisor_workers_spawned_total", "counter", "Workers started.",
	      p->counters.spawned);
	value(f, "sigvisor_worker_spawn_errors_total", "counter",
	      "Worker starts that failed before the worker ran (clone3 or exec).",
	      p->counters.spawn_errors);
	family(f, "sigvisor_worker_exits_total", "counter",
	       "Workers reaped, by cause: exit status 0, another status, a signal, or the "
	       "signal sent to stop them.");
	labelled(f, "sigvisor_worker_exits_total", "cause", "clean", p->counters.exited_clean);
	labelled(f, "sigvisor_worker_exits_total", "cause", "error", p->counters.exited_error);
	labelled(f, "sigvisor_worker_exits_total", "cause", "signal", p->counters.exited_signal);
	labelled(f, "sigvisor_worker_exits_total", "cause", "retired", p->counters.exited_retired);
	value(f, "sigvisor_workers_killed_total", "counter",
	      "Workers sent SIGKILL after a timeout (graceful, ready or watchdog).",
	      p->counters.killed);
	value(f, "sigvisor_workers_replaced_total", "counter",
	      "Workers that exited unasked and were replaced in their slot.", p->counters.replaced);
	value(f, "sigvisor_boot_failures_total", "counter",
	      "Workers that failed to boot: died before they were ready, or within 1 s of it.",
	      p->counters.boot_failures_total);
	value(f, "sigvisor_reloads_total", "counter", "Reloads (HUP) started.",
	      p->counters.reloads);
	value(f, "sigvisor_reload_failures_total", "counter",
	      "Reloads abandoned: bad configuration, or the new generation never got ready.",
	      p->counters.reload_failures);
	value(f, "sigvisor_upgrades_total", "counter",
	      "In-place binary upgrades (USR2) completed since the first start.",
	      a->upgrade.upgrades);
	value(f, "sigvisor_upgrade_failures_total", "counter",
	      "Upgrades (USR2) that failed, refused before the exec (check, handshake, exec) or "
	      "rolled back after it; the old binary serves on.",
	      (ull)a->upgrade.refused + a->upgrade.rollbacks);
	value(f, "sigvisor_upgrade_rollbacks_total", "counter",
	      "Upgrades (USR2) whose new image failed in its set-up after the exec and "
	      "re-executed the old one.",
	      a->upgrade.rollbacks);
	value(f, "sigvisor_notify_messages_total", "counter",
	      "sd_notify datagrams read from the workers' notify sockets.", a->notify.received);
	value(f, "sigvisor_notify_rejected_total", "counter",
	      "sd_notify datagrams dropped: not sent by that worker itself.", a->notify.rejected);
	value(f, "sigvisor_log_lines_dropped_total", "counter",
	      "Log lines the arbiter dropped: its log did not take them (a stalled reader, a "
	      "full disk).",
	      log_dropped());
	value(f, "sigvisor_orphans_reaped_total", "counter",
	      "Processes other than workers reaped (orphans adopted as PID 1 or subreaper).",
	      p->counters.orphans_reaped);
	value(f, "sigvisor_ready_looks_killed_total", "counter",
	      "Looks at a booting worker's /proc for readiness (--ready-mode auto) killed at "
	      "their deadline: the worker's memory or /proc files did not answer.",
	      serving_looks_killed(p->serving));
}

/* One counter family with a line per shown signal; v[i] belongs to arbiter_shown_signals[i]. */
static void per_signal(FILE *f, const char *name, const char *help,
		       const uint64_t v[ARBITER_N_SHOWN])
{
	family(f, name, "counter", help);
	for (size_t i = 0; i < ARBITER_N_SHOWN; i++)
		labelled(f, name, "signal", signal_name(arbiter_shown_signals[i]), v[i]);
}

/* Requests answered on the control socket, by command (status text and JSON count as
 * "status"; "unknown" is every line no command takes). */
static void render_control(const struct arbiter *a, FILE *f)
{
	static const char *const names[] = {"status", "events", "workers",     "reload", "upgrade",
					    "reopen", "stop",	"kill-worker", "config", "unknown"};
#define N_NAMES (sizeof(names) / sizeof(names[0]))
	ull n[N_NAMES] = {0};

	for (int r = 0; r < CONTROL_REQUEST_MAX; r++)
		for (size_t i = 0; i < N_NAMES; i++)
			if (strcmp(control_request_name((enum control_request)r), names[i]) == 0)
				n[i] += a->control.requests[r];
	family(f, "sigvisor_control_commands_total", "counter",
	       "Requests answered on the control socket, by command (refused ones included).");
	for (size_t i = 0; i < N_NAMES; i++)
		labelled(f, "sigvisor_control_commands_total", "command", names[i], n[i]);
#undef N_NAMES
}

/* From the last look at the workers' trees (killable.h); zeros before the first, every
 * signal always: a series that comes and goes breaks alerts on it. */
static void render_killable(const struct arbiter *a, FILE *f)
{
	family(f, "sigvisor_signal_killable_processes", "gauge",
	       "Processes of the workers' trees that this signal, meant to control them, would "
	       "kill (default action) while their leader or the worker's earlier generation "
	       "handles it; see sigvisor signals.");
	for (size_t i = 0; i < KILLABLE_N_SIGNALS; i++)
		labelled(f, "sigvisor_signal_killable_processes", "signal",
			 signal_name(killable_signals[i]), killable_count(a->killable, i));
}

static void render_signals(const struct arbiter *a, FILE *f)
{
	struct bpf_signal_stats st[ARBITER_N_SHOWN];
	uint64_t v[ARBITER_N_SHOWN];
	bool bpf = false;

	for (size_t i = 0; i < ARBITER_N_SHOWN; i++)
		v[i] = a->signals_received[arbiter_shown_signals[i]];
	per_signal(f, "sigvisor_signals_received_total",
		   "Control signals read from the signalfd, by signal.", v);
	for (size_t i = 0; i < ARBITER_N_SHOWN; i++)
		v[i] = a->signals_ignored[arbiter_shown_signals[i]];
	per_signal(f, "sigvisor_signals_ignored_total",
		   "Control signals received and deliberately ignored (e.g. TTIN from the tty).",
		   v);

	for (size_t i = 0; i < ARBITER_N_SHOWN; i++) {
		if (bpf_probes_self_stats(a->bpf, arbiter_shown_signals[i], &st[i]) == 0)
			bpf = true;
		else
			memset(&st[i], 0, sizeof(st[i]));
	}
	value(f, "sigvisor_bpf_enabled", "gauge", "1 when the eBPF signal probes are loaded.", bpf);
	value(f, "sigvisor_scale_signals_exact", "gauge",
	      "1 when TTIN/TTOU scale by the probes' count of signals sent; 0: one worker per "
	      "signal read, and the kernel merges repeats.",
	      a->scale.counting && a->bpf);
	value(f, "sigvisor_scale_signals_merged_total", "counter",
	      "TTIN/TTOU the kernel merged into one already pending and applied all the same "
	      "(eBPF).",
	      a->scale.merged);
	family(f, "sigvisor_bpf_part_enabled", "gauge",
	       "1 when this part of the eBPF probes is loaded (the kernel may refuse one; the "
	       "log and status say why).");
	for (int part = 0; part < BPF_PART_MAX; part++)
		labelled(f, "sigvisor_bpf_part_enabled", "part", bpf_part_name(part),
			 !bpf_probes_part_off(a->bpf, part));
	if (!bpf)
		return;
	{
		uint64_t held, lost;

		bpf_probes_event_stats(a->bpf, &held, &lost);
		value(f, "sigvisor_bpf_events_suppressed_total", "counter",
		      "Probe events not sent: over 10 a second for one process and signal "
		      "(counted in full all the same).",
		      held);
		value(f, "sigvisor_bpf_events_dropped_total", "counter",
		      "Probe events lost: the ring buffer was full (counted in full all the same).",
		      lost);
	}
	/* What user space cannot see: signals the kernel generated for the arbiter, and
	 * those it merged into one already pending (generated = read + coalesced + ...). */
	for (size_t i = 0; i < ARBITER_N_SHOWN; i++)
		v[i] = st[i].generated;
	per_signal(f, "sigvisor_signals_generated_total",
		   "Signals the kernel generated for the arbiter, by signal (eBPF).", v);
	for (size_t i = 0; i < ARBITER_N_SHOWN; i++)
		v[i] = st[i].coalesced;
	per_signal(f, "sigvisor_signals_coalesced_total",
		   "Signals merged by the kernel into one already pending, by signal (eBPF).", v);
}

/* The listen queues, read now (a scrape is the only time they are read without
 * --max-workers), and the autoscaling decisions. */
static void render_queues(const struct arbiter *a, FILE *f)
{
	struct listen_queue q[LISTEN_QUEUE_MAX];
	size_t n = a->listeners.n < LISTEN_QUEUE_MAX ? a->listeners.n : LISTEN_QUEUE_MAX;
	bool ok = listen_queue_read(a->listeners.fds, n, q) == 0;

	family(f, "sigvisor_listen_queue", "gauge",
	       "Connections waiting to be accepted on each listening socket (Recv-Q of ss -lnt).");
	for (size_t i = 0; ok && i < n; i++)
		if (q[i].found)
			labelled(f, "sigvisor_listen_queue", "addr", a->listeners.l[i].address,
				 q[i].queued);
	family(f, "sigvisor_listen_queue_max", "gauge",
	       "At most this many connections wait on each listening socket (its backlog).");
	for (size_t i = 0; ok && i < n; i++)
		if (q[i].found)
			labelled(f, "sigvisor_listen_queue_max", "addr", a->listeners.l[i].address,
				 q[i].backlog);
	family(f, "sigvisor_autoscale_decisions_total", "counter",
	       "Workers added (up) or retired (down) by --max-workers for the listen queues.");
	for (int d = AUTOSCALE_UP; d <= AUTOSCALE_DOWN; d++)
		labelled(f, "sigvisor_autoscale_decisions_total", "direction",
			 autoscale_direction_name((enum autoscale_direction)d),
			 a->autoscale.decisions[d]);
}

void arbiter_render_prometheus(struct arbiter *a, FILE *f)
{
	struct metrics *m = &a->metrics;

	if (m->start_time == 0) {
		struct timespec ts;

		/* started_ms is monotonic; the wall clock of that instant, computed once so
		 * the value does not wobble between scrapes. */
		clock_gettime(CLOCK_REALTIME, &ts);
		m->start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 -
				(double)(now_ms() - a->started_ms) / 1000.0;
	}
	value(f, "sigvisor_up", "gauge", "1: the arbiter answers.", 1);
	family(f, "sigvisor_build_info", "gauge",
	       "Version, git revision, compiled-in features and the event loop in use.");
	fprintf(f, "sigvisor_build_info{version=\"");
	label_value(f, SIGVISOR_VERSION);
	fprintf(f, "\",revision=\"");
	label_value(f, sigvisor_git_revision());
	fprintf(f, "\",features=\"");
	label_value(f, sigvisor_features());
	fprintf(f, "\",loop=\"");
	label_value(f, a->loop.backend ? a->loop.backend->name : "");
	fprintf(f, "\"} 1\n");
	family(f, "sigvisor_start_time_seconds", "gauge",
	       "Start time of the arbiter since the Unix epoch, in seconds.");
	fprintf(f, "sigvisor_start_time_seconds %.3f\n", m->start_time);
	value(f, "sigvisor_ready", "gauge",
	      "1 when /readyz answers 200: running, not shutting down, a worker ready.",
	      arbiter_is_ready(a));
	render_pool(a, f);
	render_signals(a, f);
	render_killable(a, f);
	render_control(a, f);
	render_queues(a, f);
	value(f, "sigvisor_metrics_connections_dropped_total", "counter",
	      "Metrics connections closed unanswered to make room for newer ones.", m->dropped);
}
