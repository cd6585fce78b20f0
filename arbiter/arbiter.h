/* The arbiter: one struct that owns the loop, the signalfd, the deadline timer, the
 * listening sockets, the worker pool and the control socket, passed explicitly to
 * every function that acts on them. */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "activation.h"
#include "bpf.h"
#include "control.h"
#include "lifecycle.h"
#include "listeners.h"
#include "loop.h"
#include "metrics.h"
#include "notify.h"
#include "options.h"
#include "signals.h"
#include "upgrade.h"
#include "version.h"

/* Exit statuses (DESIGN.md). */
#define EXIT_OK		 0
#define EXIT_FATAL	 1
#define EXIT_USAGE	 2
#define EXIT_WORKER_BOOT 3
#define EXIT_WORKER_APP	 4

/* Boot failures: a worker that exits unasked within BOOT_WINDOW_MS of its start (or
 * before READY=1) failed to boot. BOOT_FAILURE_LIMIT of them in a row, each within
 * BOOT_FAILURE_RESET_MS of the previous, make the arbiter give up with status 3.
 * Between them the respawn waits 100 ms, doubling up to BACKOFF_MAX_MS. */
#define BOOT_WINDOW_MS	      1000
#define BOOT_FAILURE_LIMIT    5
#define BOOT_FAILURE_RESET_MS 30000
#define BACKOFF_FIRST_MS      100
#define BACKOFF_MAX_MS	      5000

struct worker {
	struct source src; /* SOURCE_WORKER; fd is the pidfd */
	unsigned id;
	pid_t pid;
	unsigned generation;
	enum worker_state state;
	uint64_t started_ms;
	uint64_t deadline_ms;	  /* 0: none */
	int stop_signal;	  /* the last stop signal sent, for the log */
	bool watchdog;		  /* it sent WATCHDOG=1: --timeout applies to it */
	bool notify;		  /* ready on READY=1 (else once started) */
	bool watchdog_probe;	  /* ready, --timeout on, no WATCHDOG=1 seen yet: find out */
	uint64_t last_ping_ms;	  /* arrival of its last WATCHDOG=1 */
	struct source notify_src; /* SOURCE_NOTIFY: its own NOTIFY_SOCKET; fd -1 if none */
	bool notify_watched;
	/* Watched a little after READY=1 too: sd_notify_barrier() (systemd-notify --ready)
	 * sends BARRIER=1 with an fd right after it and waits for that fd to be closed. */
	uint64_t notify_linger_ms;
	char notify_env[128]; /* "NOTIFY_SOCKET=" and a sun_path */
	char status[128];     /* its last STATUS= */
};

#define worker_of_notify(s) ((struct worker *)((char *)(s)-offsetof(struct worker, notify_src)))

struct pool {
	struct worker **workers;
	size_t n, cap;
	unsigned target;
	unsigned generation;	 /* the current one: new workers get it */
	unsigned max_generation; /* never reused, even after a failed reload */
	unsigned boot_failures;
	uint64_t last_boot_failure_ms;
	unsigned spawn_failures;
	uint64_t respawn_at_ms;	    /* 0: spawn as soon as needed */
	uint64_t watchdog_sweep_ms; /* read pings of workers in watchdog_probe (0: none) */
	bool garbage;		    /* some workers are EXITED and wait to be freed */
	/* counters for status */
	uint64_t spawned, spawn_errors, exited, exited_clean, exited_error, exited_signal, killed,
		replaced, boot_failures_total, orphans_reaped, reloads, reload_failures;
};

/* Everything a spawn needs that is computed once at startup. */
struct spawn_template {
	const char *path;
	char **argv;
	char **base_env; /* environ minus what we set ourselves */
	size_t n_base_env;
	char *log_file_abs;
	bool drop_privileges;
	uid_t uid;
	gid_t gid;
};

/* What a reload replaces, kept until the new generation has taken over (or restored
 * if it never gets ready). */
struct reload_saved {
	struct settings *settings;
	struct spawn_template tmpl;
	struct listener listeners[MAX_BINDS];
	int listen_fds[MAX_BINDS];
	size_t n_listeners;
	char *listen_fdnames;
	unsigned generation;
	unsigned target;
};

