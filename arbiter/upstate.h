/* The numbers an upgrade hands over to the new image (and a rollback back to the old
 * one): the pool's and the upgrades' counters, the original start, the signals counted.
 * One line per value, each named ("counter spawned 12"), so an image that knows a
 * name another does not skips it, and one that misses a name keeps 0: adding a counter
 * never shifts the others. Version 1's positional "counters" line is still read.
 *
 * Low layer: plain data in and out of a FILE; upgrade.c fills and applies it. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* The state format this image writes, and the oldest it reads. The --check handshake
 * names both ("sigvisor-upgrade-state 1 2"): an image of version 1 reads the first
 * number, and the state it writes is one this image still reads. */
#define UPSTATE_VERSION	    2
#define UPSTATE_OLDEST_READ 1

#define UPSTATE_SIGNALS 65

/* The pool's counters: kept by the pool as they are here (pool.h), so that they cross an
 * exec as one value, not a dozen copied by hand each way. */
struct upstate_pool_counters {
	uint64_t spawned, spawn_errors, exited, exited_clean, exited_error, exited_signal,
		exited_retired, killed, replaced, boot_failures_total, orphans_reaped, reloads,
		reload_failures;
};

struct upstate_numbers {
	uint64_t started_ms; /* the first image's start: an upgrade keeps it */
	struct upstate_pool_counters pool;
	uint64_t upgrades, upgrade_refused, upgrade_rollbacks;
	/* Not a counter: the configuration's workers (--workers, the config file), which
	 * the pool's target may differ from (TTIN/TTOU, `sigvisor workers`). */
	uint64_t config_workers;
	/* Not counters either: the last reload's and upgrade's number (the control
	 * socket's `sigvisor reload` and `upgrade` wait for theirs), kept so that numbers
	 * never repeat across an exec. */
	uint64_t reload_seq, upgrade_seq;
	/* TTIN and TTOU counted by the probes (arbiter.h: struct scale_count): how many of
	 * each the image applied, valid when scale_counted is 1 and the probes are kept. */
	uint64_t scale_counted, ttin_consumed, ttou_consumed, scale_merged;
	uint64_t signals_received[UPSTATE_SIGNALS];
	uint64_t signals_ignored[UPSTATE_SIGNALS];
};

/* How a reload or an upgrade ended, for `sigvisor reload` / `sigvisor upgrade` (the
 * client asked for number id and waits until its outcome shows in `status`). The last
 * UPSTATE_OUTCOMES of each are kept, in the arbiter and across an exec, so that a
 * client that looks a moment late still finds its own among newer ones. */
#define UPSTATE_OUTCOMES       8
#define UPSTATE_OUTCOME_REASON 512

struct upstate_outcome {
	uint64_t id;
	uint64_t generation; /* a reload: the generation serving after it */
	uint64_t reload;     /* an upgrade: the reload the new image started (0: none) */
	char result[24];     /* a word: ok, config-error, failed, abandoned, ... */
	char reason[UPSTATE_OUTCOME_REASON]; /* why, one line ("" for ok) */
};

struct upstate_outcomes {
	struct upstate_outcome o[UPSTATE_OUTCOMES]; /* oldest first */
	unsigned n;
};

/* Add one (the oldest goes when full); reason may be NULL. Control characters in
 * the reason become '?': it is one line of the state and of a terminal. */
void upstate_outcome_push(struct upstate_outcomes *h, uint64_t id, const char *result,
			  const char *reason, uint64_t generation, uint64_t reload);
/* The one numbered id, or NULL. */
const struct upstate_outcome *upstate_outcome_find(const struct upstate_outcomes *h, uint64_t id);
/* Across an exec: each as an "outcome KIND ..." line (kind "reload" or "upgrade"), and
 * back from such a line into the history of its kind (true if it was one, whether or
 * not it parsed). */
int upstate_outcomes_write(FILE *f, const char *kind, const struct upstate_outcomes *h);
bool upstate_outcome_read_line(const char *line, const char *kind, struct upstate_outcomes *h);

/* The first line of every state, with the version that wrote it. */
#define UPSTATE_MAGIC "sigvisor-upgrade"

/* One kind of line of the state, named by its first word: each module reads its own
 * (the pool its workers, the control socket its connections, the probes theirs). */
struct upstate_part {
	const char *key;
	/* The whole line, without its newline, and where it starts in the state. */
	void (*take)(void *ctx, const char *line, long off);
	void *ctx;
};

/* The one reader of the state: reads f line by line (a line may be of any length)
 * and hands each to the part its first word names; a line no part names (a newer
 * image's, or one another pass reads) is skipped. Returns the version on the magic
 * line, -EINVAL if there is none this image reads, or -ENOMEM. */
int upstate_parse(FILE *f, const struct upstate_part *parts, size_t n);

/* The parts of the numbers below, each line taken into *n. */
#define UPSTATE_NUMBERS_PARTS(n)                                                                   \
	{"started", upstate_numbers_take, (n)}, {"counter", upstate_numbers_take, (n)},            \
		{"counters", upstate_numbers_take, (n)}, {"rollbacks", upstate_numbers_take, (n)}, \
	{                                                                                          \
		"signal", upstate_numbers_take, (n)                                                \
	}
void upstate_numbers_take(void *numbers, const char *line, long off);
/* The parts of both outcome histories ("outcome reload ..." and "outcome upgrade ..."). */
struct upstate_histories {
	struct upstate_outcomes *reload, *upgrade;
};
void upstate_outcomes_take(void *histories, const char *line, long off);

/* Write every value as its own named line. Returns 0 or -EIO. */
int upstate_write(FILE *f, const struct upstate_numbers *n);
/* Take one line of the state (no newline) into n if it is one of these numbers (of
 * version 1 or 2); false if it is some other line. */
bool upstate_read_line(const char *line, struct upstate_numbers *n);
