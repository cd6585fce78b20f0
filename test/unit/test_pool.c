/* Unit tests for the worker pool (arbiter/pool.c) with no process started: the link
 * wraps what the pool asks of the kernel (see the wrap: line below), so each test
 * scripts who exits and when, moves a fake monotonic clock, and reads which signals
 * went to which worker.
 *
 * wrap: spawn_process pidfd_send_signal waitid clock_gettime notify_open_worker notify_close_worker
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_kernel.h"
#include "fake_pool.h"

/* -- the tests ------------------------------------------------------------------- */

static void test_ttin_ttou_reconcile(void **state)
{
	(void)state;
	start(2, false);
	assert_int_equal(up.spawns, 2);
	assert_int_equal(pool_count(&pool, worker_is_ready), 2); /* no sd_notify: ready */

	pool.target = 4; /* TTIN twice */
	pool_reconcile(&pool);
	assert_int_equal(up.spawns, 4);
	assert_non_null(worker_in_slot(2, 1));
	assert_non_null(worker_in_slot(3, 1));

	pool.target = 2; /* TTOU twice: the highest slots go, with one TERM each */
	pool_reconcile(&pool);
	assert_int_equal(pool_count(&pool, worker_is_active), 2);
	assert_int_equal(signals_to(worker_in_slot(3, 1)->pid, SIGTERM), 1);
	assert_int_equal(signals_to(worker_in_slot(2, 1)->pid, SIGTERM), 1);
	assert_int_equal(signals_to(worker_in_slot(0, 1)->pid, SIGTERM), 0);
	/* asked to stop: their exits are no failure and start nobody */
	exits(worker_in_slot(3, 1), CLD_EXITED, 0);
	exits(worker_in_slot(2, 1), CLD_EXITED, 0);
	assert_int_equal(watched, 2); /* a reaped worker's pidfd leaves the loop */
	pool_reconcile(&pool);
	assert_int_equal(up.spawns, 4);
	assert_int_equal(pool.counters.replaced, 0);
	assert_int_equal(pool.boot_failures, 0);
}

static void test_crash_is_replaced_in_its_slot(void **state)
{
	struct worker *w;

	(void)state;
	start(2, false);
	clock_ms += BOOT_WINDOW_MS + 1; /* it had booted */
	w = worker_in_slot(0, 1);
	exits(w, CLD_KILLED, SIGSEGV);
	assert_int_equal(pool.counters.replaced, 1);
	assert_int_equal(pool.boot_failures, 0);
	pool_reconcile(&pool);
	assert_int_equal(up.spawns, 3);
	assert_non_null(worker_in_slot(0, 1));
	assert_int_equal(up.fatal_status, 0);
}

static void test_boot_failures_back_off_then_give_up(void **state)
{
	uint64_t wait = BACKOFF_FIRST_MS;

	(void)state;
	start(1, false);
	for (unsigned i = 1; i <= BOOT_FAILURE_LIMIT; i++) {
		exits(worker_in_slot(0, 1), CLD_EXITED, 1); /* within BOOT_WINDOW_MS */
		assert_int_equal(pool.boot_failures, i);
		if (i == BOOT_FAILURE_LIMIT)
			break;
		assert_int_equal(up.fatal_status, 0);
		assert_int_equal(pool.respawn_at_ms, clock_ms + wait);
		assert_int_equal(pool_next_deadline(&pool), clock_ms + wait);
		/* nothing starts before the backoff is over */
		clock_ms += wait - 1;
		pool_reconcile(&pool);
		assert_int_equal(up.spawns, i);
		clock_ms += 1;
		pool_reconcile(&pool);
		assert_int_equal(up.spawns, i + 1);
		wait = wait * 2 < BACKOFF_MAX_MS ? wait * 2 : BACKOFF_MAX_MS;
	}
	assert_int_equal(up.fatal_status, 3);
}

static void test_worker_verdict_stops_the_server(void **state)
{
	(void)state;
	start(2, false);
	clock_ms += BOOT_WINDOW_MS + 1;
	exits(worker_in_slot(1, 1), CLD_EXITED, 4); /* the application failed to load */
	assert_int_equal(up.fatal_status, 4);
}

static void test_spawn_error_retries_with_backoff(void **state)
{
	(void)state;
	spawn_errno = EAGAIN;
	start(1, false);
	assert_int_equal(pool.counters.spawn_errors, 1);
	assert_int_equal(pool.respawn_at_ms, clock_ms + BACKOFF_FIRST_MS);
	spawn_errno = 0;
	clock_ms += BACKOFF_FIRST_MS;
	pool_reconcile(&pool);
	assert_non_null(worker_in_slot(0, 1));
}

/* A reload, as reload.c starts one: a new generation on trial. */
static void begin_reload(void)
{
	pool.trial = true;
	pool.generation = ++pool.max_generation;
	pool_reconcile(&pool);
}