struct arbiter {
	struct settings *settings;
	int argc; /* kept for HUP, which re-reads everything */
	char **argv;
	bool reloading;
	bool reload_pending; /* a HUP came during a reload: one more follows it */
	struct reload_saved old;
	struct notify notify;
	struct metrics metrics;
	struct upgrade upgrade;
	char *self_path; /* resolved at startup: what USR2 runs */
	int upgrade_fd;	 /* the state memfd when we are the new image of an upgrade */
	struct {
		int fd;
		char *spec;
	} adopted[MAX_BINDS]; /* listening sockets inherited through an upgrade */
	size_t n_adopted;
	struct activation activation; /* sockets systemd passed to us */
	bool announced_ready;	      /* READY=1 sent upstream for the first generation */
	struct loop loop;
	struct source sigfd;
	struct source timer;
	uint64_t timer_armed_ms; /* 0: disarmed */
	sigset_t sigmask;
	unsigned long long blocked_mask; /* our SigBlk as /proc shows it */
	struct listener listeners[MAX_BINDS];
	size_t n_listeners;
	int listen_fds[MAX_BINDS];
	char *listen_fdnames;
	struct pool pool;
	struct control control;
	struct spawn_template tmpl;
	struct bpf_probes *bpf; /* NULL when the probes are off */
	struct source bpf_src;
	char bpf_why[256]; /* why they are off */
	enum arbiter_phase phase;
	uint64_t phase_deadline_ms; /* end of --shutdown-delay */
	int exit_status;
	bool done;
	pid_t pid;
	uint64_t started_ms;
	uint64_t signals_received[65];
	uint64_t signals_ignored[65];
};

/* main()'s entry for "sigvisor [OPTIONS] [-- COMMAND]". */
int arbiter_main(int argc, char **argv);

/* arbiter.c: stop everything and exit with status (3, 4: a worker's verdict). */
void arbiter_fatal(struct arbiter *a, int status);
/* Around a USR2 exec: the probes are detached and unpinned before it (the new image
 * loads its own), and loaded again if the exec fails. */
void arbiter_bpf_stop(struct arbiter *a);
void arbiter_bpf_start(struct arbiter *a);

/* pool.c */
void pool_init(struct pool *p, unsigned target);
void pool_reconcile(struct arbiter *a);
void pool_worker_event(struct arbiter *a, struct worker *w, enum worker_event ev);
void pool_reap_worker(struct arbiter *a, struct worker *w);
void pool_reap_children(struct arbiter *a);
void pool_run_deadlines(struct arbiter *a, uint64_t now);
uint64_t pool_next_deadline(const struct arbiter *a);
void pool_stop_all(struct arbiter *a, enum worker_event ev);
void pool_signal_all(struct arbiter *a, int sig);
void pool_gc(struct pool *p);
int pool_adopt(struct pool *p, struct worker *w);
/* A notify datagram of worker w, parsed (m->status points into the datagram). */
void pool_notify(struct arbiter *a, struct worker *w, const struct notify_msg *m,
		 uint64_t arrived_ms);
bool worker_is_booting(const struct worker *w);
unsigned pool_count_gen(const struct pool *p, bool (*pred)(const struct worker *w), bool current);
void pool_free(struct pool *p, struct notify *n);
unsigned pool_count(const struct pool *p, bool (*pred)(const struct worker *w));
bool worker_is_active(const struct worker *w);
bool worker_is_alive(const struct worker *w);
bool worker_is_ready(const struct worker *w);
uint64_t backoff_ms(unsigned failures);

/* spawn.c */
int spawn_template_init(struct spawn_template *t, const struct settings *s, char *const *environ_,
			char *err, size_t errlen);
void spawn_template_free(struct spawn_template *t);
int spawn_worker(struct arbiter *a, unsigned id, char *notify_env, pid_t *ret_pid, int *ret_pidfd);
/* Find name like execvp would (a name with a '/' as is), as an absolute path. */
int path_resolve(const char *name, char **ret_path);
/* clone3(CLONE_PIDFD), or fork + pidfd_open where clone3 is ENOSYS. Like fork():
 * 0 in the child, the pid (and *ret_pidfd) in the parent, -1 with errno. */
pid_t spawn_process(int *ret_pidfd);

/* reload.c */
void reload_start(struct arbiter *a);
void reload_check(struct arbiter *a);
void reload_abort(struct arbiter *a, const char *why);
void reload_discard(struct arbiter *a);
int listeners_fdnames(struct arbiter *a);

/* status.c */
int arbiter_render_status(struct arbiter *a, bool json, char **ret_buf, size_t *ret_len);
/* Serving: running, with at least one ready worker (status "ready", /readyz 200). */
bool arbiter_is_ready(const struct arbiter *a);
/* The control signals status and metrics list, in this order. */
#define ARBITER_N_SHOWN 10
extern const int arbiter_shown_signals[ARBITER_N_SHOWN];
