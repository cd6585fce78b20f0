/* The pool run on the fake kernel (fake_kernel.h): the arbiter above it, as far as the
 * pool sees it (hooks that count what they were told), and the steps a test scripts
 * (start a pool, a worker exits, a worker says READY=1). Included after fake_kernel.h
 * by the test files of arbiter/pool.c; their " * wrap:" line must list spawn_process. */
#pragma once

#include <stdio.h>
#include <string.h>

#include "pool.h"
#include "spawn.h"

pid_t __wrap_spawn_process(int *ret_pidfd);
pid_t __wrap_spawn_process(int *ret_pidfd)
{
	return fake_spawn(ret_pidfd);
}

static struct {
	int fatal_status;
	unsigned trial_failures;
	char trial_why[256];
	unsigned old_retiring;
	unsigned spawns;
} up;

/* What the arbiter does beyond counting when a trial fails (a test of reloads sets
 * it: reload_abort() makes the old generation current again). */
static void (*on_trial_failed)(void);

static struct pool pool;
static struct loop loop = {.backend = &fake_backend};
static struct notify notify;

static int hook_spawn(void *ctx, unsigned id, unsigned generation, char *notify_env, int hb_slot,
		      pid_t *ret_pid, int *ret_pidfd)
{
	pid_t pid;

	(void)ctx;
	(void)id;
	(void)generation;
	(void)notify_env;
	(void)hb_slot;
	up.spawns++;
	/* what spawn_worker does after building the environment (wrapped above) */
	pid = spawn_process(ret_pidfd);
	if (pid < 0)
		return -errno;
	*ret_pid = pid;
	return 0;
}

static void hook_fatal(void *ctx, int status)
{
	(void)ctx;
	up.fatal_status = status;
}

static void hook_trial_failed(void *ctx, const char *why)
{
	(void)ctx;
	up.trial_failures++;
	snprintf(up.trial_why, sizeof(up.trial_why), "%s", why);
	if (on_trial_failed)
		on_trial_failed();
}

static void hook_old_retiring(void *ctx)
{
	(void)ctx;
	up.old_retiring++;
}

static const struct pool_hooks hooks = {
	.spawn = hook_spawn,
	.fatal = hook_fatal,
	.trial_failed = hook_trial_failed,
	.old_retiring = hook_old_retiring,
};

static void start(unsigned target, bool wait_notify)
{
	struct pool_config cfg = {
		.graceful_timeout_ms = 30000,
		.ready_timeout_ms = 5000,
		.wait_notify = wait_notify,
		.notify_uid = (uid_t)-1,
		.notify_gid = (gid_t)-1,
	};

	memset(&up, 0, sizeof(up));
	watched = 0;
	pool_init(&pool, target, &loop, &notify, &hooks);
	pool_configure(&pool, &cfg);
	pool_reconcile(&pool);
}

static int teardown(void **state)
{
	(void)state;
	pool_free(&pool);
	fake_reset();
	return 0;
}

static struct worker *worker_in_slot(unsigned id, unsigned generation)
{
	for (size_t i = 0; i < pool.n; i++)
		if (pool.workers[i]->id == id && pool.workers[i]->generation == generation &&
		    worker_is_alive(pool.workers[i]))
			return pool.workers[i];
	return NULL;
}

/* The process exits (status for CLD_EXITED, a signal for CLD_KILLED) and the pool
 * reaps it, as the loop would on its pidfd. */
static void exits(struct worker *w, int code, int status)
{
	fake_exit(w->pid, code, status);
	pool_reap_worker(&pool, w);
	pool_gc(&pool);
}

static void ready(struct worker *w)
{
	struct notify_msg m = {.ready = true};

	pool_notify(&pool, w, &m, clock_ms);
}
