/* The pool's size set from outside while the arbiter runs: TTIN and TTOU, and
 * `sigvisor workers N|+K|-K` on the control socket. The target changes and
 * pool_reconcile starts or stops the difference. The control socket's answer is the new
 * target at once; the client watches the pool reach it (control_workers.c).
 *
 * TTIN and TTOU are standard signals: the kernel merges one sent while another is
 * pending, so fifty sent by a script may read as three. The probes count every one the
 * kernel generated for the arbiter (bpf/sigvisor.bpf.c, self_sent: from processes, not
 * from the tty), so with them on a read scales by what they counted since the last look.
 * Their counter is bumped under the target's signal lock after the signal is made
 * pending, so a read always finds its own signal counted; one sent after the read
 * shows up now (counted) and again as a read of its own, which then finds nothing new.
 * Where the count starts (the probes attached, or kept across a USR2): arbiter_bpf.c. */
#include <stdbool.h>
#include <stdio.h>

#include "arbiter.h"
#include "log.h"
#include "signames.h"

typedef unsigned long long ull;

enum arbiter_action arbiter_scale_signal(struct arbiter *a, int sig, int32_t si_code,
					 enum arbiter_action act, const struct action_context *ctx,
					 uint64_t *ret_n)
{
	struct bpf_signal_stats st;
	struct scale_count *c = &a->scale;
	unsigned i = sig == SIGTTOU;
	const char *why;
	uint64_t n;

	*ret_n = 1;
	if (!c->counting || bpf_probes_self_stats(a->bpf, sig, &st) < 0)
		return act; /* one per read, as the signals arrive merged */
	/* Modulo 2^64: a baseline may sit one below zero (arbiter_bpf.c). */
	n = st.sent - c->consumed[i];
	c->consumed[i] = st.sent;
	*ret_n = n;
	/* Processes' signals merged into one the terminal sent (a tty's TTIN pending first):
	 * the read says SI_KERNEL, yet they were sent; the terminal's own stays ignored. */
	if (act == ACTION_IGNORE && !signal_from_process(si_code) && n > 0)
		return signal_action(sig, 0 /* SI_USER */, ctx, &why);
	return act;
}

void arbiter_scale_apply(struct arbiter *a, int sig, uint64_t n)
{
	struct pool *p = &a->pool;
	unsigned before = p->target, after = before;
	char limit[48] = "";

	if (sig == SIGTTIN) {
		after = before >= SETTINGS_MAX_WORKERS	     ? before
			: n >= SETTINGS_MAX_WORKERS - before ? SETTINGS_MAX_WORKERS
							     : before + (unsigned)n;
		if (n && after == SETTINGS_MAX_WORKERS)
			snprintf(limit, sizeof(limit), " (at most %u)", SETTINGS_MAX_WORKERS);
	} else if (before > 1) {
		after = n >= before - 1 ? 1 : before - (unsigned)n;
		if (n && after == 1)
			snprintf(limit, sizeof(limit), " (never fewer than one)");
	}
	if (!a->scale.counting) {
		if (after != before)
			log_info("pool size %u -> %u", before, after);
		else if (sig == SIGTTOU)
			log_info("pool size stays at %u: never fewer than one worker", before);
		else
			log_info("pool size stays at %u: at most %u workers", before,
				 SETTINGS_MAX_WORKERS);
	} else if (n == 0) {
		log_info("%s: counted by the probes at an earlier read; %u workers",
			 signal_name(sig), before);
		/* That read took this one for merged: it was not, it came on its own. */
		if (a->scale.merged)
			a->scale.merged--;
	} else {
		log_info("%s x%llu (counted by the probes): %u -> %u workers%s", signal_name(sig),
			 (ull)n, before, after, limit);
		a->scale.merged += n - 1;
	}
	if (after == before)
		return;
	p->target = after;
	pool_reconcile(p);
}

int arbiter_set_workers(struct arbiter *a, const struct control_peer *peer,
			const struct control_workers *req, char *why, size_t whylen)
{
	struct pool *p = &a->pool;
	unsigned before = p->target;
	unsigned long long want = req->op == '+'   ? (unsigned long long)before + req->n
				  : req->op == '-' ? (req->n >= before ? 0 : before - req->n)
						   : req->n;
	const char *sign = req->op == '=' ? "" : req->op == '+' ? "+" : "-";
	bool refused = true;
	char asked[96];

	control_peer_words(peer, asked, sizeof(asked));
	if (a->phase != PHASE_RUNNING)
		snprintf(why, whylen, "shutting down");
	/* A reload's new generation gets its size from the configuration (or keeps the
	 * current one, reload.c), and a rollback restores the old one: a change in the
	 * middle would be lost or fight it. The client says try again. */
	else if (reload_busy(a))
		snprintf(why, whylen, "a reload is in progress; try again when it ends");
	else if (a->upgrade.check_pid || a->upgrade.exec_wanted || a->upgrade.pending)
		snprintf(why, whylen, "an upgrade is in progress; try again when it ends");
	else if (want < 1)
		snprintf(why, whylen, "never fewer than one worker (the pool's target is %u)",
			 before);
	else if (want > SETTINGS_MAX_WORKERS)
		snprintf(why, whylen, "at most %u workers (the pool's target is %u)",
			 SETTINGS_MAX_WORKERS, before);
	else
		refused = false;
	if (refused) {
		control_log_command("workers", peer, "refused",
				    "control: workers %s%u from %s refused: %s", sign, req->n,
				    asked, why);
		return -1;
	}
	p->target = (unsigned)want;
	control_log_command("workers", peer, "applied",
			    "control: pool size %u -> %u (workers %s%u from %s)", before, p->target,
			    sign, req->n, asked);
	pool_reconcile(p);
	return (int)p->target;
}
