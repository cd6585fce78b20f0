/* At most cap workers booting on the CPUs at once (arbiter/boot_gate.c). The states a
 * holder is seen in come from here: the /proc reader is wrapped, each pid's letter set
 * by the test, each read counted.
 *
 * wrap: descendants_state
 */
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "boot_gate.h"

/* pid i's state letter (0: gone); the reads. */
static int states[16];
static unsigned reads;

int __wrap_descendants_state(pid_t pid);
int __wrap_descendants_state(pid_t pid)
{
	reads++;
	assert_true(pid > 0 && pid < 16);
	return states[pid] ? states[pid] : -ESRCH;
}

/* A gate of cap 4 held by pids 1..4, started at t, all running. */
static void full(struct boot_gate *g, uint64_t t)
{
	boot_gate_init(g, 4);
	reads = 0;
	for (pid_t pid = 1; pid <= 4; pid++) {
		assert_true(boot_gate_open(g, t));
		boot_gate_enter(g, pid, t);
		states[pid] = 'R';
	}
}

static void test_fresh_holders_close_it_without_a_look(void **state)
{
	struct boot_gate g;

	(void)state;
	full(&g, 1000);
	/* exec'ing and loading: on the CPU, not looked at */
	assert_false(boot_gate_open(&g, 1000));
	assert_false(boot_gate_open(&g, 1009));
	assert_int_equal(reads, 0);
	assert_int_equal(boot_gate_deadline(&g), 1000 + BOOT_GATE_LOOK_MS);
}

static void test_running_holders_keep_their_places(void **state)
{
	struct boot_gate g;

	(void)state;
	full(&g, 1000);
	assert_false(boot_gate_open(&g, 1010));
	assert_int_equal(reads, 4);
	/* looked at again BOOT_GATE_LOOK_MS later, not before */
	assert_int_equal(boot_gate_deadline(&g), 1010 + BOOT_GATE_LOOK_MS);
	assert_false(boot_gate_open(&g, 1015));
	assert_int_equal(reads, 4);
	assert_false(boot_gate_open(&g, 1020));
	assert_int_equal(reads, 8);
}

static void test_a_waiting_holder_gives_its_place_up(void **state)
{
	struct boot_gate g;
	const int waiting[] = {'S', 'D', 'T', 'Z', 0};

	(void)state;
	for (size_t i = 0; i < sizeof(waiting) / sizeof(waiting[0]); i++) {
		full(&g, 1000);
		states[3] = waiting[i]; /* asleep, in I/O, stopped, exited, reaped */
		assert_true(boot_gate_open(&g, 1010));
		assert_int_equal(g.released, 1);
		assert_int_equal(boot_gate_deadline(&g), 0);
		boot_gate_enter(&g, 5, 1010);
		states[5] = 'R';
		assert_false(boot_gate_open(&g, 1011));
		states[5] = 0;
	}
}

static void test_leaving_frees_a_place(void **state)
{
	struct boot_gate g;

	(void)state;
	full(&g, 1000);
	assert_false(boot_gate_open(&g, 1000));
	boot_gate_leave(&g, 7); /* not a holder: nothing */
	assert_false(boot_gate_open(&g, 1001));
	boot_gate_leave(&g, 2); /* ready */
	assert_true(boot_gate_open(&g, 1001));
	assert_int_equal(boot_gate_deadline(&g), 0);
	assert_int_equal(reads, 0);
}

static void test_no_cap_is_always_open(void **state)
{
	struct boot_gate g;

	(void)state;
	boot_gate_init(&g, 0);
	reads = 0;
	for (pid_t pid = 1; pid < 16; pid++) {
		assert_true(boot_gate_open(&g, 1000));
		boot_gate_enter(&g, pid, 1000);
	}
	assert_int_equal(g.n, 0);
	assert_int_equal(reads, 0);
}

static void test_default_cap_is_four_a_cpu(void **state)
{
	cpu_set_t set;
	unsigned cap = boot_gate_default_cap();
	int cpus;

	(void)state;
	assert_int_equal(sched_getaffinity(0, sizeof(set), &set), 0);
	cpus = CPU_COUNT(&set);
	assert_true(cap >= 8 && cap <= BOOT_GATE_MAX);
	if (cpus >= 2 && cpus <= BOOT_GATE_MAX / 4)
		assert_int_equal(cap, 4 * (unsigned)cpus);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fresh_holders_close_it_without_a_look),
		cmocka_unit_test(test_running_holders_keep_their_places),
		cmocka_unit_test(test_a_waiting_holder_gives_its_place_up),
		cmocka_unit_test(test_leaving_frees_a_place),
		cmocka_unit_test(test_no_cap_is_always_open),
		cmocka_unit_test(test_default_cap_is_four_a_cpu),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
