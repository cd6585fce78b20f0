/* What `sigvisor status` shows: the pool, the counters, the listeners; as text for
 * people and as JSON for tools. Rendered into memory, sent by control.c. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "arbiter.h"
#include "fmt.h"
#include "json.h"
#include "killable.h"
#include "membuf.h"
#include "serving.h"
#include "signames.h"
#include "timeutil.h"

typedef unsigned long long ull;

static const char *phase_name(enum arbiter_phase p)
{
	static const char *const names[] = {
		[PHASE_RUNNING] = "running",
		[PHASE_DELAYING] = "shutdown-delay",
		[PHASE_DRAINING] = "draining",
		[PHASE_QUITTING] = "quitting",
	};
	return names[p];
}

bool arbiter_is_ready(const struct arbiter *a)
{
	return a->phase == PHASE_RUNNING && pool_count(&a->pool, worker_is_ready) > 0;
}

const int arbiter_shown_signals[ARBITER_N_SHOWN] = {SIGHUP,  SIGTERM, SIGINT,  SIGQUIT,	 SIGTTIN,
						    SIGTTOU, SIGUSR1, SIGUSR2, SIGWINCH, SIGCHLD};

/* A row of the worker table, formatted by hand and written with one fwrite: 4,096 rows
 * through fprintf and fputc were half of the arbiter's CPU for a `status --json`
 * (vfprintf, and the FILE's path for each character). */
struct row {
	char b[1024];
	size_t n;
};
/* Room for the fixed text, five numbers and a STATUS= escaped 6 bytes for 1. */
_Static_assert(sizeof(((struct worker *)0)->status) * 6 + 256 <= sizeof(((struct row *)0)->b),
	       "a worker's row fits its buffer");

static void row_put(void *r_, const char *s, size_t len)
{
	struct row *r = r_;

	memcpy(r->b + r->n, s, len);
	r->n += len;
}

static void row_str(struct row *r, const char *s)
{
	row_put(r, s, strlen(s));
}

static void row_uint(struct row *r, unsigned long long v)
{
	r->n += fmt_uint(r->b + r->n, v, 1);
}

static void row_int(struct row *r, long long v)
{
	if (v < 0)
		row_str(r, "-");
	row_uint(r, v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v);
}

/* printf's "%-*s ": spaces after what was put since start up to width, then one.
 * Returns where the next column starts. */
static size_t row_column(struct row *r, size_t start, size_t width)
{
	while (r->n - start < width)
		r->b[r->n++] = ' ';
	r->b[r->n++] = ' ';
	return r->n;
}

static void json_workers(const struct pool *p, FILE *f, uint64_t now)
{
	fprintf(f, "\"workers\":[");
	for (size_t i = 0; i < p->n; i++) {
		const struct worker *w = p->workers[i];
		struct row r = {.n = 0};

		row_str(&r, i ? ",{\"id\":" : "{\"id\":");
		row_uint(&r, w->id);
		row_str(&r, ",\"pid\":");
		row_int(&r, w->pid);
		row_str(&r, ",\"generation\":");
		row_uint(&r, w->generation);
		row_str(&r, ",\"state\":\"");
		row_str(&r, worker_state_name(w->state));
		row_str(&r, "\",\"uptime_ms\":");
		row_uint(&r, now - w->started_ms);
		row_str(&r, ",\"status\":");
		json_quote(w->status, row_put, &r);
		row_str(&r, "}");
		fwrite(r.b, 1, r.n, f);
	}
	fprintf(f, "],");
}

