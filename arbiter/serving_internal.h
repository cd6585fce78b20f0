/* What serving.c (the watching, the look children's lifecycle) and serving_scan.c (the
 * look at /proc itself, and the child that makes it) share. Private to the two. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "sources.h"
#include "serving.h"

#define MAX_SOCKS    64	 /* listening sockets compared */
#define SCAN_PROCS   16	 /* processes of one worker's tree looked at */
#define SCAN_FDS     256 /* fds of one process */
#define SCAN_THREADS 64	 /* threads of one process */
#define SCAN_POLLFDS 64	 /* entries of a poll set, bits of a select set: 1024 */
#define POLLIN_	     0x001
#define LOOK_PIDS    32 /* workers one look child looks at */
#define LOOK_TRIES   3	/* looks at a worker that may time out before it is given up */

struct looker;

struct watch {
	pid_t pid;
	bool bpf;	      /* watched by the probe (one bpf_probes_serving_watch) */
	bool no_proc;	      /* LOOK_TRIES looks at it did not finish: not looked at again */
	unsigned timeouts;    /* looks at it that did not finish; from 1 on it has looks alone */
	struct looker *look;  /* the look under way that looks at it, NULL: none */
	uint64_t started_ms;  /* for the cadence */
	uint64_t scan_ms;     /* next look at /proc */
	uint64_t fallback_ms; /* not seen by then: reported with how NULL */
};

/* What a look child writes for each worker, in the order it was given them. */
struct look_record {
	int32_t pid;
	int32_t r; /* serving_scan()'s */
	char how[160];
};

/* A look child: its pid, its pidfd in the loop, the pipe it writes records to. */
struct looker {
	struct source src;    /* SOURCE_SERVING_LOOK, its pidfd; first, for serving_on_look */
	pid_t pid;	      /* 0: a free slot */
	int out;	      /* the pipe's read end (non-blocking), -1 once read to the end */
	uint64_t deadline_ms; /* 0 once killed */
	bool alone;	      /* looks at one worker whose earlier look timed out */
	pid_t pids[LOOK_PIDS];
	size_t n_pids, n_done; /* given; records read */
};

struct serving {
	struct serving_hooks hooks;
	struct loop *loop;
	struct bpf_probes *bpf;
	/* The looks: at most one at the workers due (not alone), and one for each worker
	 * whose earlier look timed out, so that it holds up no other; then killed ones
	 * the kernel has not let go yet. */
	struct looker lookers[SERVING_LOOKS];
	uint64_t looks_killed;
	bool said_full; /* every slot taken by a stuck look, said once */
	uint64_t inodes[MAX_SOCKS];
	size_t n_inodes;
	struct watch *w;
	size_t n, cap;
	char said[160]; /* the method last logged */
};

/* In a child forked for the look: one serving_scan() per pid, a look_record each
 * written to out as soon as it is known, then _exit. */
_Noreturn void serving_look_child(const struct serving *s, const pid_t *pids, size_t n, int out,
				  pid_t parent);
