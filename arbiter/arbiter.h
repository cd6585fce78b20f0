/* The arbiter: one struct that owns the loop, the signalfd, the deadline timer, the
 * listening sockets, the worker pool and the control socket, passed explicitly to
 * every function that acts on them.
 *
 * This is the wiring layer's header (doc/ARCHITECTURE.md): only main.c, arbiter.c,
 * setup.c, upgrade.c, reload.c, retire.c, arbiter_bpf.c, sync.c, prometheus.c and
 * status.c include it. Its functions call one way, in that order: a function of one
 * of those files is called only by the files before it (scripts/check-layers.py). The
 * modules below take only what they need and report upward through callbacks. */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "activation.h"
#include "autoscale.h"
#include "bpf.h"
#include "control.h"
#include "exitstatus.h"
#include "lifecycle.h"
#include "listener_set.h"
#include "sources.h"
#include "metrics.h"
#include "notify.h"
#include "options.h"
#include "pool.h"
#include "signals.h"
#include "spawn.h"
#include "upstate.h"
#include "version.h"

/* USR2: upgrade the binary in place, keeping the PID (so it works as PID 1).
 *
 *  1. Run the binary at the path we were started from (resolved at startup, so a file
 *     replaced on disk is what runs) with --check and our arguments; it must exit 0
 *     within --ready-timeout. Otherwise the upgrade is refused and nothing changes.
 *  2. Write our state (listening sockets, control and notify sockets, accepted control
 *     connections with what they have read and not yet sent, every live worker's
 *     pidfd, id, generation and state, counters, our settings) to a memfd, clear
 *     close-on-exec on the fds it names, and execve that binary in this process.
 *     Signals stay blocked across execve, so any that arrive meanwhile wait in the
 *     kernel for the new image's signalfd. If execve fails, we carry on as before.
 *  3. The new image finds SIGVISOR_UPGRADE_FD, adopts all of that (the workers become
 *     the old generation) and reloads exactly as on HUP: a new generation starts and
 *     the old one is retired worker by worker once the new one is ready.
 *
 * The --check is also a handshake: run with SIGVISOR_UPGRADE_CHECK (the addresses we
 * hold, which it must not try to bind), a sigvisor prints the upgrade-state format it
 * reads; anything else (a /bin/true) is refused. And the exec can be undone: every
 * image keeps its own executable open (an O_PATH fd of /proc/self/exe) and hands it
 * over as SIGVISOR_ROLLBACK_FD. A new image whose set-up fails (pidfile, binds,
 * control, metrics, probes, even its options) re-executes that fd with the same
 * state and SIGVISOR_UPGRADE_FAILED saying why; the previous image resumes with its
 * workers, sockets and settings as they were, without a reload, and without reading its
 * config file (upsettings.h): what broke the new image's start may have broken that. */
struct upgrade {
	struct source check; /* SOURCE_UPGRADE_CHECK: the --check child's pidfd */
	pid_t check_pid;
	uint64_t check_deadline_ms;
	bool exec_wanted;	    /* the check passed: exec once no reload is running */
	uint64_t drain_deadline_ms; /* exec by then even if metrics connections are open */
	bool pending;		    /* USR2 during a reload: start when it is over */
	unsigned long upgrades, refused;
	/* what the new image learns of the workers' notify sockets */
	bool have_notify;
	unsigned notify_cookie, notify_seq;
	/* the --metrics listener handed over, and the address it was opened for (-1: none) */
	int metrics_fd;
	char *metrics_spec;
	/* The --check's stdout (the handshake) and its exec errno, read ends; -1: none */
	int check_out, check_errno;
	/* Our own executable, O_PATH and close-on-exec except across our own exec. */
	int self_fd;
	/* The new image: the previous image's executable, to roll back to (-1: none). */
	int rollback_fd;
	/* The previous image, re-executed after a failed upgrade: why it failed. */
	bool rolled_back;
	char rollback_why[512];
	bool settings_kept;	 /* and took its settings from the state, not the config file */
	unsigned long rollbacks; /* upgrades undone after the exec */
	/* The probes' identity the --check said (bpf_probes_identity), 0: none. */
	uint64_t check_bpf;
	/* The new image: the probes' lines of the state (bpf_probes_handover), NULL: none;
	 * and where the "bpf " line is in the memfd (it is struck out once taken). */
	char *bpf_state;
	long bpf_state_off;
	/* The new image: the previous image's configured workers (0: it did not say), for
	 * the first reload to tell a changed configuration from a pool resized since. */
	unsigned config_workers;
	bool config_workers_pending;
	/* Every upgrade started is numbered (seq: the last one's), and how each ended is
	 * kept for `sigvisor upgrade`, across the exec and a rollback too (upstate.h). */
	uint64_t seq;
	struct upstate_outcomes outcomes;
};

