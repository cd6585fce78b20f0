/* SPDX-License-Identifier: MIT */
/*
 * benchopt.h - the command line that probe.c and sigbench.c share:
 * "PROG SUBCOMMAND [--option VALUE]... [-- CMD...]", every option one row of
 * a table (its name, what it holds, where it goes), and the comma-separated
 * lists (--ready LIST of syscall names, read into a struct ready_list). Each
 * program keeps its own usage text, defaults and checks of what a subcommand
 * needs.
 *
 * Numbers are read with atoi/atof, as the programs always did: the bench
 * scripts are their only callers, and a subcommand refuses the values it
 * cannot use (a port of 0, a timeout <= 0). Options stop at the first word
 * that is not one (getopt's "+"), so a COMMAND's own options stay its own.
 * Included after benchutil.h; static inline, like it, so probe.c (one file)
 * and sigbench (several) both build with one cc line.
 */
#ifndef SIGVISOR_BENCHOPT_H
#define SIGVISOR_BENCHOPT_H

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* At most this many --ready syscalls. */
#define MAX_READY 16

enum benchopt_kind {
	BO_INT,	   /* int *: atoi */
	BO_PID,	   /* pid_t *: atoi */
	BO_LONG,   /* long *: atol */
	BO_DOUBLE, /* double *: atof */
	BO_STRING, /* const char **: the argument itself */
	BO_OFF,	   /* bool *: set false; takes no argument */
	BO_FUNC,   /* fn(dst, argument): < 0 ends the program with status 2 */
};

struct benchopt {
	const char *name; /* NULL ends the table */
	enum benchopt_kind kind;
	void *dst;
	/* BO_FUNC: it says what is wrong itself (a message, or the usage) */
	int (*fn)(void *dst, const char *arg);
};

/*
 * The subcommand, argv[1]; argv and argc then start from it, so that getopt's
 * messages name it (as they always did) and benchopt_parse() reads what
 * follows. NULL (after the usage) when there is none.
 */
static inline const char *benchopt_cmd(int *argc, char ***argv, void (*usage)(void))
{
	const char *cmd;

	if (*argc < 2) {
		usage();
		return NULL;
	}
	cmd = (*argv)[1];
	(*argv)++, (*argc)--;
	return cmd;
}

/*
 * The options after the subcommand, into the table's places; the first word
 * that is not an option (or the one after "--") is then argv[optind].
 * 0, or 2 (the exit status) after a message: an unknown option or one without
 * its value (getopt's message and the usage), or a BO_FUNC that refused.
 */
static inline int benchopt_parse(int argc, char **argv, const struct benchopt *opts,
				 void (*usage)(void))
{
	struct option longopts[64] = {{0}};
	size_t n = 0;
	int c;

	for (; opts[n].name; n++) {
		if (n + 1 >= sizeof(longopts) / sizeof(longopts[0]))
			abort(); /* a table this long is a mistake in the program */
		longopts[n].name = opts[n].name;
		longopts[n].has_arg = opts[n].kind == BO_OFF ? no_argument : required_argument;
		longopts[n].val = 256 + (int)n; /* never a character getopt returns itself */
	}
	while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
		const struct benchopt *d;

		if (c < 256 || c >= 256 + (int)n) {
			usage();
			return 2;
		}
		d = &opts[c - 256];
		switch (d->kind) {
		case BO_INT:
			*(int *)d->dst = atoi(optarg);
			break;
		case BO_PID:
			*(pid_t *)d->dst = (pid_t)atoi(optarg);
			break;
		case BO_LONG:
			*(long *)d->dst = atol(optarg);
			break;
		case BO_DOUBLE:
			*(double *)d->dst = atof(optarg);
			break;
		case BO_STRING:
			*(const char **)d->dst = optarg;
			break;
		case BO_OFF:
			*(bool *)d->dst = false;
			break;
		case BO_FUNC:
			if (d->fn(d->dst, optarg) < 0)
				return 2;
			break;
		}
	}
	return 0;
}

/*
 * Each comma-separated item of list to one(ctx, item), in order, until one
 * returns < 0: then -1 (one says why, or its caller does). -ENOMEM if the
 * list cannot be copied.
 */
static inline int benchopt_each(const char *list, int (*one)(void *ctx, const char *item),
				void *ctx)
{
	char *copy = strdup(list), *save = NULL;
	int r = 0;

	if (!copy)
		return -ENOMEM;
	for (char *t = strtok_r(copy, ",", &save); t && r == 0; t = strtok_r(NULL, ",", &save))
		if (one(ctx, t) < 0)
			r = -1;
	free(copy);
	return r;
}

/* The syscalls of --ready LIST: a worker blocked in one of them is waiting. */
struct ready_list {
	int n;
	long nr[MAX_READY];
};

/* One syscall name (benchutil.h's syscall_names) more; -1 if unknown or full. */
static inline int ready_add(struct ready_list *r, const char *name)
{
	long nr = syscall_by_name(name);

	if (nr < 0 || r->n == MAX_READY)
		return -1;
	r->nr[r->n++] = nr;
	return 0;
}

static inline bool ready_has(const struct ready_list *r, long nr)
{
	for (int i = 0; i < r->n; i++)
		if (r->nr[i] == nr)
			return true;
	return false;
}

#endif
