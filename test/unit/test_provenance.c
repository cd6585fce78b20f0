/* Where a disposition came from (arbiter/provenance.c), from map entries made up here:
 * the preload story, a parent that changed its mind after the fork, an exec that reset
 * an inherited handler, a reused tgid; and which processes the warning names
 * (dispositions_killable). */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dispositions.h"
#include "provenance.h"

#define MS	 1000000ULL
#define BIT(sig) (1ULL << ((sig)-1))

/* Host tgids 1000 (the arbiter, nspid 1), 1001 (the leader, nspid 7), 1002 and 1003
 * (its children, nspids 8 and 9). */
static const struct pv_fork forks[] = {
	{1000, {.fork_ns = 1 * MS, .nspid = 1}},
	{1001, {.fork_ns = 100 * MS, .exec_ns = 101 * MS, .ppid = 1000, .nspid = 7}},
	{1002, {.fork_ns = 500 * MS, .ppid = 1001, .nspid = 8}},
	{1003, {.fork_ns = 600 * MS, .ppid = 1001, .nspid = 9}},
};

static struct provenance *preload(const struct pv_set *extra, size_t n_extra)
{
	struct pv_set sets[16] = {
		/* the leader's import-time handlers, before it forks */
		{{1001, SIGUSR2}, {.ts_ns = 200 * MS, .kind = caught}},
		{{1001, SIGHUP}, {.ts_ns = 200 * MS, .kind = caught}},
		/* child 1002 resets USR2 2 ms after its fork */
		{{1002, SIGUSR2}, {.ts_ns = 502 * MS, .kind = sig_dfl}},
		/* the arbiter has a handler for TERM: the leader's exec reset it */
		{{1000, SIGTERM}, {.ts_ns = 50 * MS, .kind = caught}},
	};
	size_t n = 4;

	for (size_t i = 0; i < n_extra; i++)
		sets[n++] = extra[i];
	return provenance_from(forks, 4, sets, n);
}

static void test_the_preload_sentence(void **state)
{
	struct provenance *pv = preload(NULL, 0);
	struct prov_answer a;

	(void)state;
	assert_int_equal(provenance_of(pv, 8, SIGUSR2, &a), 0);
	assert_true(a.inherited);
	assert_int_equal(a.inh_pid, 7);
	assert_int_equal(a.inh_kind, caught);
	assert_int_equal(a.inh_before_ns, 300 * MS);
	assert_true(a.own);
	assert_int_equal(a.own_kind, sig_dfl);
	assert_int_equal(a.own_after_ns, 2 * MS);
	assert_string_equal(a.text, "handler inherited from pid 7 (set 300 ms before fork), "
				    "reset to default by this process 2.0 ms after fork");
	/* the other child never reset it */
	assert_int_equal(provenance_of(pv, 9, SIGUSR2, &a), 0);
	assert_string_equal(a.text, "handler inherited from pid 7 (set 400 ms before fork)");
	/* the leader set it itself */
	assert_int_equal(provenance_of(pv, 7, SIGUSR2, &a), 0);
	assert_string_equal(a.text, "handler set by this process 100 ms after fork");
	provenance_free(pv);
}

static void test_nothing_known_is_enoent(void **state)
{
	struct provenance *pv = preload(NULL, 0);
	struct prov_answer a;

	(void)state;
	assert_int_equal(provenance_of(pv, 8, SIGWINCH, &a), -ENOENT);
	assert_int_equal(provenance_of(pv, 4242, SIGUSR2, &a), -ENOENT);
	provenance_free(pv);
}

static void test_a_parent_that_changed_after_the_fork_is_not_known(void **state)
{
	const struct pv_set later = {{1001, SIGUSR1}, {.ts_ns = 1500 * MS, .kind = sig_ign}};
	struct provenance *pv = preload(&later, 1);
	struct prov_answer a;

	(void)state;
	assert_int_equal(provenance_of(pv, 8, SIGUSR1, &a), 0);
	assert_false(a.inherited);
	assert_true(a.inh_unknown);
	assert_string_equal(a.text, "inherited from pid 7, which set ignore 1.0 s after the fork "
				    "(what it passed on is not known)");
	provenance_free(pv);
}