static void json_counters(const struct arbiter *a, FILE *f)
{
	const struct pool *p = &a->pool;
	const struct {
		const char *name;
		ull value;
	} c[] = {
		{"spawned", p->counters.spawned},
		{"spawn_errors", p->counters.spawn_errors},
		{"exited", p->counters.exited},
		{"exited_clean", p->counters.exited_clean},
		{"exited_error", p->counters.exited_error},
		{"exited_signal", p->counters.exited_signal},
		{"exited_retired", p->counters.exited_retired},
		{"killed", p->counters.killed},
		{"replaced", p->counters.replaced},
		{"boot_failures", p->counters.boot_failures_total},
		{"orphans_reaped", p->counters.orphans_reaped},
		{"ready_looks_killed", serving_looks_killed(p->serving)},
		{"reloads", p->counters.reloads},
		{"reload_failures", p->counters.reload_failures},
		{"upgrades", a->upgrade.upgrades},
		{"upgrade_failures", (ull)a->upgrade.refused + a->upgrade.rollbacks},
		{"upgrade_rollbacks", a->upgrade.rollbacks},
		{"control_rejected", a->control.rejected},
		{"notify_received", a->notify.received},
		{"notify_rejected", a->notify.rejected},
		{"log_lines_dropped", log_dropped()},
	};

	fprintf(f, "\"counters\":{");
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		fprintf(f, "%s\"%s\":%llu", i ? "," : "", c[i].name, c[i].value);
	fprintf(f, "},");
}

/* When a new worker counts as ready: "notify" (READY=1), "start", or for auto with a
 * COMMAND how serving is seen, "eBPF" or "/proc" (serving.h). */
static const char *readiness(const struct arbiter *a)
{
	const struct settings *s = a->settings;

	if (s->ready_mode == READY_START)
		return "start";
	if (s->ready_mode == READY_NOTIFY || !s->command || !a->pool.serving)
		return "notify";
	return serving_method(a->pool.serving);
}

/* The last reloads' or upgrades' outcomes, oldest first, each under the number
 * `sigvisor reload` / `upgrade` was answered with. Last in the object: the clients find
 * the top-level fields by their first occurrence. */
static void json_outcomes(FILE *f, const char *name, const struct upstate_outcomes *h, bool upgrade)
{
	fprintf(f, ",\"%s\":[", name);
	for (unsigned i = 0; i < h->n; i++) {
		const struct upstate_outcome *o = &h->o[i];

		fprintf(f, "%s{\"id\":%llu,\"result\":", i ? "," : "", (ull)o->id);
		json_fputs(f, o->result);
		fprintf(f, ",\"generation\":%llu,", (ull)o->generation);
		if (upgrade)
			fprintf(f, "\"reload\":%llu,", (ull)o->reload);
		fprintf(f, "\"reason\":");
		json_fputs(f, o->reason);
		fputc('}', f);
	}
	fputc(']', f);
}

static void text_outcome(FILE *f, const char *what, const struct upstate_outcomes *h)
{
	const struct upstate_outcome *o = h->n ? &h->o[h->n - 1] : NULL;

	if (o)
		fprintf(f, "last %s #%llu: %s%s%s (generation %llu serving)\n", what, (ull)o->id,
			o->result, *o->reason ? ": " : "", o->reason, (ull)o->generation);
}

/* How TTIN and TTOU are counted (scale.c): exact while the probes count them, else
 * one per signalfd read, and the kernel merges a signal sent while one is pending. */
static const char *scale_counting(const struct arbiter *a)
{
	if (a->scale.counting && a->bpf)
		return "exact (probes)";
	return a->bpf ? "signals may merge (probes loading)" : "signals may merge (probes off)";
}

