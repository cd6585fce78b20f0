/* What the modules below must be told when the arbiter changes: the pool's copy of the
 * settings and the mode (after a reload, a rollback, a shutdown), and the loop's watch
 * on the log (before the log file is reopened). Every wiring file that makes such a
 * change calls these, so they sit at the bottom of the wiring call order
 * (scripts/check-layers.py) and call nothing of the wiring layer. */
#include "arbiter.h"

#include "timeutil.h"

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
		.notify_watch_always = s->command != NULL,
		.heartbeat = s->command == NULL,
		.notify_uid = a->tmpl.drop_privileges ? a->tmpl.uid : (uid_t)-1,
		.notify_gid = a->tmpl.drop_privileges ? a->tmpl.gid : (gid_t)-1,
	};

	pool_configure(&a->pool, &cfg);
	a->autoscale.loop = &a->loop;
	autoscale_configure(&a->autoscale, s->workers, s->max_workers, s->scale_up_after_ms,
			    s->scale_down_after_ms, !s->command, now_ms());
	a->pool.trial = a->reloading;
	a->pool.draining = a->phase >= PHASE_DRAINING;
}

void arbiter_unwatch_log(struct arbiter *a)
{
	if (a->log_src.fd >= 0)
		(void)loop_del(&a->loop, &a->log_src);
	a->log_src.fd = -1;
}