/* What a reload replaces, kept until the new generation has taken over (or restored
 * if it never gets ready). */
struct reload_saved {
	struct settings *settings;
	struct spawn_template tmpl;
	struct listener_set listeners;
	unsigned generation;
	unsigned target;
	unsigned trial_target; /* the new generation's size as the reload started it */
};

/* TTIN and TTOU counted by the probes (scale.c): with them on, the pool changes by the
 * number of signals processes sent, those the kernel merged included, rather than by
 * one per signalfd read. */
struct scale_count {
	bool counting;	      /* the probes count, consumed[] is their baseline */
	bool inherited;	      /* consumed[] came in an upgrade's state, for the probes kept */
	uint64_t consumed[2]; /* TTIN, TTOU: the probes' count (sent) when last looked at */
	uint64_t merged;      /* applied beyond one per signalfd read: merged by the kernel */
};

struct arbiter {
	struct settings *settings;
	int argc; /* kept for HUP, which re-reads everything */
	char **argv;
	bool reloading;
	bool reload_pending; /* a HUP came during a reload: one more follows it */
	/* Every reload started is numbered (the last one's), and how each ended is kept
	 * for `sigvisor reload` (upstate.h; handed over across a USR2). */
	uint64_t reload_seq;
	struct upstate_outcomes reload_outcomes;
	/* A HUP's config file, read by a child while the loop goes on (options.h). */
	struct config_read config_read;
	struct source config_src; /* SOURCE_CONFIG_READ: fd >= 0 while reading */
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
	struct listener_set listeners;	 /* what the current generation is given */
	struct pool pool;
	struct control control;
	struct spawn_template tmpl;
	struct bpf_probes *bpf;	   /* NULL when the probes are off */
	struct killable *killable; /* killable.h; NULL until the loop runs */
	/* The pool's ready_epoch (and whether running) the killable look was last told;
	 * 0: never (the pool's starts at 1). */
	uint64_t killable_epoch;
	bool killable_told_running;
	uint64_t killable_told_ms; /* when the workers were last told */
	struct source bpf_src;
	struct source log_src; /* SOURCE_LOG: fd >= 0 while registered */
	uint64_t log_retry_ms; /* lines wait and the loop cannot watch the log */
	char bpf_why[256];     /* why they are off */
	enum arbiter_phase phase;
	uint64_t phase_deadline_ms; /* end of --shutdown-delay */
	uint64_t drain_started_ms;  /* when the workers were told to stop */
	/* Once the workers are gone, what they started and left running (descendants.h):
	 * sent TERM, then KILL at the graceful deadline, again until none is left. */
	enum { LEFTOVERS_NONE, LEFTOVERS_TERMED, LEFTOVERS_KILLED } leftovers;
	uint64_t leftovers_at_ms;      /* the next KILL (0: none) */
	uint64_t leftovers_give_up_ms; /* exit even if some would not die */
	uint64_t bpf_load_at_ms;       /* --bpf auto: start loading by then (arbiter_bpf_setup) */
	/* `sigvisor stop [--quick]`: the loop begins it after the batch that asked. */
	enum { STOP_NONE, STOP_GRACEFUL, STOP_QUICK } stop_asked;
	int exit_status;
	bool done;
	pid_t pid;
	uint64_t started_ms;
	uint64_t signals_received[65];
	uint64_t signals_ignored[65];
	struct scale_count scale;
	struct autoscale autoscale; /* --max-workers (autoscale.h); off: never looks */
};

/* main()'s entry for "sigvisor [OPTIONS] [-- COMMAND]". */
int arbiter_main(int argc, char **argv);

/* arbiter.c: stop everything and exit with status (3, 4: a worker's verdict). */
void arbiter_fatal(struct arbiter *a, int status);
/* arbiter.c: the pool of a->settings' size on a->loop, reporting to a. */
void arbiter_init_pool(struct arbiter *a);

/* setup.c: what arbiter_main does before the loop runs. 0: run the loop; 1: done, exit
 * with *ret_status (--check); < 0: failed, err says why and *ret_status is the exit
 * status. arbiter_teardown undoes what it did, also half-way. */
int arbiter_setup(struct arbiter *a, char *err, size_t errlen, int *ret_status);
void arbiter_teardown(struct arbiter *a);

/* arbiter_bpf.c: the probes (bpf.h) as the arbiter runs them. */
/* At set-up, after the fork for --daemon: on loads them now, auto starts the loader
 * process (loading by a->bpf_load_at_ms). < 0 with err: --bpf on and they cannot. */