static void render_json(struct arbiter *a, FILE *f, uint64_t now)
{
	const struct pool *p = &a->pool;

	fprintf(f, "{\"version\":\"%s\",\"pid\":%d,\"state\":\"%s\",\"ready\":%s,",
		SIGVISOR_VERSION, (int)a->pid, phase_name(a->phase),
		arbiter_is_ready(a) ? "true" : "false");
	fprintf(f, "\"uptime_ms\":%llu,\"loop\":\"%s\",\"generation\":%u,\"target\":%u,",
		(ull)(now - a->started_ms), a->loop.backend->name, p->generation, p->target);
	fprintf(f, "\"reloading\":%s,\"readiness\":\"%s\",", a->reloading ? "true" : "false",
		readiness(a));
	/* How many may boot at once (boot_gate.h); 0: no limit. */
	fprintf(f, "\"boot_cap\":%u,\"boot_places_released\":%llu,", p->boot.cap,
		(ull)p->boot.released);
	fprintf(f, "\"scale_signals\":{\"exact\":%s,\"counting\":\"%s\",\"merged\":%llu},",
		a->scale.counting && a->bpf ? "true" : "false", scale_counting(a),
		(ull)a->scale.merged);
	/* --max-workers (autoscale.h); null without it. */
	fprintf(f, "\"autoscale\":");
	if (a->autoscale.on)
		fprintf(f,
			"{\"min\":%u,\"max\":%u,\"target\":%u,\"scale_up_after_ms\":%llu,"
			"\"scale_down_after_ms\":%llu,\"queued\":%u,\"looks\":%llu,"
			"\"watching\":%s,\"woken\":%llu,\"up\":%llu,\"down\":%llu},",
			a->autoscale.min, a->autoscale.max, p->target, (ull)a->autoscale.up_ms,
			(ull)a->autoscale.down_ms, (unsigned)a->autoscale.last_queued,
			(ull)a->autoscale.looks, a->autoscale.n_watch ? "true" : "false",
			(ull)a->autoscale.woken, (ull)a->autoscale.decisions[AUTOSCALE_UP],
			(ull)a->autoscale.decisions[AUTOSCALE_DOWN]);
	else
		fprintf(f, "null,");
	json_workers(p, f, now);
	fprintf(f, "\"listeners\":[");
	for (size_t i = 0; i < a->listeners.n; i++) {
		fputs(i ? "," : "", f);
		json_fputs(f, a->listeners.l[i].address);
	}
	fprintf(f, "],");
	json_counters(a, f);
	/* From the last look (killable.h); null before the first. */
	fprintf(f, "\"signal_killable_processes\":");
	if (killable_looked(a->killable)) {
		for (size_t i = 0; i < KILLABLE_N_SIGNALS; i++)
			fprintf(f, "%s\"%s\":%u", i ? "," : "{", signal_name(killable_signals[i]),
				killable_count(a->killable, i));
		fputc('}', f);
	} else {
		fputs("null", f);
	}
	fprintf(f, ",\"signals\":{");
	for (size_t i = 0; i < ARBITER_N_SHOWN; i++) {
		int sig = arbiter_shown_signals[i];
		struct bpf_signal_stats st;

		fprintf(f, "%s\"%s\":{\"received\":%llu,\"ignored\":%llu", i ? "," : "",
			signal_name(sig), (ull)a->signals_received[sig],
			(ull)a->signals_ignored[sig]);
		if (bpf_probes_self_stats(a->bpf, sig, &st) == 0)
			fprintf(f, ",\"generated\":%llu,\"queued\":%llu,\"coalesced\":%llu",
				(ull)st.generated, (ull)st.queued, (ull)st.coalesced);
		fputc('}', f);
	}
	fprintf(f, "},\"bpf\":{\"state\":\"%s\",",
		!a->bpf			     ? "off"
		: bpf_probes_loading(a->bpf) ? "loading"
					     : "on");
	if (a->bpf) {
		fprintf(f, "\"pin\":");
		json_fputs(f, bpf_probes_pin_dir(a->bpf));
		if (*bpf_probes_pin_why(a->bpf)) {
			fprintf(f, ",\"pin_reason\":");
			json_fputs(f, bpf_probes_pin_why(a->bpf));
		}
		{
			uint64_t held, lost;

			bpf_probes_event_stats(a->bpf, &held, &lost);
			fprintf(f, ",\"events\":{\"suppressed\":%llu,\"dropped\":%llu}", (ull)held,
				(ull)lost);
		}
		/* A kernel may refuse one optional program and take the rest. */
		fprintf(f, ",\"parts\":{");
		for (int part = 0; part < BPF_PART_MAX; part++) {
			const char *off = bpf_probes_part_off(a->bpf, part);

			fprintf(f, "%s\"%s\":{\"state\":\"%s\"", part ? "," : "",
				bpf_part_name(part), off ? "off" : "on");
			if (off) {
				fprintf(f, ",\"reason\":");
				json_fputs(f, off);
			}
			fputc('}', f);
		}
		fputc('}', f);
	} else {
		fprintf(f, "\"reason\":");
		json_fputs(f, a->bpf_why);
	}
	fputc('}', f);
	json_outcomes(f, "reload_outcomes", &a->reload_outcomes, false);
	json_outcomes(f, "upgrade_outcomes", &a->upgrade.outcomes, true);
	fprintf(f, "}\n");
}