static void test_reload_retires_one_old_worker_per_ready_new_one(void **state)
{
	pid_t old0, old1, old2;

	(void)state;
	start(3, true);
	for (unsigned id = 0; id < 3; id++)
		ready(worker_in_slot(id, 1));
	old0 = worker_in_slot(0, 1)->pid;
	old1 = worker_in_slot(1, 1)->pid;
	old2 = worker_in_slot(2, 1)->pid;

	up.old_retiring = 0; /* called whenever no old worker is left, so at the start too */
	begin_reload();
	assert_int_equal(pool_count_gen(&pool, worker_is_booting, true), 3);
	assert_int_equal(signals_to(old0, SIGTERM) + signals_to(old1, SIGTERM) +
				 signals_to(old2, SIGTERM),
			 0); /* nobody goes before a new one is ready */

	ready(worker_in_slot(0, 2));
	pool_reconcile(&pool);
	assert_int_equal(signals_to(old2, SIGTERM), 1); /* the highest slot first */
	assert_int_equal(signals_to(old1, SIGTERM), 0);
	assert_int_equal(up.old_retiring, 0);

	ready(worker_in_slot(1, 2));
	pool_reconcile(&pool);
	pool_reconcile(&pool); /* again: still one TERM each */
	assert_int_equal(signals_to(old2, SIGTERM), 1);
	assert_int_equal(signals_to(old1, SIGTERM), 1);
	assert_int_equal(signals_to(old0, SIGTERM), 0);

	ready(worker_in_slot(2, 2));
	pool_reconcile(&pool);
	/* the last old worker: its listeners are retired before it drains */
	assert_true(up.old_retiring >= 1);
	assert_int_equal(signals_to(old0, SIGTERM), 1);
	assert_int_equal(signals_to(old1, SIGTERM), 1);
	assert_int_equal(signals_to(old2, SIGTERM), 1);
	assert_int_equal(up.trial_failures, 0);
}

static void test_reload_new_worker_not_ready_aborts(void **state)
{
	pid_t old;

	(void)state;
	start(1, true);
	ready(worker_in_slot(0, 1));
	old = worker_in_slot(0, 1)->pid;
	begin_reload();
	clock_ms += 5000 - 1;
	pool_run_deadlines(&pool, clock_ms);
	assert_int_equal(up.trial_failures, 0);
	clock_ms += 1;
	assert_int_equal(pool_next_deadline(&pool), clock_ms);
	pool_run_deadlines(&pool, clock_ms);
	assert_int_equal(up.trial_failures, 1);
	assert_string_equal(up.trial_why, "a worker of the new generation did not get ready");
	assert_int_equal(pool.boot_failures, 0); /* the reload failed, not the server */
	assert_int_equal(signals_to(old, SIGTERM), 0);
}

static void test_reload_new_worker_crash_aborts(void **state)
{
	(void)state;
	start(1, true);
	ready(worker_in_slot(0, 1));
	begin_reload();
	exits(worker_in_slot(0, 2), CLD_EXITED, 1);
	assert_int_equal(up.trial_failures, 1);
	assert_string_equal(up.trial_why, "a worker of the new generation failed");
	assert_int_equal(up.fatal_status, 0);
}

static void test_draining_replaces_nobody(void **state)
{
	(void)state;
	start(2, false);
	pool.draining = true;
	pool_stop_all(&pool, WEV_STOP_TERM);
	clock_ms += BOOT_WINDOW_MS + 1;
	exits(worker_in_slot(0, 1), CLD_KILLED, SIGKILL);
	pool_reconcile(&pool);
	assert_int_equal(up.spawns, 2);
	assert_int_equal(pool.counters.replaced, 0);
	/* the graceful deadline: KILL to whoever is left */
	clock_ms += 30000;
	pool_run_deadlines(&pool, clock_ms);
	assert_int_equal(signals_to(worker_in_slot(1, 1)->pid, SIGKILL), 1);
	assert_int_equal(pool.counters.killed, 1);
}

static void test_extend_timeout_moves_the_ready_deadline(void **state)
{
	struct notify_msg m = {.extend_usec = 20000000};
	struct worker *w;

	(void)state;
	start(1, true);
	w = worker_in_slot(0, 1);
	assert_int_equal(w->deadline_ms, clock_ms + 5000);
	pool_notify(&pool, w, &m, clock_ms);
	assert_int_equal(w->deadline_ms, clock_ms + 20000);
	m.extend_usec = 1000000; /* never earlier */
	pool_notify(&pool, w, &m, clock_ms);
	assert_int_equal(w->deadline_ms, clock_ms + 20000);
}

/* A large target is reached SPAWN_BATCH workers per turn of the loop, the rest due at
 * once on the deadline timer: the loop serves what waits between batches. */
static void test_a_large_target_is_reached_in_batches(void **state)
{
	(void)state;
	start(2 * SPAWN_BATCH + 3, false);
	assert_int_equal(up.spawns, SPAWN_BATCH);
	assert_int_equal(pool_next_deadline(&pool), clock_ms);
	pool_run_deadlines(&pool, clock_ms);
	pool_reconcile(&pool);
	assert_int_equal(up.spawns, 2 * SPAWN_BATCH);
	pool_reconcile(&pool);
	assert_int_equal(up.spawns, 2 * SPAWN_BATCH + 3);
	assert_int_equal(pool_next_deadline(&pool), 0); /* all there: nothing is due */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_a_large_target_is_reached_in_batches, teardown),
		cmocka_unit_test_teardown(test_ttin_ttou_reconcile, teardown),
		cmocka_unit_test_teardown(test_crash_is_replaced_in_its_slot, teardown),
		cmocka_unit_test_teardown(test_boot_failures_back_off_then_give_up, teardown),
		cmocka_unit_test_teardown(test_worker_verdict_stops_the_server, teardown),
		cmocka_unit_test_teardown(test_spawn_error_retries_with_backoff, teardown),
		cmocka_unit_test_teardown(test_reload_retires_one_old_worker_per_ready_new_one,
					  teardown),
		cmocka_unit_test_teardown(test_reload_new_worker_not_ready_aborts, teardown),
		cmocka_unit_test_teardown(test_reload_new_worker_crash_aborts, teardown),
		cmocka_unit_test_teardown(test_draining_replaces_nobody, teardown),
		cmocka_unit_test_teardown(test_extend_timeout_moves_the_ready_deadline, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
