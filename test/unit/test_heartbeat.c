/* arbiter/heartbeat.c on a real memfd: slots taken, released and reused (an adopted
 * worker's claimed as it is), a beat written by another process through its own
 * mapping of only its slot's page is seen, and a slot that stands still is reported
 * once, at the time the sweep said to come back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "heartbeat.h"

struct silent {
	unsigned calls;
	int slot;
	uint64_t last;
	void *owner;
};

static void on_silent(void *ctx, void *owner, int slot, uint64_t last)
{
	struct silent *s = ctx;
	struct heartbeats *h = owner;

	s->calls++;
	s->slot = slot;
	s->last = last;
	s->owner = owner;
	heartbeats_disarm(h, slot);
}

static void test_slots_are_reused(void **state)
{
	struct heartbeats h;
	int a, b, c, d;

	(void)state;
	heartbeats_init(&h);
	assert_true(h.fd >= 0);
	a = heartbeats_take(&h, &a);
	b = heartbeats_take(&h, &b);
	c = heartbeats_take(&h, &c);
	assert_int_equal(a, 0);
	assert_int_equal(b, 1);
	assert_int_equal(c, 2);
	heartbeats_release(&h, b);
	assert_int_equal(heartbeats_take(&h, &b), 1); /* the hole first */
	assert_int_equal(h.hi, 3);
	heartbeats_release(&h, c);
	heartbeats_release(&h, b);
	assert_false(heartbeats_claim(&h, 0, &a)); /* taken */
	assert_true(heartbeats_claim(&h, 5, &c));  /* an adopted worker's */
	assert_true(heartbeats_claim(&h, 3, &d));  /* one in the gap it left */
	assert_int_equal(h.hi, 6);
	/* the free ones, each once: 1, 2, 4; then new ones */
	{
		int got[4];

		for (int i = 0; i < 4; i++)
			got[i] = heartbeats_take(&h, &a);
		assert_int_equal(got[0] + got[1] + got[2], 1 + 2 + 4);
		assert_int_equal(got[0] * got[1] * got[2], 1 * 2 * 4);
		assert_int_equal(got[3], 6);
	}
	heartbeats_close(&h);
}

static void test_a_beat_from_another_process_and_a_silent_slot(void **state)
{
	struct heartbeats h;
	struct silent s = {0};
	int quiet, beating;
	uint64_t next;
	pid_t pid;

	(void)state;
	heartbeats_init(&h);
	quiet = heartbeats_take(&h, &h);
	/* far enough into the file that its page is not the first */
	for (int i = 1; i < 700; i++)
		beating = heartbeats_take(&h, &h);
	heartbeats_arm(&h, quiet, 1000);
	heartbeats_arm(&h, beating, 1000);
	pid = fork();
	if (pid == 0) {
		/* what worker/boot.c does: map the page of the slot, write the time */
		long page = sysconf(_SC_PAGESIZE);
		off_t off = (off_t)beating * 8, base = off / page * page;
		char *m = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, h.fd, base);

		if (m == MAP_FAILED)
			_exit(1);
		*(volatile uint64_t *)(m + (off - base)) = 1500;
		_exit(0);
	}
	assert_true(pid > 0);
	{
		int st;

		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	assert_int_equal(h.beats[beating], 1500);
	/* Not silent yet: come back when the quiet one could be (1000 + 300). */
	next = heartbeats_sweep(&h, 1100, 300, on_silent, &s);
	assert_int_equal(s.calls, 0);
	assert_int_equal(next, 1300);
	/* Then the quiet one is, once; the beating one next at 1500 + 300. */
	next = heartbeats_sweep(&h, 1300, 300, on_silent, &s);
	assert_int_equal(s.calls, 1);
	assert_int_equal(s.slot, quiet);
	assert_int_equal(s.last, 1000);
	assert_ptr_equal(s.owner, &h);
	assert_int_equal(next, 1800);
	next = heartbeats_sweep(&h, 1400, 300, on_silent, &s);
	assert_int_equal(s.calls, 1);
	heartbeats_disarm(&h, beating);
	assert_int_equal(heartbeats_sweep(&h, 2000, 300, on_silent, &s), 0);
	heartbeats_close(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_slots_are_reused),
		cmocka_unit_test(test_a_beat_from_another_process_and_a_silent_slot),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
