/* SPDX-License-Identifier: MIT */
/*
 * sigbench.h - what the files of sigbench share (see sigbench.c for the
 * subcommands): the parsed command line (read by benchopt.h), pid lists and /proc readers, the
 * proc connector watch and signal names, all in sigbench_proc.c; and the
 * subcommands, one family per file:
 *
 *   sigbench.c         the command line and main()
 *   sigbench_proc.c    pid lists, /proc, the proc connector, signal names
 *   sigbench_reload.c  hup and load: a reload signal timed, alone or under load
 *   sigbench_pool.c    storm and scale: signals that resize the pool
 *   sigbench_pid1.c    orphans and pid1: an init reaping and stopping
 */
#ifndef SIGVISOR_SIGBENCH_H
#define SIGVISOR_SIGBENCH_H

#define BENCH_PROG "sigbench"
#include "benchutil.h"
#include "benchopt.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define MAX_SIGS 16
#define MAX_HUPS 16

struct opts {
	pid_t pid;
	int port;
	int workers;
	int conns;
	int rounds;
	int from, to;
	int cpu, probe_cpu;
	double seconds;
	double timeout;
	int bucket_ms;
	int quiet_ms;
	long gap_us;
	const char *mark;
	int nsigs;
	int sigs[MAX_SIGS];
	int nhups;
	double hup_at[MAX_HUPS];
	double usr2_at;
	bool usr2_gunicorn;
	struct ready_list ready;
};

struct pids {
	int n, cap;
	pid_t *v;
};

struct exitrec {
	pid_t pid;
	int status; /* wait status, -1 while running */
};

struct procwatch {
	int fd;
	pid_t parent;
	int nrec, cap;
	struct exitrec *rec;
	int forks, exits;
	long lost;
	int64_t last_event;
};

const char *sig_name(int sig);
int sig_number(const char *name);

void pids_add(struct pids *p, pid_t pid);
int pids_find(const struct pids *p, pid_t pid);
void pids_copy(struct pids *dst, const struct pids *src);
/* Sorted lists, for membership in O(log n): a pool of 4,096 is looked at per poll. */
void pids_sort(struct pids *p);
bool pids_has_sorted(const struct pids *p, pid_t pid);
void pids_insert_sorted(struct pids *p, pid_t pid);
int open_children(pid_t pid);
int read_children(int fd, struct pids *out);
int read_children_stable(int fd, struct pids *out);
bool pid_ready(const struct opts *o, pid_t pid);
int count_fds(pid_t pid);

void pw_track(struct procwatch *w, pid_t pid);
int pw_open(struct procwatch *w, pid_t parent);
int pw_drain(struct procwatch *w);
void pw_report(const struct procwatch *w, const char *prefix, const struct pids *only);

int cmd_hup(const struct opts *o);
int cmd_load(const struct opts *o);
int cmd_storm(const struct opts *o);
int cmd_scale(const struct opts *o);
int cmd_orphans(const struct opts *o);
int cmd_pid1(const struct opts *o);

#endif
