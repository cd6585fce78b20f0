/* Unit tests for HUP (arbiter/reload.c) with no process started: a real arbiter struct,
 * its configuration read from a file as on HUP and its listeners bound (unix sockets
 * in a temporary directory), but the workers are fakes (fake_kernel.h): spawn_worker
 * is wrapped, so each test sees which generation was started with which sockets.
 *
 * wrap: spawn_worker pidfd_send_signal waitid clock_gettime notify_open_worker notify_close_worker
 */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_kernel.h"

#include "arbiter.h"
#include "serving.h"

extern char **environ;

/* What the arbiter asked for in each start. */
static struct {
	unsigned generation;
	size_t n_fds;
	char fdnames[64];
} started[MAX_PROCS];

int __wrap_spawn_worker(const struct spawn_request *rq, pid_t *ret_pid, int *ret_pidfd);
int __wrap_spawn_worker(const struct spawn_request *rq, pid_t *ret_pid, int *ret_pidfd)
{
	unsigned k = n_procs;
	pid_t pid = fake_spawn(ret_pidfd);

	if (pid < 0)
		return -errno;
	started[k].generation = rq->generation;
	started[k].n_fds = rq->n_listen_fds;
	snprintf(started[k].fdnames, sizeof(started[k].fdnames), "%s", rq->listen_fdnames);
	*ret_pid = pid;
	return 0;
}

static struct arbiter arb;
static char dir[64], conf[128];
static char *argv[] = {(char *)"sigvisor", (char *)"-c", conf, NULL};

static void write_conf(const char *text)
{
	FILE *f = fopen(conf, "w");

	assert_non_null(f);
	fprintf(f, "%s", text);
	assert_int_equal(fclose(f), 0);
}

static void conf_with(unsigned workers, const char *extra)
{
	char text[512];

	snprintf(text, sizeof(text), "bind = unix:%s/a.sock\nworkers = %u\nready-timeout = 5\n%s",
		 dir, workers, extra);
	write_conf(text);
}

/* The arbiter as arbiter_main leaves it before its loop, minus the loop's fds. */
static int setup(void **state)
{
	struct arbiter *a = &arb;
	char err[512];

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/sigvisor-test-reload-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(conf, sizeof(conf), "%s/sigvisor.conf", dir);
	conf_with(2, "");
	memset(a, 0, sizeof(*a));
	a->argc = 3;
	a->argv = argv;
	a->loop.backend = &fake_backend;
	a->notify.upstream.fd = -1;
	a->sigfd.fd = a->timer.fd = -1;
	a->control.listen.fd = a->control.reserve_fd = -1;
	a->metrics.listen.fd = -1;
	a->upgrade.check.fd = a->upgrade.metrics_fd = -1;
	a->config_src = (struct source){SOURCE_CONFIG_READ, -1};
	a->config_read.fd = -1;
	a->pid = getpid();
	a->settings = calloc(1, sizeof(*a->settings));
	assert_int_equal(options_load(a->settings, a->argc, a->argv, NULL, err, sizeof(err)), 0);
	assert_int_equal(spawn_template_init(&a->tmpl, a->settings, environ, err, sizeof(err)), 0);
	for (size_t i = 0; i < a->settings->n_binds; i++, a->listeners.n++)
		assert_int_equal(listener_open(&a->listeners.l[i], a->settings->binds[i],
					       a->settings->backlog, err, sizeof(err)),
				 0);
	assert_int_equal(listener_set_refresh(&a->listeners), 0);
	arbiter_init_pool(a);
	pool_reconcile(&a->pool);
	return 0;
}

