/* Issue 29: the pool's work per event does not grow with the pool. Each test runs the
 * same event on a pool of 16 and of 4,096 workers (the fake kernel, no process
 * started) and compares what the pool counted in pool->slots.steps (worker records
 * and index words visited) and how many worker notify sockets it read: equal at both
 * sizes. Before the indexes, a free slot id cost a pass over all workers per id tried,
 * an exit a pass to find its pid, a deadline a pass, and every timer wake-up read
 * every worker's socket.
 *
 * wrap: spawn_process pidfd_send_signal waitid clock_gettime notify_open_worker notify_close_worker notify_read descendants_state
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
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define MAX_PROCS 4200
#include "fake_kernel.h"
/* not every step fake_pool.h offers is used here */
#pragma GCC diagnostic ignored "-Wunused-function"
#include "fake_pool.h"
#include "pool_internal.h"

static unsigned sockets_read;
/* A WATCHDOG=1 waiting in a worker's socket (by pid), and when it arrived. */
static pid_t ping_from;
static uint64_t ping_at;

/* Counts the worker sockets read, and reads the one waiting ping. */
void __wrap_notify_read(struct notify *n, int fd, const struct notify_sender *from,
			notify_fn on_msg, void *ctx);
void __wrap_notify_read(struct notify *n, int fd, const struct notify_sender *from,
			notify_fn on_msg, void *ctx)
{
	(void)n;
	(void)fd;
	sockets_read++;
	if (ping_from && from->pid == ping_from) {
		struct notify_msg m = {.watchdog = true};

		ping_from = 0;
		on_msg(ctx, &m, true, ping_at);
	}
}

/* The state every booting worker is seen in (boot_gate.h), and the looks. */
static int boot_state = 'R';
static unsigned state_reads;

int __wrap_descendants_state(pid_t pid);
int __wrap_descendants_state(pid_t pid)
{
	(void)pid;
	state_reads++;
	return boot_state;
}

/* What one event cost: index steps and sockets read. */
struct cost {
	uint64_t steps;
	unsigned reads;
};

static struct cost since(const struct cost *before)
{
	return (struct cost){pool.slots.steps + pool.slots.deadlines.steps - before->steps,
			     sockets_read - before->reads};
}

static struct cost now_cost(void)
{
	return (struct cost){pool.slots.steps + pool.slots.deadlines.steps, sockets_read};
}

static int setup(void **state)
{
	struct rlimit rl;

	(void)state;
	fake_notify_fd = STDIN_FILENO; /* any open fd: notify_read is this file's */
	/* a fake pidfd is an eventfd: 4,096 of them */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4400 && rl.rlim_max >= 4400) {
		rl.rlim_cur = 4400;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	return 0;
}

/* --timeout and --ready-timeout on: every worker has a deadline. */
static const struct pool_config cfg = {
	.graceful_timeout_ms = 30000,
	.ready_timeout_ms = 60000,
	.timeout_ms = 30000,
	.wait_notify = true,
	.notify_uid = (uid_t)-1,
	.notify_gid = (gid_t)-1,
};

/* A pool of n ready workers with --timeout and --ready-timeout: each has a deadline. */
static void start_ready(unsigned n)
{
	memset(&up, 0, sizeof(up));
	sockets_read = 0;
	watched = 0;
	pool_init(&pool, n, &loop, &notify, &hooks);
	/* All n booting at once: the gate (boot_gate.h) is test_boot_gate's, and
	 * test_start_holds_at_most_cap_booting's below. */
	boot_gate_init(&pool.boot, 0);
	pool_configure(&pool, &cfg);
	while (pool_count(&pool, worker_is_active) < n) {
		pool_reconcile(&pool); /* SPAWN_BATCH a turn */
		pool_watch_notify(&pool);
	}
	for (size_t i = 0; i < pool.n; i++) {
		struct notify_msg m = {.ready = true, .watchdog = true};

		pool_notify(&pool, pool.workers[i], &m, clock_ms + i);
	}
	pool_watch_notify(&pool);
	assert_int_equal(pool_count(&pool, worker_is_ready), n);
}

struct costs {
	struct cost ttin, exit_respawn, notify, deadline, next_deadline, ttou;
};