int arbiter_bpf_setup(struct arbiter *a, char *err, size_t errlen);
/* --bpf auto: a->bpf_load_at_ms came, start loading. */
void arbiter_bpf_load(struct arbiter *a);
/* The first generation is ready: --bpf auto loads soon (a short grace for its first
 * connections). */
void arbiter_bpf_first_ready(struct arbiter *a);
/* The loader's socket is readable: log its lines; once it has answered, adopt what it
 * loaded, or go without the probes. */
void arbiter_bpf_loaded(struct arbiter *a);
/* A shutdown began: a loader still running is killed, not waited for. */
void arbiter_bpf_shutdown(struct arbiter *a);
/* Around a USR2 exec: the probes are detached and unpinned before it (the new image
 * loads its own), and loaded again if the exec fails. */
void arbiter_bpf_stop(struct arbiter *a);
void arbiter_bpf_start(struct arbiter *a);
/* What arbiter_bpf_handover did with the probes. */
enum probes_handover {
	PROBES_NOT_HANDED_OVER, /* none, or not the new binary's: stop them as before */
	PROBES_HANDED_OVER,	/* in the state: bpf_probes_handover_undo() if the exec fails */
};
/* Before a USR2's exec to a binary whose probes are identity (0: unknown): hand them
 * over in the state f. */
enum probes_handover arbiter_bpf_handover(struct arbiter *a, FILE *f, uint64_t identity);

/* sync.c: what the pool needs of the settings and the mode, again after each change of
 * either (settings, reloading, phase). */
void arbiter_sync_pool(struct arbiter *a);
/* Before a log_open(): the loop must not watch an fd that is about to be closed. */
void arbiter_unwatch_log(struct arbiter *a);

/* reload.c. A HUP first reads the config file off the loop (reload_on_config when its
 * reader sends, reload_config_timeout at its deadline), then starts the generation.
 * Busy: reading the file or replacing a generation (a HUP or USR2 then waits). */
void reload_start(struct arbiter *a);
void reload_on_config(struct arbiter *a);
void reload_config_timeout(struct arbiter *a, uint64_t now);
bool reload_busy(const struct arbiter *a);
void reload_check(struct arbiter *a);
void reload_abort(struct arbiter *a, const char *why);
void reload_discard(struct arbiter *a);

/* reload.c: `sigvisor reload` from peer (control.h's reload): the number of the reload
 * that will carry it (started now, or the one queued after the current one), or -1
 * with why refused. */
int64_t reload_request(struct arbiter *a, const struct control_peer *peer, char *why,
		       size_t whylen);

/* scale.c: a TTIN or TTOU read from the signalfd, whose action by the mode table is act:
 * the action to carry out, and in *ret_n by how many workers (1 with the probes off; with
 * them on, what they counted since the last look, which may be 0: counted by an earlier
 * read). A terminal's signal that processes' signals merged into scales too. */
enum arbiter_action arbiter_scale_signal(struct arbiter *a, int sig, int32_t si_code,
					 enum arbiter_action act, const struct action_context *ctx,
					 uint64_t *ret_n);
/* ... and carry it out: the pool's target by n up (TTIN) or down (TTOU), within 1 and
 * SETTINGS_MAX_WORKERS. */
void arbiter_scale_apply(struct arbiter *a, int sig, uint64_t n);
/* scale.c: `sigvisor workers N|+K|-K` from peer: the new target, or -1 with why
 * refused (control.h's set_workers). */
int arbiter_set_workers(struct arbiter *a, const struct control_peer *peer,
			const struct control_workers *req, char *why, size_t whylen);

/* commands.c: the control socket's commands that act (control.h's view): `sigvisor
 * reopen` (and USR1, whose work it is: peer and ans NULL), `stop`, `kill-worker`; and
 * `config`'s answer. 0 with the outcome in ans, or -1 with why refused, -2 with why it
 * failed (control.h). */
int arbiter_reopen_logs(struct arbiter *a, const struct control_peer *peer, char *ans,
			size_t anslen);
int arbiter_stop(struct arbiter *a, const struct control_peer *peer, bool quick, char *ans,
		 size_t anslen);
int arbiter_kill_worker(struct arbiter *a, const struct control_peer *peer,
			const struct control_kill *req, char *ans, size_t anslen);
int arbiter_render_config(struct arbiter *a, bool json, char **ret_buf, size_t *ret_len);
/* What the signal table (signals.h) needs to know of the arbiter's mode now. */
struct action_context arbiter_action_context(const struct arbiter *a);

