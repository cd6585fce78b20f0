// SPDX-License-Identifier: MIT
/*
 * sigbench.c - the load, signal-storm, scale and PID-1 half of the benchmark
 * (scripts/bench/hup.sh, storm.sh, pid1.sh; probe.c does the idle and
 * single-signal timings of run.sh).
 *
 * This file is the command line; the rest of the program is the
 * sigbench_*.c files listed in sigbench.h.
 *
 *   sigbench hup     --pid P --workers W [--timeout S] [--signals USR2
 *                    [--usr2-mode inplace|gunicorn --ready LIST]]
 *        one HUP (or USR2) to arbiter P; times it -> every worker it had
 *        before is reaped, and -> W workers of the new generation are up;
 *        records how each old worker ended (proc connector). gunicorn's USR2
 *        is followed by TERM to the old master once the new one is ready
 *   sigbench load    --port N [--conns C] [--seconds D] [--bucket-ms B]
 *                    [--pid P [--hup-at T1,T2,...] [--usr2-at T]
 *                    [--usr2-mode inplace|gunicorn] [--workers W --ready LIST]]
 *        a small HTTP/1.1 load client (one thread, epoll, keep-alive when the
 *        server allows it) that counts completed requests per bucket, and
 *        sends HUP / USR2 to P at the given times (seconds after the start),
 *        noting when the workers P had before each are all reaped
 *   sigbench storm   --pid P --signals TTIN[,USR1,TTOU...] --rounds N
 *                    [--gap-us G] [--cpu C] [--quiet-ms Q] [--timeout S]
 *        kill() in a loop (G microseconds between signals, 0: a tight loop),
 *        then watch the arbiter's children until nothing has changed for Q ms:
 *        forks, exits and how each worker ended (proc connector)
 *   sigbench scale   --pid P --from B --to T --ready LIST [--timeout S]
 *                    [--cpu C --probe-cpu C2]
 *        TTIN one step at a time from B to T workers, then TTOU back to B;
 *        time per step (the steps nearest T, a tenth of them, separately as
 *        *_top), and the arbiter's open fds before, at T, and after
 *   sigbench orphans --seconds D --mark DIR
 *        run under an init: make orphans as fast as possible for D seconds,
 *        then wait for TERM (and report who got it) - see pid1.sh
 *   sigbench pid1    --parent U --mark DIR [--timeout S]
 *        watch the init that unshare U started: zombies while the orphan
 *        maker runs, when it stops and 1 s later; then TERM the init and time
 *        its exit
 *
 * Samples go to stdout as "name value..." lines (times in microseconds unless
 * the name says otherwise), progress and failures to stderr. Every wait has a
 * deadline; a missed one is a failure (exit status 1), never a hang. Signals
 * go only to the pid given on the command line, or to processes this program
 * started.
 */
#define _GNU_SOURCE
#include "sigbench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- command line ----------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr,
		"usage: sigbench hup     --pid P --workers W [--timeout S] [--signals USR2\n"
		"                        [--usr2-mode inplace|gunicorn --ready LIST]]\n"
		"       sigbench load    --port N [--conns C] [--seconds D] [--bucket-ms B]\n"
		"                        [--pid P [--hup-at T1,T2,...] [--usr2-at T]\n"
		"                        [--usr2-mode inplace|gunicorn] [--workers W --ready "
		"LIST]]\n"
		"       sigbench storm   --pid P --signals LIST --rounds N [--gap-us G] [--cpu C]\n"
		"                        [--quiet-ms Q] [--timeout S]\n"
		"       sigbench scale   --pid P --from B --to T --ready LIST [--timeout S]\n"
		"                        [--cpu C --probe-cpu C2]\n"
		"       sigbench orphans --seconds D --mark DIR\n"
		"       sigbench pid1    --parent U --mark DIR [--timeout S]\n");
}

static int add_ready(void *o, const char *name)
{
	return ready_add(&((struct opts *)o)->ready, name);
}

static int add_sig(void *ctx, const char *name)
{
	struct opts *o = ctx;
	int s = sig_number(name);

	if (s < 0 || o->nsigs == MAX_SIGS)
		return -1;
	o->sigs[o->nsigs++] = s;
	return 0;
}

