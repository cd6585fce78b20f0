/* Where a process's signal dispositions came from, for `sigvisor signals`: who set each
 * handler, ignore or reset, and when relative to the process's fork, from two maps the
 * probes pin (shared/sigvisor_bpf.h): `sigsets`, the last rt_sigaction of each
 * (process, signal), and `forks`, each process's fork time, parent and last exec.
 *
 * "USR2 handler inherited from pid 800 (set 312 ms before fork), reset to default by
 * this process 2.1 ms after fork" is the diagnosis of gunicorn's preload bug: the
 * handler an application sets at import lives in the leader only.
 *
 * What the maps keep is the last call, not the history: a parent that changed a
 * disposition again after the fork makes what it passed on unknown, and says so. A
 * process forked before the probes were loaded has a fork time (its start time) but no
 * calls before then. Everything here runs in the command's own process. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sigvisor_bpf.h"

/* The maps, read whole once (each at most a few thousand entries). */
struct provenance;

/* One entry of each map, as read. */
struct pv_fork {
	uint32_t tgid;
	struct sv_fork f;
};

struct pv_set {
	struct sv_sigset_key k;
	struct sv_sigset v;
};

/* Read the pinned maps `forks` and `sigsets` in dir: NULL with why ("cannot open
 * DIR/forks: Permission denied"). */
struct provenance *provenance_read(const char *dir, char *why, size_t whylen);
/* The same from arrays (copied): for the unit test. */
struct provenance *provenance_from(const struct pv_fork *forks, size_t n_forks,
				   const struct pv_set *sets, size_t n_sets);
void provenance_free(struct provenance *pv);

/* A disposition's story. Kinds are enum sv_handler's (sig_dfl, sig_ign, caught);
 * times in ns, relative to the process's fork. */
struct prov_answer {
	bool inherited;	       /* from pid inh_pid, set inh_before_ns before the fork */
	bool inh_unknown;      /* inh_pid set it again inh_after_ns after the fork */
	int inh_kind;	       /* what it set */
	pid_t inh_pid;	       /* as the arbiter sees it (its namespace) */
	int64_t inh_before_ns; /* for inh_unknown: how long after the fork, negated */
	pid_t exec_pid;	       /* an exec that reset the inherited handler (0: none) */
	bool own;	       /* set by the process itself, own_after_ns after its fork */
	int own_kind;
	int64_t own_after_ns;
	bool own_exec; /* then reset by its own exec, own_exec_after_ns after the fork */
	int64_t own_exec_after_ns;
	char text[320]; /* the sentence, without the signal's name */
};

/* The story of sig in process pid (its pid in the arbiter's namespace): 0, or -ENOENT
 * when the maps know nothing of it. */
int provenance_of(const struct provenance *pv, pid_t pid, int sig, struct prov_answer *ret);

/* "312 ms", "2.1 ms", "1.4 s": a duration as the sentences write it. */
void provenance_duration(int64_t ns, char *buf, size_t len);
