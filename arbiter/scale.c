/* The pool's size set from outside while the arbiter runs: `sigvisor workers N|+K|-K`
 * on the control socket, applied the way TTIN and TTOU are (arbiter.c): the target
 * changes and pool_reconcile starts or stops the difference. The answer is the new
 * target at once; the client watches the pool reach it (control_workers.c). */
#include <stdbool.h>
#include <stdio.h>

#include "arbiter.h"
#include "log.h"

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

	snprintf(asked, sizeof(asked), "uid %u pid %d (%s)", peer->uid, peer->pid, peer->comm);
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
		log_fields(LOG_LEVEL_INFO,
			   LOG_FIELDS(LOG_STR("command", "workers"), LOG_INT("peer_uid", peer->uid),
				      LOG_INT("peer_pid", peer->pid), LOG_STR("action", "refused")),
			   "control: workers %s%u from %s refused: %s", sign, req->n, asked, why);
		return -1;
	}
	p->target = (unsigned)want;
	log_fields(LOG_LEVEL_INFO,
		   LOG_FIELDS(LOG_STR("command", "workers"), LOG_INT("peer_uid", peer->uid),
			      LOG_INT("peer_pid", peer->pid), LOG_STR("action", "applied")),
		   "control: pool size %u -> %u (workers %s%u from %s)", before, p->target, sign,
		   req->n, asked);
	pool_reconcile(p);
	return (int)p->target;
}
