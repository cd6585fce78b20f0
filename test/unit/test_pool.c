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

#include "pool.h"
#include "spawn.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* -- the fake kernel ------------------------------------------------------------- */

#define MAX_PROCS 64

struct proc {
	pid_t pid;
	int pidfd;
	bool exited, reaped;
	int code; /* CLD_EXITED or CLD_KILLED */
	int status;
	int signals[8];
	unsigned n_signals;
};

static struct proc procs[MAX_PROCS];
static unsigned n_procs;
static uint64_t clock_ms = 1000000;
static int spawn_errno; /* nonzero: the next spawn_process fails with it */

/* The newest first: a reaped worker's pidfd was closed and its number reused. */
static struct proc *proc_of_fd(int fd)
{
	for (unsigned i = n_procs; i-- > 0;)
		if (procs[i].pidfd == fd && !procs[i].reaped)
			return &procs[i];
	return NULL;
}

static struct proc *proc_of_pid(pid_t pid)
{
	for (unsigned i = 0; i < n_procs; i++)
		if (procs[i].pid == pid)
			return &procs[i];
	return NULL;
}

pid_t __wrap_spawn_process(int *ret_pidfd);
pid_t __wrap_spawn_process(int *ret_pidfd)
{
	struct proc *p;

	if (spawn_errno) {
		errno = spawn_errno;
		return -1;
	}
	assert_true(n_procs < MAX_PROCS);
	p = &procs[n_procs++];
	memset(p, 0, sizeof(*p));
	p->pid = (pid_t)(1000 + n_procs);
	/* a real fd, so the pool's close() of a pidfd closes nothing of ours */
	p->pidfd = eventfd(0, EFD_CLOEXEC);
	assert_true(p->pidfd >= 0);
	*ret_pidfd = p->pidfd;
	return p->pid;
}

int __wrap_pidfd_send_signal(int pidfd, int sig, siginfo_t *info, unsigned flags);
int __wrap_pidfd_send_signal(int pidfd, int sig, siginfo_t *info, unsigned flags)
{
	struct proc *p = proc_of_fd(pidfd);

	(void)info;
	(void)flags;
	assert_non_null(p);
	if (p->exited) {
		errno = ESRCH;
		return -1;
	}
	assert_true(p->n_signals < 8);
	p->signals[p->n_signals++] = sig;
	return 0;
}

static void fill(siginfo_t *si, const struct proc *p)
{
	si->si_pid = p->pid;
	si->si_code = p->code;
	si->si_status = p->status;
}

int __wrap_waitid(idtype_t type, id_t id, siginfo_t *si, int options);
int __wrap_waitid(idtype_t type, id_t id, siginfo_t *si, int options)
{
	memset(si, 0, sizeof(*si));
	if ((int)type == P_PIDFD) {
		struct proc *p = proc_of_fd((int)id);

		assert_non_null(p);
		if (p->exited && !p->reaped) {
			fill(si, p);
			if (!(options & WNOWAIT))
				p->reaped = true;
		}
		return 0;
	}
	for (unsigned i = 0; i < n_procs; i++) {
		struct proc *p = &procs[i];

		if (p->exited && !p->reaped && (type == P_ALL || (id_t)p->pid == id)) {
			fill(si, p);
			if (!(options & WNOWAIT))
				p->reaped = true;
			return 0;
		}
	}
	if (type == P_ALL && !n_procs) {
		errno = ECHILD;
		return -1;
	}
	return 0;
}

int __real_clock_gettime(clockid_t clk, struct timespec *ts);
int __wrap_clock_gettime(clockid_t clk, struct timespec *ts);
int __wrap_clock_gettime(clockid_t clk, struct timespec *ts)
{
	if (clk != CLOCK_MONOTONIC)
		return __real_clock_gettime(clk, ts);
	ts->tv_sec = (time_t)(clock_ms / 1000);
	ts->tv_nsec = (long)(clock_ms % 1000) * 1000000;
	return 0;
}

/* The loop: a backend that only counts what is watched (no epoll needed). */
static int watched;

static int fake_add(struct loop *l, struct source *s, uint32_t events)
{
	(void)l;
	(void)s;
	(void)events;
	watched++;
	return 0;
}

static int fake_mod(struct loop *l, struct source *s, uint32_t events)
{
	(void)l;
	(void)s;
	(void)events;
	return 0;
}

static int fake_del(struct loop *l, struct source *s)
{
	(void)l;
	(void)s;
	watched--;
	return 0;
}

static const struct loop_backend fake_backend = {
	.name = "fake",
	.add = fake_add,
	.mod = fake_mod,
	.del = fake_del,
};

static struct loop loop = {.backend = &fake_backend};

int __wrap_notify_open_worker(struct notify *n, uid_t uid, gid_t gid, int *ret_fd, char *env,
			      size_t envlen);
int __wrap_notify_open_worker(struct notify *n, uid_t uid, gid_t gid, int *ret_fd, char *env,
			      size_t envlen)
{
	(void)n;
	(void)uid;
	(void)gid;
	*ret_fd = -1; /* READY=1 comes through pool_notify() in these tests */
	if (envlen)
		env[0] = '\0';
	return 0;
}

void __wrap_notify_close_worker(struct notify *n, int fd);
void __wrap_notify_close_worker(struct notify *n, int fd)
{
	(void)n;
	(void)fd;
}

/* -- the arbiter above, as far as the pool sees it ------------------------------- */

struct upward {
	int fatal_status;
	unsigned trial_failures;
	const char *trial_why;
	unsigned old_retiring;
	unsigned spawns;
};

static struct upward up;

static int hook_spawn(void *ctx, unsigned id, unsigned generation, char *notify_env, pid_t *ret_pid,
		      int *ret_pidfd)
{
	pid_t pid;

	(void)ctx;
	(void)id;
	(void)generation;
	(void)notify_env;
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
	up.trial_why = why;
}

static void hook_old_retiring(void *ctx)
{
	(void)ctx;
	up.old_retiring++;
}

static struct pool pool;
static struct notify notify;

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
	for (unsigned i = 0; i < n_procs; i++)
		if (!procs[i].reaped)
			close(procs[i].pidfd); /* pool_free closed the others' */
	n_procs = 0;
	spawn_errno = 0;
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
	struct proc *p = proc_of_pid(w->pid);

	assert_non_null(p);
	p->exited = true;
	p->code = code;
	p->status = status;
	pool_reap_worker(&pool, w);
	pool_gc(&pool);
}

static unsigned signals_to(pid_t pid, int sig)
{
	struct proc *p = proc_of_pid(pid);
	unsigned n = 0;

	for (unsigned i = 0; p && i < p->n_signals; i++)
		n += p->signals[i] == sig;
	return n;
}

static void ready(struct worker *w)
{
	struct notify_msg m = {.ready = true};

	pool_notify(&pool, w, &m, clock_ms);
}

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
	assert_int_equal(pool.replaced, 0);
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
	assert_int_equal(pool.replaced, 1);
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
	assert_int_equal(pool.spawn_errors, 1);
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
	assert_int_equal(pool.replaced, 0);
	/* the graceful deadline: KILL to whoever is left */
	clock_ms += 30000;
	pool_run_deadlines(&pool, clock_ms);
	assert_int_equal(signals_to(worker_in_slot(1, 1)->pid, SIGKILL), 1);
	assert_int_equal(pool.killed, 1);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
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
