/* What `sigvisor status` shows: the pool, the counters, the listeners; as text for
 * people and as JSON for tools. Rendered into memory, sent by control.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arbiter.h"
#include "signames.h"
#include "timeutil.h"

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

static bool is_ready(const struct arbiter *a)
{
	return a->phase == PHASE_RUNNING && pool_count(&a->pool, worker_is_ready) > 0;
}

/* Control signals, in the order status lists them. */
static const int shown_signals[] = {SIGHUP,  SIGTERM, SIGINT,  SIGQUIT,	 SIGTTIN,
				    SIGTTOU, SIGUSR1, SIGUSR2, SIGWINCH, SIGCHLD};

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", (unsigned char)*s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

static void render_json(struct arbiter *a, FILE *f, uint64_t now)
{
	const struct pool *p = &a->pool;

	fprintf(f, "{\"version\":\"%s\",\"pid\":%d,\"state\":\"%s\",\"ready\":%s,",
		SIGVISOR_VERSION, (int)a->pid, phase_name(a->phase),
		is_ready(a) ? "true" : "false");
	fprintf(f, "\"uptime_ms\":%llu,\"loop\":\"%s\",\"generation\":%u,\"target\":%u,",
		(unsigned long long)(now - a->started_ms), a->loop.backend->name, p->generation,
		p->target);
	fprintf(f, "\"workers\":[");
	for (size_t i = 0; i < p->n; i++) {
		const struct worker *w = p->workers[i];

		fprintf(f,
			"%s{\"id\":%u,\"pid\":%d,\"generation\":%u,\"state\":\"%s\",\"uptime_ms\":%"
			"llu}",
			i ? "," : "", w->id, (int)w->pid, w->generation,
			worker_state_name(w->state), (unsigned long long)(now - w->started_ms));
	}
	fprintf(f, "],\"listeners\":[");
	for (size_t i = 0; i < a->n_listeners; i++) {
		fputs(i ? "," : "", f);
		json_str(f, a->listeners[i].address);
	}
	fprintf(f,
		"],\"counters\":{\"spawned\":%llu,\"spawn_errors\":%llu,\"exited\":%llu,"
		"\"exited_clean\":%llu,\"exited_error\":%llu,\"exited_signal\":%llu,"
		"\"killed\":%llu,\"replaced\":%llu,\"boot_failures\":%llu,"
		"\"orphans_reaped\":%llu,\"control_rejected\":%lu},",
		(unsigned long long)p->spawned, (unsigned long long)p->spawn_errors,
		(unsigned long long)p->exited, (unsigned long long)p->exited_clean,
		(unsigned long long)p->exited_error, (unsigned long long)p->exited_signal,
		(unsigned long long)p->killed, (unsigned long long)p->replaced,
		(unsigned long long)p->boot_failures_total, (unsigned long long)p->orphans_reaped,
		a->control.rejected);
	fprintf(f, "\"signals\":{");
	for (size_t i = 0; i < sizeof(shown_signals) / sizeof(shown_signals[0]); i++) {
		int sig = shown_signals[i];
		struct bpf_signal_stats st;

		fprintf(f, "%s\"%s\":{\"received\":%llu,\"ignored\":%llu", i ? "," : "",
			signal_name(sig), (unsigned long long)a->signals_received[sig],
			(unsigned long long)a->signals_ignored[sig]);
		if (bpf_probes_self_stats(a->bpf, sig, &st) == 0)
			fprintf(f, ",\"generated\":%llu,\"queued\":%llu,\"coalesced\":%llu",
				(unsigned long long)st.generated, (unsigned long long)st.queued,
				(unsigned long long)st.coalesced);
		fputc('}', f);
	}
	fprintf(f, "},\"bpf\":{\"state\":\"%s\",", a->bpf ? "on" : "off");
	if (a->bpf) {
		fprintf(f, "\"pin\":");
		json_str(f, bpf_probes_pin_dir(a->bpf));
	} else {
		fprintf(f, "\"reason\":");
		json_str(f, a->bpf_why);
	}
	fprintf(f, "}}\n");
}

static void render_text(struct arbiter *a, FILE *f, uint64_t now)
{
	const struct pool *p = &a->pool;

	fprintf(f, "sigvisor %s  pid %d  %s%s  uptime %.1fs  loop %s\n", SIGVISOR_VERSION,
		(int)a->pid, phase_name(a->phase), is_ready(a) ? " (ready)" : " (not ready)",
		(double)(now - a->started_ms) / 1000.0, a->loop.backend->name);
	fprintf(f, "listening:");
	for (size_t i = 0; i < a->n_listeners; i++)
		fprintf(f, " %s", a->listeners[i].address);
	fprintf(f, "\nworkers: %u wanted, %u ready, generation %u\n", p->target,
		pool_count(p, worker_is_ready), p->generation);
	fprintf(f, "  %-4s %-8s %-4s %-9s %s\n", "ID", "PID", "GEN", "STATE", "UPTIME");
	for (size_t i = 0; i < p->n; i++) {
		const struct worker *w = p->workers[i];

		fprintf(f, "  %-4u %-8d %-4u %-9s %.1fs\n", w->id, (int)w->pid, w->generation,
			worker_state_name(w->state), (double)(now - w->started_ms) / 1000.0);
	}
	fprintf(f,
		"spawned %llu, exited %llu (clean %llu, error %llu, signal %llu), killed %llu, "
		"boot failures %llu, orphans reaped %llu\n",
		(unsigned long long)p->spawned, (unsigned long long)p->exited,
		(unsigned long long)p->exited_clean, (unsigned long long)p->exited_error,
		(unsigned long long)p->exited_signal, (unsigned long long)p->killed,
		(unsigned long long)p->boot_failures_total, (unsigned long long)p->orphans_reaped);
	if (!a->bpf) {
		fprintf(f, "signals received:");
		for (size_t i = 0; i < sizeof(shown_signals) / sizeof(shown_signals[0]); i++) {
			int sig = shown_signals[i];

			if (a->signals_received[sig])
				fprintf(f, " %s %llu", signal_name(sig),
					(unsigned long long)a->signals_received[sig]);
		}
		fprintf(f, "\nbpf: off (%s)\n", a->bpf_why);
		return;
	}
	/* With the probes on, the proof that no signal is lost in user space: every
	 * signal the kernel made pending was read (handled), the rest it merged. */
	fprintf(f, "signals    %9s %9s %9s %9s\n", "generated", "coalesced", "handled", "check");
	for (size_t i = 0; i < sizeof(shown_signals) / sizeof(shown_signals[0]); i++) {
		int sig = shown_signals[i];
		struct bpf_signal_stats st;

		if (bpf_probes_self_stats(a->bpf, sig, &st) < 0 ||
		    (!st.generated && !a->signals_received[sig]))
			continue;
		fprintf(f, "  %-8s %9llu %9llu %9llu %9s\n", signal_name(sig),
			(unsigned long long)st.generated, (unsigned long long)st.coalesced,
			(unsigned long long)a->signals_received[sig],
			st.queued == a->signals_received[sig] ? "ok" : "MISMATCH");
	}
	fprintf(f, "bpf: on, maps pinned in %s\n", bpf_probes_pin_dir(a->bpf));
}

int arbiter_render_status(struct arbiter *a, bool json, char **ret_buf, size_t *ret_len)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	uint64_t now = now_ms();

	if (!f)
		return -errno;
	if (json)
		render_json(a, f, now);
	else
		render_text(a, f, now);
	if (fclose(f) != 0) {
		free(buf);
		return -ENOMEM;
	}
	*ret_buf = buf;
	*ret_len = len;
	return 0;
}