static void text_signals(struct arbiter *a, FILE *f)
{
	if (!a->bpf || bpf_probes_loading(a->bpf)) {
		fprintf(f, "signals received:");
		for (size_t i = 0; i < ARBITER_N_SHOWN; i++) {
			int sig = arbiter_shown_signals[i];

			if (a->signals_received[sig])
				fprintf(f, " %s %llu", signal_name(sig),
					(ull)a->signals_received[sig]);
		}
		if (a->bpf)
			fprintf(f, "\nbpf: loading\n");
		else
			fprintf(f, "\nbpf: off (%s)\n", a->bpf_why);
		return;
	}
	/* With the probes on, the proof that no signal is lost in user space: every
	 * signal the kernel made pending was read (handled), the rest it merged. */
	fprintf(f, "signals    %9s %9s %9s %9s\n", "generated", "coalesced", "handled", "check");
	for (size_t i = 0; i < ARBITER_N_SHOWN; i++) {
		int sig = arbiter_shown_signals[i];
		struct bpf_signal_stats st;

		if (bpf_probes_self_stats(a->bpf, sig, &st) < 0 ||
		    (!st.generated && !a->signals_received[sig]))
			continue;
		fprintf(f, "  %-8s %9llu %9llu %9llu %9s\n", signal_name(sig), (ull)st.generated,
			(ull)st.coalesced, (ull)a->signals_received[sig],
			st.queued == a->signals_received[sig] ? "ok" : "MISMATCH");
	}
	if (*bpf_probes_pin_dir(a->bpf))
		fprintf(f, "bpf: on, maps pinned in %s\n", bpf_probes_pin_dir(a->bpf));
	else
		fprintf(f, "bpf: on, maps not pinned%s%s\n",
			*bpf_probes_pin_why(a->bpf) ? ": " : "", bpf_probes_pin_why(a->bpf));
	for (int part = 0; part < BPF_PART_MAX; part++) {
		const char *off = bpf_probes_part_off(a->bpf, part);

		if (off)
			fprintf(f, "bpf: %s counter off (%s)\n", bpf_part_name(part), off);
	}
}

/* Only when some process would die: see `sigvisor signals` for which. */
static void text_killable(const struct arbiter *a, FILE *f)
{
	bool any = false;

	for (size_t i = 0; i < KILLABLE_N_SIGNALS; i++) {
		unsigned n = killable_count(a->killable, i);

		if (!n)
			continue;
		fprintf(f, "%s %s %u", any ? "," : "processes a control signal would kill:",
			signal_name(killable_signals[i]), n);
		any = true;
	}
	if (any)
		fprintf(f, " (handled by their leader or an earlier generation; see sigvisor "
			   "signals)\n");
}