/* status.c */
/* The status text or JSON appended to out (a membuf from membuf_take): 0 or -ENOMEM. */
int arbiter_render_status(struct arbiter *a, bool json, struct membuf *out);
/* prometheus.c: the --metrics page */
void arbiter_render_prometheus(struct arbiter *a, FILE *f);
/* Serving: running, with at least one ready worker (status "ready", /readyz 200). */
bool arbiter_is_ready(const struct arbiter *a);
/* The control signals status and metrics list, in this order. */
#define ARBITER_N_SHOWN 10
extern const int arbiter_shown_signals[ARBITER_N_SHOWN];

/* upgrade.c */
/* USR2 */
void upgrade_start(struct arbiter *a);
/* `sigvisor upgrade` from peer (control.h's upgrade): the number of the upgrade started
 * (or to start once the reload in progress is over), or -1 with why refused. */
int64_t upgrade_request(struct arbiter *a, const struct control_peer *peer, char *why,
			size_t whylen);
/* The --check child exited (its pidfd is readable), or SIGCHLD named its pid. */
void upgrade_check_done(struct arbiter *a);
/* The check's deadline passed. */
void upgrade_check_timeout(struct arbiter *a, uint64_t now);
/* After each loop iteration: exec if the check passed and nothing is in the way. */
void upgrade_maybe_exec(struct arbiter *a);

/* At start-up, before the options are read: open our own executable, and take what
 * an upgrade (or its rollback) handed over: the state memfd in a->upgrade_fd (-1:
 * none), the previous image's executable. Unsets the variables so workers do not
 * inherit them. */
void upgrade_inherit(struct arbiter *a);
/* Rolled back (a->upgrade.rolled_back): the settings this image had before the exec, from
 * the state (settings_load: s is initialized either way; -ENOENT when the state holds
 * none). */
int upgrade_settings(struct arbiter *a, struct settings *s, char *err, size_t errlen);
/* The new image could not start (why): re-execute the previous image with the state
 * handed over. Returns only if there is nothing to roll back to or the exec failed. */
void upgrade_rollback(struct arbiter *a, const char *why);
/* The new image started: it no longer needs the previous image's executable. */
void upgrade_commit(struct arbiter *a);
/* --check run by an upgrade: is spec one of the addresses the running arbiter holds? */
bool upgrade_check_holds(const char *spec);
/* Is this --check run by an upgrade? */
bool upgrade_checking(void);
/* --check run by an upgrade: say which state format we read (the handshake). */
void upgrade_check_handshake(void);
/* Adopt listeners, control and notify sockets (before setup opens its own). */
int upgrade_adopt_sockets(struct arbiter *a, int fd, char *err, size_t errlen);
/* Adopt the workers and counters (the caller then starts the new generation, or
 * after a rollback resumes). */
int upgrade_adopt_workers(struct arbiter *a, int fd);
/* The probes' lines of the state were taken (kept or let go): strike them out, so that a
 * rollback does not hand their fds on. */
void upgrade_bpf_taken(struct arbiter *a);

/* The absolute path we were started from, found at startup. */
int upgrade_resolve_self(const char *argv0, char **ret_path);

/* retire.c */
/* Retiring listening sockets without resetting what the kernel has queued.
 *
 * The last close of a listening socket resets every connection in its accept queue,
 * connections whose handshake the kernel completed. Draining the queue and then
 * closing leaves a window in which new ones arrive and are reset. So a socket's
 * retirement has three steps, in this order: freeze it (listener_freeze: no new
 * connection enters the queue), stop the workers that serve it (each accepts what
 * is queued before closing its copy), and close the arbiter's copy. A connection
 * that arrives after the freeze is refused, which clients retry. */

/* A shutdown (TERM, INT, QUIT, a fatal error): freeze every listening socket the
 * arbiter holds and close its copies. Call before the workers are told to stop. */
void retire_all_listeners(struct arbiter *a);
/* At start: whether a TCP listener can be frozen here (a socket filter); if not, say
 * once what it costs and what to grant, and say nothing more at each stop. */
void retire_check_freeze(struct arbiter *a, bool quiet);

/* A reload (a HUP, or the one a USR2 upgrade starts): freeze the sockets only the old
 * generation serves: the addresses the new configuration dropped (closed when the old
 * generation is gone, or thawed by a rollback) and the sockets an upgrade handed over
 * that the new image no longer binds (closed at once). Call before the last active
 * worker of the old generation gets TERM, and whenever none is left. */
void retire_old_listeners(struct arbiter *a);

/* A failed reload, before its generation is stopped: freeze the sockets only that
 * generation serves (the addresses it added). */
void retire_new_listeners(struct arbiter *a);

/* After a rollback: the restored sockets retire_old_listeners froze take connections
 * again (a unix one is bound anew, so listen_fds is refreshed). */
void retire_thaw_listeners(struct arbiter *a);
