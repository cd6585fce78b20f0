/* Unit tests for the worker lifecycle table (arbiter/lifecycle.c): state x event -> transition. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lifecycle.h"

static void expect(enum worker_state st, enum worker_event ev, enum worker_state next,
		   unsigned actions)
{
	struct transition t = worker_transition(st, ev);

	if (t.next != next || t.actions != actions)
		print_error("%s + %s -> %s 0x%02x, wanted %s 0x%02x\n", worker_state_name(st),
			    worker_event_name(ev), worker_state_name(t.next), t.actions,
			    worker_state_name(next), actions);
	assert_int_equal(t.next, next);
	assert_int_equal(t.actions, actions);
}

static void test_booting(void **state)
{
	(void)state;
	expect(WORKER_BOOTING, WEV_READY, WORKER_READY, WACT_CLEAR_DEADLINE);
	expect(WORKER_BOOTING, WEV_STOP_TERM, WORKER_STOPPING, WACT_SEND_TERM | WACT_ARM_STOP);
	expect(WORKER_BOOTING, WEV_STOP_QUIT, WORKER_STOPPING, WACT_SEND_QUIT | WACT_ARM_STOP);
	/* It never became ready: stopped the graceful way and counted as a boot failure. */
	expect(WORKER_BOOTING, WEV_DEADLINE, WORKER_STOPPING,
	       WACT_SEND_TERM | WACT_ARM_STOP | WACT_BOOT_FAILED);
	expect(WORKER_BOOTING, WEV_EXITED, WORKER_EXITED, WACT_REPLACE | WACT_BOOT_FAILED);
}

static void test_ready(void **state)
{
	(void)state;
	/* A second READY=1 (or STATUS= update) changes nothing. */
	expect(WORKER_READY, WEV_READY, WORKER_READY, 0);
	expect(WORKER_READY, WEV_STOP_TERM, WORKER_STOPPING, WACT_SEND_TERM | WACT_ARM_STOP);
	expect(WORKER_READY, WEV_STOP_QUIT, WORKER_STOPPING, WACT_SEND_QUIT | WACT_ARM_STOP);
	expect(WORKER_READY, WEV_EXITED, WORKER_EXITED, WACT_REPLACE);
}

static void test_ready_watchdog(void **state)
{
	struct transition t = worker_transition(WORKER_READY, WEV_DEADLINE);

	(void)state;
	/* The watchdog: ABRT like systemd, then the usual graceful deadline before KILL. */
	assert_int_equal(t.next, WORKER_STOPPING);
	assert_true(t.actions & WACT_SEND_ABRT);
	assert_true(t.actions & WACT_ARM_STOP);
	assert_false(t.actions & (WACT_SEND_TERM | WACT_SEND_QUIT | WACT_SEND_KILL));
}

static void test_stopping(void **state)
{
	(void)state;
	expect(WORKER_STOPPING, WEV_READY, WORKER_STOPPING, 0);
	/* Exactly one TERM per worker, and the deadline is not pushed back. */
	expect(WORKER_STOPPING, WEV_STOP_TERM, WORKER_STOPPING, 0);
	/* Escalation to quick: QUIT, but the deadline stays where it was. */
	expect(WORKER_STOPPING, WEV_STOP_QUIT, WORKER_STOPPING, WACT_SEND_QUIT);
	expect(WORKER_STOPPING, WEV_DEADLINE, WORKER_KILLING, WACT_SEND_KILL | WACT_CLEAR_DEADLINE);
	/* It was asked to leave: no replacement from the table. */
	expect(WORKER_STOPPING, WEV_EXITED, WORKER_EXITED, 0);
}

static void test_killing(void **state)
{
	(void)state;
	for (int ev = 0; ev < WORKER_EVENT_MAX; ev++)
		if (ev != WEV_EXITED)
			expect(WORKER_KILLING, (enum worker_event)ev, WORKER_KILLING, 0);
	expect(WORKER_KILLING, WEV_EXITED, WORKER_EXITED, 0);
}

static void test_exited(void **state)
{
	(void)state;
	for (int ev = 0; ev < WORKER_EVENT_MAX; ev++)
		expect(WORKER_EXITED, (enum worker_event)ev, WORKER_EXITED, 0);
}