static void render_text(struct arbiter *a, FILE *f, uint64_t now)
{
	const struct pool *p = &a->pool;

	fprintf(f, "sigvisor %s  pid %d  %s%s  uptime %.1fs  loop %s\n", SIGVISOR_VERSION,
		(int)a->pid, phase_name(a->phase),
		arbiter_is_ready(a) ? " (ready)" : " (not ready)",
		(double)(now - a->started_ms) / 1000.0, a->loop.backend->name);
	fprintf(f, "listening:");
	for (size_t i = 0; i < a->listeners.n; i++)
		fprintf(f, " %s", a->listeners.l[i].address);
	fprintf(f, "\nworkers: %u wanted, %u ready, generation %u%s\n", p->target,
		pool_count(p, worker_is_ready), p->generation, a->reloading ? " (reloading)" : "");
	if (a->autoscale.on)
		fprintf(f,
			"autoscale: %u to %u workers by the listen queues (up after %.1f s "
			"waiting, "
			"down after %.1f s empty); %llu up, %llu down\n",
			a->autoscale.min, a->autoscale.max, (double)a->autoscale.up_ms / 1000.0,
			(double)a->autoscale.down_ms / 1000.0,
			(ull)a->autoscale.decisions[AUTOSCALE_UP],
			(ull)a->autoscale.decisions[AUTOSCALE_DOWN]);
	if (strcmp(readiness(a), "eBPF") == 0 || strcmp(readiness(a), "/proc") == 0) {
		uint64_t killed = serving_looks_killed(p->serving);

		fprintf(f, "ready on READY=1, or once seen serving (%s)", readiness(a));
		if (killed) /* a worker that did not let itself be looked at: see serving.h */
			fprintf(f, "; %llu looks at /proc killed at their deadline", (ull)killed);
		fprintf(f, "\n");
	}
	fprintf(f, "  %-4s %-8s %-4s %-9s %-8s %s\n", "ID", "PID", "GEN", "STATE", "UPTIME",
		"STATUS");
	for (size_t i = 0; i < p->n; i++) {
		const struct worker *w = p->workers[i];
		/* "  %-4u %-8d %-4u %-9s %-8s %s\n", the uptime in seconds to a tenth */
		uint64_t tenths = (now - w->started_ms + 50) / 100;
		struct row r = {.n = 0};
		size_t c;

		row_str(&r, "  ");
		c = r.n;
		row_uint(&r, w->id);
		c = row_column(&r, c, 4);
		row_int(&r, w->pid);
		c = row_column(&r, c, 8);
		row_uint(&r, w->generation);
		c = row_column(&r, c, 4);
		row_str(&r, worker_state_name(w->state));
		c = row_column(&r, c, 9);
		row_uint(&r, tenths / 10);
		row_str(&r, ".");
		row_uint(&r, tenths % 10);
		row_str(&r, "s");
		row_column(&r, c, 8);
		row_str(&r, w->status);
		row_str(&r, "\n");
		fwrite(r.b, 1, r.n, f);
	}
	text_killable(a, f);
	fprintf(f,
		"spawned %llu, exited %llu (clean %llu, error %llu, signal %llu, retired by their "
		"stop signal %llu), killed %llu\n",
		(ull)p->counters.spawned, (ull)p->counters.exited, (ull)p->counters.exited_clean,
		(ull)p->counters.exited_error, (ull)p->counters.exited_signal,
		(ull)p->counters.exited_retired, (ull)p->counters.killed);
	fprintf(f, "boot failures %llu, orphans reaped %llu, reloads %llu (failed %llu)\n",
		(ull)p->counters.boot_failures_total, (ull)p->counters.orphans_reaped,
		(ull)p->counters.reloads, (ull)p->counters.reload_failures);
	fprintf(f, "upgrades %llu (failed %llu, rolled back %llu)\n", (ull)a->upgrade.upgrades,
		(ull)a->upgrade.refused + a->upgrade.rollbacks, (ull)a->upgrade.rollbacks);
	text_outcome(f, "reload", &a->reload_outcomes);
	text_outcome(f, "upgrade", &a->upgrade.outcomes);
	fprintf(f, "TTIN/TTOU: %s", scale_counting(a));
	if (a->scale.merged)
		fprintf(f, ", %llu merged by the kernel and applied all the same",
			(ull)a->scale.merged);
	fputc('\n', f);
	if (log_dropped())
		fprintf(f, "log lines dropped %llu (the log did not take them)\n",
			(ull)log_dropped());
	text_signals(a, f);
}

int arbiter_render_status(struct arbiter *a, bool json, struct membuf *out)
{
	FILE *f = membuf_open(out);
	uint64_t now;

	if (!f)
		return -errno;
	/* STATUS= lines may be waiting in the notify socket's buffer (see notify.h): read
	 * them, once per status, which lists every worker anyway. */
	pool_drain_all_notify(&a->pool);
	now = now_ms();
	if (json)
		render_json(a, f, now);
	else
		render_text(a, f, now);
	return fclose(f) == 0 ? 0 : -ENOMEM;
}