static int teardown(void **state)
{
	struct arbiter *a = &arb;
	char cmd[128];

	(void)state;
	reload_discard(a);
	config_read_free(&a->config_read);
	listener_set_close(&a->listeners, NULL);
	pool_free(&a->pool);
	serving_free(a->pool.serving);
	spawn_template_free(&a->tmpl);
	settings_free(a->settings);
	free(a->settings);
	fake_reset();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static struct worker *worker_in_slot(unsigned id, unsigned generation)
{
	for (size_t i = 0; i < arb.pool.n; i++)
		if (arb.pool.workers[i]->id == id &&
		    arb.pool.workers[i]->generation == generation &&
		    worker_is_alive(arb.pool.workers[i]))
			return arb.pool.workers[i];
	return NULL;
}

static void ready(struct worker *w)
{
	struct notify_msg m = {.ready = true};

	assert_non_null(w);
	pool_notify(&arb.pool, w, &m, clock_ms);
}

/* The loop's part of a HUP: the child reading the config file sends, and the loop
 * takes it when it does (reload_on_config), never waiting in between. */
static void read_config_file(void)
{
	while (arb.config_src.fd >= 0) {
		struct pollfd p = {.fd = arb.config_src.fd, .events = POLLIN};

		assert_int_equal(poll(&p, 1, 5000), 1);
		reload_on_config(&arb);
	}
}

static void hup(void)
{
	reload_start(&arb);
	read_config_file();
}

/* One turn of the loop after an event, as arbiter.c's run() does. */
static void turn(void)
{
	pool_gc(&arb.pool);
	pool_reconcile(&arb.pool);
	reload_check(&arb);
}

static void exits(struct worker *w, int status)
{
	assert_non_null(w);
	fake_exit(w->pid, CLD_EXITED, status);
	pool_reap_worker(&arb.pool, w);
	turn();
}

static void serve_generation_1(void)
{
	ready(worker_in_slot(0, 1));
	ready(worker_in_slot(1, 1));
	turn();
	assert_int_equal(pool_count(&arb.pool, worker_is_ready), 2);
}

static void test_hup_hands_over_one_for_one(void **state)
{
	struct worker *old0, *old1;

	(void)state;
	serve_generation_1();
	old0 = worker_in_slot(0, 1);
	old1 = worker_in_slot(1, 1);
	conf_with(2, "graceful-timeout = 7\n");
	hup();
	assert_true(arb.reloading);
	assert_true(arb.pool.trial);
	assert_int_equal(arb.pool.generation, 2);
	assert_int_equal(arb.settings->graceful_timeout_ms, 7000);
	assert_int_equal(arb.pool.cfg.graceful_timeout_ms, 7000); /* the pool follows */
	assert_int_equal(n_procs, 4);
	assert_int_equal(started[2].generation, 2);
	assert_int_equal(started[2].n_fds, 1); /* the same socket, handed to both */
	assert_int_equal(signals_to(old0->pid, SIGTERM) + signals_to(old1->pid, SIGTERM), 0);

	ready(worker_in_slot(0, 2));
	turn();
	assert_int_equal(signals_to(old1->pid, SIGTERM), 1);
	assert_int_equal(signals_to(old0->pid, SIGTERM), 0);
	ready(worker_in_slot(1, 2));
	turn();
	assert_int_equal(signals_to(old0->pid, SIGTERM), 1);
	assert_int_equal(signals_to(old1->pid, SIGTERM), 1);
	/* complete once no old worker is active: the stopping ones drain on their own */
	assert_false(arb.reloading);
	exits(old1, 0);
	exits(old0, 0);
	assert_false(arb.pool.trial);
	assert_null(arb.old.settings);
	assert_int_equal(arb.pool.counters.reloads, 1);
	assert_int_equal(arb.pool.counters.reload_failures, 0);
	assert_int_equal(pool_count(&arb.pool, worker_is_ready), 2);
	assert_int_equal(arb.pool.counters.replaced, 0);
}

static void test_hup_with_a_bad_config_keeps_everything(void **state)
{
	struct settings *before = arb.settings;

	(void)state;
	serve_generation_1();
	write_conf("workers = many\n");
	hup();
	assert_false(arb.reloading);
	assert_ptr_equal(arb.settings, before);
	assert_int_equal(arb.pool.generation, 1);
	assert_int_equal(n_procs, 2);
	for (unsigned i = 0; i < n_procs; i++)
		assert_int_equal(procs[i].n_signals, 0);
}

static void test_new_generation_not_ready_rolls_back(void **state)
{
	struct settings *before = arb.settings;
	struct worker *new0, *new1, *new2;

	(void)state;
	serve_generation_1();
	conf_with(3, "");
	hup();
	assert_int_equal(arb.pool.target, 3);
	new0 = worker_in_slot(0, 2);
	new1 = worker_in_slot(1, 2);
	new2 = worker_in_slot(2, 2);
	ready(new0); /* one is ready, the others never are */
	turn();
	clock_ms += 5000;
	pool_run_deadlines(&arb.pool, clock_ms);
	turn();
	assert_false(arb.reloading);
	assert_ptr_equal(arb.settings, before);
	assert_int_equal(arb.pool.generation, 1);
	assert_int_equal(arb.pool.target, 2);
	assert_int_equal(arb.pool.counters.reload_failures, 1);
	/* the new generation is stopped, the old one serves on at full size */
	assert_int_equal(signals_to(new0->pid, SIGTERM), 1);
	assert_int_equal(signals_to(new1->pid, SIGTERM), 1);
	assert_int_equal(signals_to(new2->pid, SIGTERM), 1);
	assert_int_equal(pool_count_gen(&arb.pool, worker_is_ready, true), 2);
	assert_int_equal(signals_to(worker_in_slot(0, 1)->pid, SIGTERM), 0);
	assert_int_equal(signals_to(worker_in_slot(1, 1)->pid, SIGTERM), 0);
}

static void test_hup_during_a_reload_follows_it(void **state)
{
	(void)state;
	serve_generation_1();
	hup();
	arb.reload_pending = true; /* what a HUP now does (the mode table's RELOAD_LATER) */
	ready(worker_in_slot(0, 2));
	ready(worker_in_slot(1, 2));
	turn();
	exits(worker_in_slot(1, 1), 0);
	exits(worker_in_slot(0, 1), 0);
	/* the first reload completed and the pending one started at once: its file is
	 * being read */
	assert_true(reload_busy(&arb));
	read_config_file();
	assert_true(arb.reloading);
	assert_false(arb.reload_pending);
	assert_int_equal(arb.pool.generation, 3);
	assert_int_equal(arb.pool.counters.reloads, 2);
	assert_int_equal(pool_count_gen(&arb.pool, worker_is_booting, true), 2);
}

/* While the file is read, the loop goes on: nothing changed yet, a second HUP waits
 * for the first, and the reader's answer starts the generation. */
static void test_the_config_file_is_read_off_the_loop(void **state)
{
	(void)state;
	serve_generation_1();
	conf_with(3, "");
	reload_start(&arb);
	assert_true(reload_busy(&arb));
	assert_false(arb.reloading);
	assert_int_equal(arb.pool.generation, 1);
	assert_true(arb.config_read.pid > 0); /* a child reads it */
	reload_start(&arb);
	assert_true(arb.reload_pending);
	read_config_file();
	assert_true(arb.reloading);
	assert_int_equal(arb.pool.generation, 2);
	assert_int_equal(arb.pool.target, 3);
	assert_true(arb.reload_pending); /* after this reload */
}

/* A reader that has not answered by its deadline (stuck in a read from a stalled NFS
 * or FUSE server; here: not fed before the fake clock passes it) is given up, the
 * current configuration kept. */
static void test_a_config_read_past_its_deadline_keeps_everything(void **state)
{
	struct settings *before = arb.settings;

	(void)state;
	serve_generation_1();
	conf_with(3, "");
	reload_start(&arb);
	assert_true(reload_busy(&arb));
	clock_ms += CONFIG_READ_TIMEOUT_MS - 1;
	reload_config_timeout(&arb, clock_ms);
	assert_true(reload_busy(&arb));
	clock_ms += 1;
	reload_config_timeout(&arb, clock_ms);
	assert_false(reload_busy(&arb));
	assert_false(arb.reloading);
	assert_ptr_equal(arb.settings, before);
	assert_int_equal(arb.pool.generation, 1);
}

static void test_a_new_bind_goes_to_the_new_generation_only(void **state)
{
	char extra[128];

	(void)state;
	serve_generation_1();
	snprintf(extra, sizeof(extra), "bind = unix:%s/b.sock\n", dir);
	conf_with(2, extra);
	hup();
	assert_int_equal(started[0].n_fds, 1);
	assert_int_equal(started[2].generation, 2);
	assert_int_equal(started[2].n_fds, 2);
	assert_int_equal(arb.listeners.n, 2);
	assert_int_equal(arb.old.listeners.n, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_hup_hands_over_one_for_one, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hup_with_a_bad_config_keeps_everything, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_new_generation_not_ready_rolls_back, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_hup_during_a_reload_follows_it, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_the_config_file_is_read_off_the_loop, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_a_config_read_past_its_deadline_keeps_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_new_bind_goes_to_the_new_generation_only,
						setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
