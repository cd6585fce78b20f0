/* The log's non-blocking mode (shared/log.c) on a real pipe whose reader stalls: the
 * writer never waits, the queue keeps whole lines, drops the oldest when full, counts
 * them, and says how many once the reader reads again. stderr is the pipe, as for an
 * arbiter started by a container runtime. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

static int reader = -1, saved_stderr = -1;

/* stderr becomes the write end of a one-page pipe that is already full. */
static void stall_stderr(void)
{
	int p[2], fl;
	char junk[64];

	assert_int_equal(pipe(p), 0);
	assert_true(fcntl(p[1], F_SETPIPE_SZ, 4096) >= 4096);
	memset(junk, '#', sizeof(junk) - 1);
	junk[sizeof(junk) - 1] = '\n';
	fl = fcntl(p[1], F_GETFL);
	assert_int_equal(fcntl(p[1], F_SETFL, fl | O_NONBLOCK), 0);
	while (write(p[1], junk, sizeof(junk)) > 0) {
	}
	assert_int_equal(fcntl(p[1], F_SETFL, fl), 0); /* given blocking, as a runtime does */
	saved_stderr = dup(STDERR_FILENO); /* cmocka reports there: given back at the end */
	assert_int_equal(dup2(p[1], STDERR_FILENO), STDERR_FILENO);
	close(p[1]);
	reader = p[0];
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Everything the pipe holds, then what the log writes once there is room. */
static char *read_all(size_t *ret_len)
{
	size_t size = 1 << 20, len = 0;
	char *buf = malloc(size);
	ssize_t n;

	assert_non_null(buf);
	assert_int_equal(fcntl(reader, F_SETFL, O_NONBLOCK), 0);
	for (int rounds = 0; rounds < 1000; rounds++) {
		while ((n = read(reader, buf + len, size - 1 - len)) > 0)
			len += (size_t)n;
		log_flush();
		if (!log_pending())
			break;
	}
	while ((n = read(reader, buf + len, size - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	*ret_len = len;
	return buf;
}

static void test_a_stalled_reader_never_blocks_the_writer(void **state)
{
	double t;
	size_t len, lines = 0;
	char *text, *line, *save;
	uint64_t dropped;

	(void)state;
	stall_stderr();
	log_setup("sigvisor", LOG_FORMAT_TEXT, LOG_LEVEL_INFO);
	log_nonblocking();
	t = now_s();
	for (int i = 0; i < 5000; i++)
		log_info("line %d of a log nobody reads for now", i);
	assert_true(now_s() - t < 2.0); /* a blocking write would hang here for good */
	assert_true(log_pending() > 0 && log_pending() <= 64 * 1024);
	dropped = log_dropped();
	assert_true(dropped > 0 && dropped < 5000);

	text = read_all(&len);
	assert_int_equal(log_pending(), 0);
	/* Once the queue is out, a line says what was lost, after the newest line kept. */
	assert_non_null(strstr(text, "warn: the log did not take"));
	assert_true(strstr(text, "did not take") > strstr(text, "of a log nobody reads"));
	assert_non_null(strstr(text, "line 4999 of")); /* the oldest go, not the newest */
	/* Whole lines only: the junk, then ours (the newest kept), then the notice. */
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '#' || strstr(line, "did not take"))
			continue;
		assert_non_null(strstr(line, " sigvisor["));
		assert_non_null(strstr(line, " of a log nobody reads for now"));
		lines++;
	}
	assert_int_equal(lines + dropped, 5000);
	free(text);

	/* Nothing more to say: the next line comes alone. */
	log_info("after");
	text = read_all(&len);
	assert_null(strstr(text, "did not take"));
	assert_non_null(strstr(text, "info: after\n"));
	assert_int_equal(log_dropped(), dropped);
	free(text);
	assert_int_equal(dup2(saved_stderr, STDERR_FILENO), STDERR_FILENO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_stalled_reader_never_blocks_the_writer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