static int add_hup(void *ctx, const char *at)
{
	struct opts *o = ctx;

	if (o->nhups == MAX_HUPS)
		return -1;
	o->hup_at[o->nhups++] = atof(at);
	return 0;
}

/* The whole list in the message: which item was wrong is plain from it. */
static int parse_list(void *o, const char *list, int (*one)(void *, const char *))
{
	int r = benchopt_each(list, one, o);

	if (r == -1)
		say("unknown name, or too many, in '%s'", list);
	return r;
}

static int parse_ready(void *o, const char *list)
{
	return parse_list(o, list, add_ready);
}

static int parse_signals(void *o, const char *list)
{
	return parse_list(o, list, add_sig);
}

static int parse_hups(void *o, const char *list)
{
	return parse_list(o, list, add_hup);
}

static int parse_usr2_mode(void *gunicorn, const char *mode)
{
	if (strcmp(mode, "gunicorn") != 0 && strcmp(mode, "inplace") != 0) {
		usage();
		return -1;
	}
	*(bool *)gunicorn = strcmp(mode, "gunicorn") == 0;
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = {.workers = 4,
			 .conns = 64,
			 .rounds = 1,
			 .cpu = -1,
			 .probe_cpu = -1,
			 .seconds = 3,
			 .timeout = 10,
			 .bucket_ms = 100,
			 .quiet_ms = 1000};
	const struct benchopt opts[] = {
		{"pid", BO_PID, &o.pid, NULL},
		{"parent", BO_PID, &o.pid, NULL},
		{"port", BO_INT, &o.port, NULL},
		{"workers", BO_INT, &o.workers, NULL},
		{"conns", BO_INT, &o.conns, NULL},
		{"seconds", BO_DOUBLE, &o.seconds, NULL},
		{"bucket-ms", BO_INT, &o.bucket_ms, NULL},
		{"hup-at", BO_FUNC, &o, parse_hups},
		{"signals", BO_FUNC, &o, parse_signals},
		{"rounds", BO_INT, &o.rounds, NULL},
		{"gap-us", BO_LONG, &o.gap_us, NULL},
		{"quiet-ms", BO_INT, &o.quiet_ms, NULL},
		{"from", BO_INT, &o.from, NULL},
		{"to", BO_INT, &o.to, NULL},
		{"ready", BO_FUNC, &o, parse_ready},
		{"cpu", BO_INT, &o.cpu, NULL},
		{"probe-cpu", BO_INT, &o.probe_cpu, NULL},
		{"timeout", BO_DOUBLE, &o.timeout, NULL},
		{"mark", BO_STRING, &o.mark, NULL},
		{"usr2-at", BO_DOUBLE, &o.usr2_at, NULL},
		{"usr2-mode", BO_FUNC, &o.usr2_gunicorn, parse_usr2_mode},
		{0},
	};
	const char *cmd = benchopt_cmd(&argc, &argv, usage);
	int r;

	if (!cmd)
		return 2;
	r = benchopt_parse(argc, argv, opts, usage);
	if (r)
		return r;
	if (o.timeout <= 0 || o.seconds <= 0) {
		usage();
		return 2;
	}
	if (strcmp(cmd, "hup") == 0 && o.pid > 0 && o.workers > 0)
		return cmd_hup(&o);
	if (strcmp(cmd, "load") == 0 && o.port > 0 && o.conns > 0 && o.bucket_ms > 0 &&
	    ((o.nhups == 0 && o.usr2_at <= 0) || o.pid > 0))
		return cmd_load(&o);
	if (strcmp(cmd, "storm") == 0 && o.pid > 0 && o.nsigs > 0 && o.rounds > 0)
		return cmd_storm(&o);
	if (strcmp(cmd, "scale") == 0 && o.pid > 0 && o.from > 0 && o.to > o.from && o.ready.n)
		return cmd_scale(&o);
	if (strcmp(cmd, "orphans") == 0 && o.mark)
		return cmd_orphans(&o);
	if (strcmp(cmd, "pid1") == 0 && o.pid > 0 && o.mark)
		return cmd_pid1(&o);
	usage();
	return 2;
}