/* Properties over the whole table, so a row added later keeps them. */
static void test_invariants(void **state)
{
	const unsigned all = WACT_SEND_TERM | WACT_SEND_QUIT | WACT_SEND_KILL | WACT_SEND_ABRT |
			     WACT_ARM_STOP | WACT_CLEAR_DEADLINE | WACT_REPLACE | WACT_BOOT_FAILED;

	(void)state;
	for (int st = 0; st < WORKER_STATE_MAX; st++) {
		for (int ev = 0; ev < WORKER_EVENT_MAX; ev++) {
			struct transition t =
				worker_transition((enum worker_state)st, (enum worker_event)ev);
			unsigned sends = t.actions & (WACT_SEND_TERM | WACT_SEND_QUIT |
						      WACT_SEND_KILL | WACT_SEND_ABRT);

			assert_true(t.next < WORKER_STATE_MAX);
			assert_int_equal(t.actions & ~all, 0);
			/* Nothing comes back from the dead. */
			if (st == WORKER_EXITED) {
				assert_int_equal(t.next, WORKER_EXITED);
				assert_int_equal(t.actions, 0);
			}
			/* KILL only after a graceful deadline passed. */
			if (t.actions & WACT_SEND_KILL) {
				assert_int_equal(st, WORKER_STOPPING);
				assert_int_equal(ev, WEV_DEADLINE);
			}
			/* An exit never sends a signal, and always ends in EXITED. */
			if (ev == WEV_EXITED) {
				assert_int_equal(t.next, WORKER_EXITED);
				assert_int_equal(sends, 0);
			}
			/* At most one signal per transition. */
			assert_true(sends == 0 || (sends & (sends - 1)) == 0);
			/* Arming and clearing the deadline at once makes no sense. */
			assert_false((t.actions & WACT_ARM_STOP) &&
				     (t.actions & WACT_CLEAR_DEADLINE));
			/* Only events that stop a worker lead into STOPPING from outside. */
			if (t.next == WORKER_STOPPING && st != WORKER_STOPPING) {
				assert_true(ev == WEV_STOP_TERM || ev == WEV_STOP_QUIT ||
					    ev == WEV_DEADLINE);
				assert_true(t.actions & WACT_ARM_STOP);
				assert_int_not_equal(sends, 0);
			}
			/* Once stopping or killing, a worker never goes back to serving. */
			if (st == WORKER_STOPPING || st == WORKER_KILLING)
				assert_true(t.next == WORKER_STOPPING || t.next == WORKER_KILLING ||
					    t.next == WORKER_EXITED);
			if (st == WORKER_KILLING)
				assert_int_equal(t.actions, 0);
		}
	}
}

static void test_names(void **state)
{
	(void)state;
	for (int st = 0; st < WORKER_STATE_MAX; st++) {
		const char *n = worker_state_name((enum worker_state)st);

		assert_non_null(n);
		assert_string_not_equal(n, "?");
		for (int o = 0; o < st; o++)
			assert_string_not_equal(n, worker_state_name((enum worker_state)o));
	}
	for (int ev = 0; ev < WORKER_EVENT_MAX; ev++) {
		const char *n = worker_event_name((enum worker_event)ev);

		assert_non_null(n);
		assert_string_not_equal(n, "?");
		for (int o = 0; o < ev; o++)
			assert_string_not_equal(n, worker_event_name((enum worker_event)o));
	}
	assert_string_equal(worker_state_name(WORKER_BOOTING), "booting");
	assert_string_equal(worker_state_name(WORKER_EXITED), "exited");
	assert_string_equal(worker_event_name(WEV_STOP_TERM), "stop-term");
	assert_string_equal(worker_state_name(WORKER_STATE_MAX), "?");
	assert_string_equal(worker_event_name(WORKER_EVENT_MAX), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_booting),	       cmocka_unit_test(test_ready),
		cmocka_unit_test(test_ready_watchdog), cmocka_unit_test(test_stopping),
		cmocka_unit_test(test_killing),	       cmocka_unit_test(test_exited),
		cmocka_unit_test(test_invariants),     cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests_name("test_lifecycle", tests, NULL, NULL);
}
