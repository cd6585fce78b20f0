/* Unit tests for the pool's retries and its boot window (arbiter/pool.c), issue 23:
 * every retry has its timer (pool_next_deadline), even while a reload's old generation
 * fills the pool; a reload whose workers cannot be started ends after --ready-timeout;
 * a worker that dies right after READY=1 failed to boot. No process is started: the
 * fake kernel (fake_kernel.h) scripts exits, spawn errors and the clock.
 *
 * wrap: spawn_process pidfd_send_signal waitid clock_gettime notify_open_worker notify_close_worker
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_kernel.h"
#include "fake_pool.h"

/* What reload_abort() does to the pool: the old generation is current again. */
static unsigned old_generation;

static void abort_reload(void)
{
	for (size_t i = 0; i < pool.n; i++)
		if (pool.workers[i]->generation == pool.generation &&
		    worker_is_alive(pool.workers[i]))
			pool_worker_event(&pool, pool.workers[i], WEV_STOP_TERM);
	pool.generation = old_generation;
	pool.trial = false;
	pool.respawn_at_ms = 0;
	pool.spawn_failures = 0;
}

/* A reload, as reload.c starts one. */
static void begin_reload(void)
{
	old_generation = pool.generation;
	on_trial_failed = abort_reload;
	pool.trial = true;
	pool.generation = ++pool.max_generation;
	pool.spawn_failures = 0;
	pool.respawn_at_ms = 0;
	pool_reconcile(&pool);
}

/* The loop's timer, as the arbiter arms and runs it: jump to the next deadline. */
static void run_timer(void)
{
	uint64_t next = pool_next_deadline(&pool);

	assert_true(next > 0);
	if (next > clock_ms)
		clock_ms = next;
	pool_run_deadlines(&pool, clock_ms);
	pool_reconcile(&pool);
}

static void test_failed_start_during_reload_has_its_timer(void **state)
{
	(void)state;
	start(2, false);
	spawn_errno = EAGAIN; /* a pids limit */
	begin_reload();
	assert_int_equal(pool.spawn_failures, 1);
	/* the old generation's two workers fill the pool, and still the retry is due */
	assert_int_equal(pool_next_deadline(&pool), clock_ms + BACKOFF_FIRST_MS);
	run_timer();
	assert_int_equal(pool.spawn_failures, 2);
	assert_int_equal(pool_next_deadline(&pool), clock_ms + 2 * BACKOFF_FIRST_MS);
	/* the limit lifted: the next retry starts the new generation */
	spawn_errno = 0;
	run_timer();
	assert_non_null(worker_in_slot(0, 2));
	assert_non_null(worker_in_slot(1, 2));
	assert_int_equal(up.trial_failures, 0);
}

static void test_reload_that_cannot_start_is_abandoned_at_ready_timeout(void **state)
{
	uint64_t hup;

	(void)state;
	start(2, false);
	spawn_errno = EAGAIN;
	hup = clock_ms;
	begin_reload();
	while (clock_ms < hup + 5000 && !up.trial_failures)
		run_timer();
	assert_int_equal(clock_ms, hup + 5000); /* --ready-timeout after the first failure */
	assert_int_equal(up.trial_failures, 1);
	assert_string_equal(up.trial_why, "the new generation's workers could not be started "
					  "within 5.0 s (--ready-timeout): Resource temporarily "
					  "unavailable");
	/* backoff 100, 200, 400, 800, 1600 ms: six attempts, then none */
	assert_int_equal(pool.counters.spawn_errors, 6);
	assert_int_equal(pool.generation, 1);
	/* the old generation was never touched */
	assert_int_equal(signals_to(worker_in_slot(0, 1)->pid, SIGTERM), 0);
	assert_int_equal(signals_to(worker_in_slot(1, 1)->pid, SIGTERM), 0);
	assert_int_equal(pool_next_deadline(&pool), 0); /* nothing more to do */
	assert_int_equal(up.fatal_status, 0);
	/* the old generation is current again: its own retries start afresh */
	clock_ms += BOOT_WINDOW_MS;
	exits(worker_in_slot(1, 1), CLD_KILLED, SIGSEGV);
	pool_reconcile(&pool);
	assert_int_equal(pool_next_deadline(&pool), clock_ms + BACKOFF_FIRST_MS);
	spawn_errno = 0;
	run_timer();
	assert_non_null(worker_in_slot(1, 1));
}

static void test_ready_then_exit_is_a_boot_failure(void **state)
{
	uint64_t wait = BACKOFF_FIRST_MS;

	(void)state;
	start(1, true);
	for (unsigned i = 1; i <= BOOT_FAILURE_LIMIT; i++) {
		struct worker *w = worker_in_slot(0, 1);

		clock_ms += 300; /* it boots */
		ready(w);
		clock_ms += BOOT_WINDOW_MS - 1; /* and dies just inside the window */
		exits(w, CLD_EXITED, 0);
		assert_int_equal(pool.boot_failures, i);
		if (i == BOOT_FAILURE_LIMIT)
			break;
		assert_int_equal(up.fatal_status, 0);
		assert_int_equal(pool_next_deadline(&pool), clock_ms + wait);
		pool_reconcile(&pool);
		assert_int_equal(up.spawns, i); /* not at once */
		run_timer();
		assert_int_equal(up.spawns, i + 1);
		wait = wait * 2 < BACKOFF_MAX_MS ? wait * 2 : BACKOFF_MAX_MS;
	}
	assert_int_equal(up.fatal_status, 3);
}

static void test_ready_past_the_window_then_exit_is_replaced_at_once(void **state)
{
	struct worker *w;

	(void)state;
	start(1, true);
	w = worker_in_slot(0, 1);
	clock_ms += 5000; /* a slow boot does not use up the window */
	ready(w);
	clock_ms += BOOT_WINDOW_MS;
	exits(w, CLD_KILLED, SIGSEGV);
	assert_int_equal(pool.boot_failures, 0);
	assert_int_equal(pool.counters.replaced, 1);
	pool_reconcile(&pool);
	assert_int_equal(up.spawns, 2);
}

static void test_new_generation_ready_then_exit_fails_the_reload(void **state)
{
	(void)state;
	start(1, true);
	ready(worker_in_slot(0, 1));
	begin_reload();
	ready(worker_in_slot(0, 2));
	clock_ms += 10;
	exits(worker_in_slot(0, 2), CLD_EXITED, 0);
	assert_int_equal(up.trial_failures, 1);
	assert_string_equal(up.trial_why, "a worker of the new generation failed");
	assert_int_equal(pool.boot_failures, 0); /* the reload failed, not the server */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_failed_start_during_reload_has_its_timer, teardown),
		cmocka_unit_test_teardown(
			test_reload_that_cannot_start_is_abandoned_at_ready_timeout, teardown),
		cmocka_unit_test_teardown(test_ready_then_exit_is_a_boot_failure, teardown),
		cmocka_unit_test_teardown(test_ready_past_the_window_then_exit_is_replaced_at_once,
					  teardown),
		cmocka_unit_test_teardown(test_new_generation_ready_then_exit_fails_the_reload,
					  teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