static void measure(unsigned n, struct costs *c)
{
	struct cost before;
	struct worker *w;

	start_ready(n);
	pool_next_deadline(&pool); /* the indexes built once for this generation */

	/* TTIN: one more worker, the lowest free slot id */
	before = now_cost();
	pool.target = n + 1;
	pool_reconcile(&pool);
	c->ttin = since(&before);
	assert_int_equal(pool_count(&pool, worker_is_active), n + 1);
	assert_non_null(worker_in_slot(n, 1));

	/* An exit (a SIGCHLD: found by its pid) and its replacement in the same slot */
	w = worker_in_slot(n / 2, 1);
	clock_ms += BOOT_WINDOW_MS + 1;
	fake_exit(w->pid, CLD_KILLED, SIGSEGV);
	before = now_cost();
	pool_reap_children(&pool);
	pool_reconcile(&pool);
	c->exit_respawn = since(&before);
	pool_gc(&pool);
	assert_non_null(worker_in_slot(n / 2, 1));

	/* A WATCHDOG=1 from one worker: its deadline moves */
	w = worker_in_slot(3, 1);
	before = now_cost();
	{
		struct notify_msg m = {.watchdog = true};

		pool_notify(&pool, w, &m, clock_ms);
	}
	pool_watch_notify(&pool);
	c->notify = since(&before);

	/* The next deadline, and one worker's watchdog deadline passing: one socket read,
	 * one worker judged */
	before = now_cost();
	(void)pool_next_deadline(&pool);
	c->next_deadline = since(&before);
	w = slots_earliest(&pool);
	assert_non_null(w);
	before = now_cost();
	clock_ms = w->deadline_ms;
	pool_run_deadlines(&pool, clock_ms);
	c->deadline = since(&before);
	assert_int_equal(signals_to(w->pid, SIGABRT), 1);

	/* TTOU: the highest slot goes */
	before = now_cost();
	pool.target = pool_count(&pool, worker_is_active) - 1;
	pool_reconcile(&pool);
	c->ttou = since(&before);

	pool_free(&pool);
	fake_reset();
}

/* Equal, but for a deadline's place in its heap: log2(4096 / 16) = 8 more levels to
 * move through, up or down. */
#define HEAP_LEVELS 8

static void assert_same(const char *what, struct cost small, struct cost big, unsigned heap_moves)
{
	print_message("%-14s steps %4llu at 16, %4llu at 4096; sockets read %u, %u\n", what,
		      (unsigned long long)small.steps, (unsigned long long)big.steps, small.reads,
		      big.reads);
	assert_true(big.steps <= small.steps + heap_moves * HEAP_LEVELS);
	assert_true(big.reads <= small.reads);
}

static void test_per_event_work_is_constant_in_n(void **state)
{
	struct costs small, big;

	(void)state;
	measure(16, &small);
	measure(4096, &big);
	assert_same("TTIN", small.ttin, big.ttin, 0);
	assert_same("exit+respawn", small.exit_respawn, big.exit_respawn, 2);
	assert_same("notify", small.notify, big.notify, 1);
	assert_same("next deadline", small.next_deadline, big.next_deadline, 0);
	assert_same("deadline", small.deadline, big.deadline, 2);
	assert_same("TTOU", small.ttou, big.ttou, 1);
	/* a deadline reads the socket of the worker it judges and of the next one due (is
	 * its ping there?), not every worker's */
	assert_true(big.deadline.reads <= 2);
}

/* A generation exiting: each SIGCHLD names a worker, which its pidfd reaps; the sweep
 * of all children (waitid P_ALL, a walk over every child in the kernel) waits
 * POOL_REAP_SWEEP_MS and then runs once for all of them, not once per exit: at 4,096
 * that was a quarter of a HUP's arbiter CPU (perf: wait_consider_task). */
static void test_exits_share_one_sweep(void **state)
{
	const unsigned n = 4096;
	size_t count;

	(void)state;
	start_ready(n);
	clock_ms += BOOT_WINDOW_MS + 1;
	waitid_all_calls = 0;
	count = pool.n;
	for (size_t i = 0; i < count; i++) {
		struct worker *w = pool.workers[i];

		fake_exit(w->pid, CLD_KILLED, SIGTERM);
		/* the signalfd's SIGCHLD and the pidfd's wake-up, in either order */
		if (i % 2)
			pool_reap_worker(&pool, w);
		pool_child_exited(&pool, w->pid, CLD_KILLED, clock_ms);
		if (!(i % 2))
			pool_reap_worker(&pool, w);
	}
	assert_int_equal(pool_count(&pool, worker_is_alive), 0);
	assert_int_equal(waitid_all_calls, 0);
	assert_true(pool_next_deadline(&pool) <= clock_ms + POOL_REAP_SWEEP_MS);

	clock_ms += POOL_REAP_SWEEP_MS;
	pool_run_deadlines(&pool, clock_ms);
	print_message("%u exits: %u waitid(P_ALL) calls\n", n, waitid_all_calls);
	assert_int_equal(waitid_all_calls, 1); /* finds nothing left to reap */

	/* A child that is no worker (an orphan PID 1 inherited) is swept at once. */
	waitid_all_calls = 0;
	pool_child_exited(&pool, 1 << 22, CLD_EXITED, clock_ms);
	assert_int_equal(waitid_all_calls, 1);

	pool_free(&pool);
	fake_reset();
}

/* A worker that got ready late still has its first ping looked for a --timeout after
 * its own readiness. One sweep a --timeout after the first worker got ready judged
 * every worker then on probe: one ready more than half a timeout later had not pinged
 * yet, was taken for a worker without a watchdog and never watched again (a
 * 4,096-worker start takes longer than that: 2,212 of them, queues full). */
