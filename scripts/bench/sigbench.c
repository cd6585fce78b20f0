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

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- command line ----------------------------------------------------------- */

static int parse_list(struct opts *o, const char *list, char kind)
{
	char *copy = strdup(list), *save = NULL;

	if (!copy)
		return -1;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (kind == 'r') {
			long nr = syscall_by_name(t);

			if (nr < 0 || o->nready == MAX_READY)
				goto bad;
			o->ready[o->nready++] = nr;
		} else if (kind == 's') {
			int s = sig_number(t);

			if (s < 0 || o->nsigs == MAX_SIGS)
				goto bad;
			o->sigs[o->nsigs++] = s;
		} else {
			if (o->nhups == MAX_HUPS)
				goto bad;
			o->hup_at[o->nhups++] = atof(t);
		}
	}
	free(copy);
	return 0;
bad:
	say("unknown name, or too many, in '%s'", list);
	free(copy);
	return -1;
}

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

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"pid", required_argument, NULL, 'p'},
		{"parent", required_argument, NULL, 'p'},
		{"port", required_argument, NULL, 'P'},
		{"workers", required_argument, NULL, 'w'},
		{"conns", required_argument, NULL, 'c'},
		{"seconds", required_argument, NULL, 'd'},
		{"bucket-ms", required_argument, NULL, 'b'},
		{"hup-at", required_argument, NULL, 'h'},
		{"signals", required_argument, NULL, 's'},
		{"rounds", required_argument, NULL, 'n'},
		{"gap-us", required_argument, NULL, 'g'},
		{"quiet-ms", required_argument, NULL, 'q'},
		{"from", required_argument, NULL, 'f'},
		{"to", required_argument, NULL, 'T'},
		{"ready", required_argument, NULL, 'r'},
		{"cpu", required_argument, NULL, 'C'},
		{"probe-cpu", required_argument, NULL, 'O'},
		{"timeout", required_argument, NULL, 't'},
		{"mark", required_argument, NULL, 'm'},
		{"usr2-at", required_argument, NULL, 'u'},
		{"usr2-mode", required_argument, NULL, 'M'},
		{0},
	};
	struct opts o = {.workers = 4,
			 .conns = 64,
			 .rounds = 1,
			 .cpu = -1,
			 .probe_cpu = -1,
			 .seconds = 3,
			 .timeout = 10,
			 .bucket_ms = 100,
			 .quiet_ms = 1000};
	const char *cmd;
	int c;

	if (argc < 2) {
		usage();
		return 2;
	}
	cmd = argv[1];
	argv++, argc--;
	while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			o.pid = (pid_t)atoi(optarg);
			break;
		case 'P':
			o.port = atoi(optarg);
			break;
		case 'w':
			o.workers = atoi(optarg);
			break;
		case 'c':
			o.conns = atoi(optarg);
			break;
		case 'd':
			o.seconds = atof(optarg);
			break;
		case 'b':
			o.bucket_ms = atoi(optarg);
			break;
		case 'n':
			o.rounds = atoi(optarg);
			break;
		case 'g':
			o.gap_us = atol(optarg);
			break;
		case 'q':
			o.quiet_ms = atoi(optarg);
			break;
		case 'f':
			o.from = atoi(optarg);
			break;
		case 'T':
			o.to = atoi(optarg);
			break;
		case 'C':
			o.cpu = atoi(optarg);
			break;
		case 'O':
			o.probe_cpu = atoi(optarg);
			break;
		case 't':
			o.timeout = atof(optarg);
			break;
		case 'm':
			o.mark = optarg;
			break;
		case 'u':
			o.usr2_at = atof(optarg);
			break;
		case 'M':
			if (strcmp(optarg, "gunicorn") != 0 && strcmp(optarg, "inplace") != 0) {
				usage();
				return 2;
			}
			o.usr2_gunicorn = strcmp(optarg, "gunicorn") == 0;
			break;
		case 'h':
		case 's':
		case 'r':
			if (parse_list(&o, optarg, (char)c) < 0)
				return 2;
			break;
		default:
			usage();
			return 2;
		}
	}
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
	if (strcmp(cmd, "scale") == 0 && o.pid > 0 && o.from > 0 && o.to > o.from && o.nready)
		return cmd_scale(&o);
	if (strcmp(cmd, "orphans") == 0 && o.mark)
		return cmd_orphans(&o);
	if (strcmp(cmd, "pid1") == 0 && o.pid > 0 && o.mark)
		return cmd_pid1(&o);
	usage();
	return 2;
}
