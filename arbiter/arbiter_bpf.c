/* The arbiter's side of the eBPF probes (bpf.h is the loader): when they load (--bpf
 * on at set-up; auto in a child process, once the first workers are ready, stopped by
 * a shutdown), where their events
 * go (the log and `sigvisor status --events`), and what becomes of them around a USR2
 * exec (stopped, or handed over attached to a binary that carries the same probes). */
#include "arbiter.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "serving.h"
#include "timeutil.h"

/* With --bpf auto the verifier's tens of ms of CPU wait until the first workers are
 * ready and have had BPF_LOAD_GRACE_MS to take their first connections (or
 * BPF_LOAD_DELAY_MS after setup at the latest, for a COMMAND slow to boot): on a small
 * machine they would otherwise delay those workers. */
#define BPF_LOAD_DELAY_MS 100
#define BPF_LOAD_GRACE_MS 20

void arbiter_bpf_load(struct arbiter *a)
{
	a->bpf_load_at_ms = 0;
	bpf_probes_start_loading(a->bpf);
}

void arbiter_bpf_first_ready(struct arbiter *a)
{
	if (a->bpf_load_at_ms && a->bpf_load_at_ms > now_ms() + BPF_LOAD_GRACE_MS)
		a->bpf_load_at_ms = now_ms() + BPF_LOAD_GRACE_MS; /* see arbiter_bpf_load */
}

static void log_bpf_on(struct arbiter *a);

static void on_bpf_event(void *ctx, const char *line)
{
	struct arbiter *a = ctx;

	log_info("%s", line);
	control_event(&a->control, line); /* to `sigvisor status --events` */
}

/* After the fork for --daemon (the probes track our pid). With --bpf on before the
 * first worker; with auto the loading goes on in a child process while the workers
 * start, and the probes adopt what was forked meanwhile (bpf.h). */
int arbiter_bpf_setup(struct arbiter *a, char *err, size_t errlen)
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
			/* Nothing would hear the loader; loading here would hold up the loop
			 * for the verifier. */
			a->bpf_src.fd = -1;
			arbiter_bpf_stop(a);
			snprintf(a->bpf_why, sizeof(a->bpf_why),
				 "cannot watch the loader's socket: %s", strerror(-r));
			log_info("BPF probes off: %s", a->bpf_why);
			return 0;
		}
		log_warn("cannot follow BPF events, counting only: %s", strerror(-r));
	}
	if (bpf_probes_loading(a->bpf)) {
		a->bpf_load_at_ms = now_ms() + BPF_LOAD_DELAY_MS;
		if (a->announced_ready)
			arbiter_bpf_load(a);
		return 0; /* said by arbiter_bpf_loaded() */
	}
	if (bpf_probes_adopted(a->bpf))
		log_info("BPF probes kept from the image before the upgrade: not loaded again, "
			 "attached all along, the counts go on");
	log_bpf_on(a);
	return 0;
}

/* The loader of --bpf auto is done: adopt what it loaded, or go without the probes. */
void arbiter_bpf_loaded(struct arbiter *a)
{
	int r;

	if (!bpf_probes_load_done(a->bpf))
		return; /* only its log lines so far */

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

/* A shutdown has begun: loading the probes now would only take CPU from the draining
 * workers, and the exit must not wait for the verifier. */
void arbiter_bpf_shutdown(struct arbiter *a)
{
	if (!bpf_probes_loading(a->bpf))
		return;
	arbiter_bpf_stop(a);
	snprintf(a->bpf_why, sizeof(a->bpf_why), "the shutdown stopped their loading");
}

/* Where the probes' count of TTIN and TTOU starts (scale.c), now that they count. Kept
 * from the image before a USR2, they go on from what it had applied (the state says):
 * the signals sent during the exec count. Otherwise their count so far is the baseline,
 * less one for a signal pending now: its read counts one, as without the probes (sent
 * before they attached, or counted and not yet read). Read the count on both sides of
 * sigpending(): the probes add under the signal lock sigpending() takes, so an
 * unchanged count means the pending set belongs to it. */
static void scale_baseline(struct arbiter *a)
{
	static const int sigs[2] = {SIGTTIN, SIGTTOU};
	struct bpf_signal_stats before, after;

	if (a->scale.inherited && bpf_probes_adopted(a->bpf)) {
		a->scale.counting = true;
		return;
	}
	a->scale.inherited = false;
	for (size_t i = 0; i < 2; i++) {
		sigset_t pending;
		int tries = 0;

		do {
			if (bpf_probes_self_stats(a->bpf, sigs[i], &before) < 0 ||
			    sigpending(&pending) < 0 ||
			    bpf_probes_self_stats(a->bpf, sigs[i], &after) < 0)
				return; /* not counting: one per read */
		} while (before.sent != after.sent && ++tries < 8);
		a->scale.consumed[i] = after.sent - (sigismember(&pending, sigs[i]) == 1);
	}
	a->scale.counting = true;
}

static void log_bpf_on(struct arbiter *a)
{
	scale_baseline(a);
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
	a->scale.counting = a->scale.inherited = false;
}

enum probes_handover arbiter_bpf_handover(struct arbiter *a, FILE *f, uint64_t identity)
{
	if (!a->bpf)
		return PROBES_NOT_HANDED_OVER;
	if (bpf_probes_loading(a->bpf)) {
		/* Do not wait for the verifier: not handed over, the loader is killed
		 * (arbiter_bpf_stop) and the new image loads them. If it has answered,
		 * adopt and hand them over. */
		arbiter_bpf_loaded(a);
		if (!a->bpf || bpf_probes_loading(a->bpf))
			return PROBES_NOT_HANDED_OVER;
	}
	if (!identity || identity != bpf_probes_identity())
		return PROBES_NOT_HANDED_OVER;
	return bpf_probes_handover(a->bpf, f) == 0 ? PROBES_HANDED_OVER : PROBES_NOT_HANDED_OVER;
}

void arbiter_bpf_start(struct arbiter *a)
{
	char err[512];

	if (!a->bpf && arbiter_bpf_setup(a, err, sizeof(err)) < 0)
		log_error("%s", err);
}