static void test_late_ready_worker_is_watched(void **state)
{
	struct notify_msg ready = {.ready = true};
	struct worker *early, *late;
	uint64_t t0 = clock_ms;

	(void)state;
	memset(&up, 0, sizeof(up));
	pool_init(&pool, 2, &loop, &notify, &hooks);
	pool_configure(&pool, &cfg);
	pool_reconcile(&pool);
	early = worker_in_slot(0, 1);
	late = worker_in_slot(1, 1);
	pool_notify(&pool, early, &ready, clock_ms);

	clock_ms = t0 + 20000; /* the other gets ready 20 s later */
	pool_notify(&pool, late, &ready, clock_ms);
	ping_from = early->pid; /* early's first ping: 15 s after its ready */
	ping_at = t0 + 15000;
	/* the loop: the next deadline to wake at, then what is due */
	assert_int_equal(pool_next_deadline(&pool), t0 + 30000);
	clock_ms = t0 + 30000;
	pool_run_deadlines(&pool, clock_ms);
	assert_true(early->watchdog);
	assert_false(late->watchdog); /* looked for at 50 s, not yet */
	assert_int_not_equal(late->deadline_ms, 0);

	ping_from = late->pid; /* late's first ping: at 35 s */
	ping_at = t0 + 35000;
	(void)pool_next_deadline(&pool);
	assert_int_equal(late->deadline_ms, t0 + 50000);
	clock_ms = late->deadline_ms;
	pool_run_deadlines(&pool, clock_ms);
	assert_true(late->watchdog);

	/* late stops pinging: a --timeout after its last ping it is aborted */
	(void)pool_next_deadline(&pool);
	clock_ms = late->deadline_ms;
	pool_run_deadlines(&pool, clock_ms);
	assert_int_equal(signals_to(late->pid, SIGABRT), 1);

	pool_free(&pool);
	fake_reset();
}

/* A pool of n started through a gate of cap places, its booters seen in state (the
 * fake /proc): the first reconcile starts cap of them. */
static void start_gated(unsigned n, unsigned cap, int state)
{
	memset(&up, 0, sizeof(up));
	boot_state = state;
	state_reads = 0;
	pool_init(&pool, n, &loop, &notify, &hooks);
	boot_gate_init(&pool.boot, cap);
	pool_configure(&pool, &cfg);
	pool_reconcile(&pool);
	assert_int_equal(pool.n, cap);
}

/* A start of 4,096 on CPU-bound booters: never more than the cap booting, and each
 * READY=1 lets the next one start, without a look at /proc (fresh booters are on the
 * CPU) and without a timer while places are held by fresh booters. */
static void test_start_holds_at_most_cap_booting(void **state)
{
	const unsigned n = 4096, cap = 8;
	struct notify_msg ready = {.ready = true};
	size_t next = 0;

	(void)state;
	start_gated(n, cap, 'R');
	while (pool_count(&pool, worker_is_ready) < n) {
		unsigned booting =
			pool_count(&pool, worker_is_active) - pool_count(&pool, worker_is_ready);

		assert_true(booting <= cap);
		assert_true(next < pool.n);
		/* the oldest booter gets ready; the pool appends in start order */
		pool_notify(&pool, pool.workers[next++], &ready, clock_ms);
		pool_reconcile(&pool);
		assert_true(pool.n - next <= cap);
		assert_true(pool.n == n || pool.n - next == cap);
	}
	assert_int_equal(pool.n, n);
	assert_int_equal(state_reads, 0);
	assert_int_equal(boot_gate_deadline(&pool.boot), 0);
	pool_free(&pool);
	fake_reset();
}

/* Booters that wait (a sleep, a database) before READY=1 give their places up once
 * seen asleep: a pool of them starts whole, not cap at a time. */
static void test_waiting_booters_do_not_hold_the_start(void **state)
{
	const unsigned n = 64, cap = 8;
	uint64_t t0 = clock_ms;

	(void)state;
	start_gated(n, cap, 'S');
	/* the timer that brings the loop back to look */
	assert_int_equal(pool_next_deadline(&pool), t0 + BOOT_GATE_LOOK_MS);
	clock_ms = t0 + BOOT_GATE_LOOK_MS;
	pool_run_deadlines(&pool, clock_ms);
	pool_reconcile(&pool);
	assert_int_equal(pool.n, 2 * cap);
	assert_int_equal(state_reads, cap);
	for (int i = 0; i < 16 && pool.n < n; i++) {
		clock_ms += BOOT_GATE_LOOK_MS;
		pool_run_deadlines(&pool, clock_ms);
		pool_reconcile(&pool);
	}
	assert_int_equal(pool.n, n);
	assert_int_equal(pool_count(&pool, worker_is_ready), 0);
	boot_state = 'R';
	pool_free(&pool);
	fake_reset();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_per_event_work_is_constant_in_n, setup),
		cmocka_unit_test_setup(test_exits_share_one_sweep, setup),
		cmocka_unit_test_setup(test_late_ready_worker_is_watched, setup),
		cmocka_unit_test_setup(test_start_holds_at_most_cap_booting, setup),
		cmocka_unit_test_setup(test_waiting_booters_do_not_hold_the_start, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