static void test_an_exec_resets_an_inherited_handler(void **state)
{
	struct provenance *pv = preload(NULL, 0);
	struct prov_answer a;

	(void)state;
	/* the leader inherited the arbiter's TERM handler, and exec'd */
	assert_int_equal(provenance_of(pv, 7, SIGTERM, &a), 0);
	assert_true(a.inherited);
	assert_true(a.own_exec);
	assert_string_equal(a.text, "handler inherited from pid 1 (set 50 ms before fork), reset "
				    "to default by this process's exec 1.0 ms after fork");
	/* and its children inherit the default, through that exec */
	assert_int_equal(provenance_of(pv, 8, SIGTERM, &a), 0);
	assert_int_equal(a.exec_pid, 7);
	assert_string_equal(a.text, "handler inherited from pid 1 (set 450 ms before fork), "
				    "reset to default by the exec of pid 7");
	provenance_free(pv);
}

static void test_a_reused_tgid_does_not_lend_its_calls(void **state)
{
	/* a set by an earlier process with tgid 1003, before 1003's fork */
	const struct pv_set old = {{1003, SIGUSR2}, {.ts_ns = 10 * MS, .kind = sig_ign}};
	struct provenance *pv = preload(&old, 1);
	struct prov_answer a;

	(void)state;
	assert_int_equal(provenance_of(pv, 9, SIGUSR2, &a), 0);
	assert_false(a.own);
	assert_string_equal(a.text, "handler inherited from pid 7 (set 400 ms before fork)");
	provenance_free(pv);
}

static void test_killable_needs_a_handling_ancestor(void **state)
{
	struct disp_proc rows[] = {
		/* worker 0: leader 7 handles USR2 and HUP, child 8 has USR2 default, its
		 * grandchild 10 too; child 9 ignores USR2 */
		{.pid = 7,
		 .ppid = 1,
		 .worker = 0,
		 .generation = 1,
		 .m = {.cgt = BIT(SIGUSR2) | BIT(SIGHUP)}},
		{.pid = 8, .ppid = 7, .worker = 0, .generation = 1, .m = {.cgt = BIT(SIGHUP)}},
		{.pid = 9, .ppid = 7, .worker = 0, .generation = 1, .m = {.ign = BIT(SIGUSR2)}},
		{.pid = 10, .ppid = 8, .worker = 0, .generation = 1, .m = {0}},
		/* worker 1: nothing handles USR2, so nothing is lost */
		{.pid = 20, .ppid = 1, .worker = 1, .generation = 1, .m = {0}},
		{.pid = 21, .ppid = 20, .worker = 1, .generation = 1, .m = {0}},
	};
	struct disp_procs rs = {.r = rows, .n = 6};
	pid_t by = 0;

	(void)state;
	assert_false(dispositions_killable(&rs, 0, SIGUSR2, &by)); /* the leader handles it */
	assert_true(dispositions_killable(&rs, 1, SIGUSR2, &by));
	assert_int_equal(by, 7);
	assert_false(dispositions_killable(&rs, 1, SIGHUP, &by));  /* handled */
	assert_false(dispositions_killable(&rs, 2, SIGUSR2, &by)); /* ignored */
	assert_true(dispositions_killable(&rs, 3, SIGHUP, &by));   /* its parent 8 handles HUP */
	assert_int_equal(by, 8);
	assert_true(dispositions_killable(&rs, 3, SIGUSR2, &by)); /* its grandparent USR2 */
	assert_int_equal(by, 7);
	assert_false(dispositions_killable(&rs, 3, SIGTERM, &by)); /* not a control signal */
	assert_false(dispositions_killable(&rs, 3, SIGTTIN, &by)); /* stops, never kills */
	assert_false(dispositions_killable(&rs, 5, SIGUSR2, &by));
	/* blocked: it waits, it does not kill now */
	rows[1].m.blk = BIT(SIGUSR2);
	assert_false(dispositions_killable(&rs, 1, SIGUSR2, &by));
}

static void test_durations(void **state)
{
	char b[32];

	(void)state;
	provenance_duration(2100000, b, sizeof(b));
	assert_string_equal(b, "2.1 ms");
	provenance_duration(312000000, b, sizeof(b));
	assert_string_equal(b, "312 ms");
	provenance_duration(1400000000, b, sizeof(b));
	assert_string_equal(b, "1.4 s");
	provenance_duration(-5000, b, sizeof(b));
	assert_string_equal(b, "0.0 ms");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_the_preload_sentence),
		cmocka_unit_test(test_nothing_known_is_enoent),
		cmocka_unit_test(test_a_parent_that_changed_after_the_fork_is_not_known),
		cmocka_unit_test(test_an_exec_resets_an_inherited_handler),
		cmocka_unit_test(test_a_reused_tgid_does_not_lend_its_calls),
		cmocka_unit_test(test_killable_needs_a_handling_ancestor),
		cmocka_unit_test(test_durations),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
