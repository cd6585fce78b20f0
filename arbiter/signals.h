/* Signal intake: everything blocked, read from one signalfd; and the pure table that
 * turns a received signal into an arbiter action.
 *
 * There is no signal handler in the arbiter: a signal waits in the kernel's pending
 * set until the loop reads it, so none is lost between "arrived" and "acted on". The
 * kernel merges repeats of a pending standard signal (five TTIN may read as one); the
 * BPF probes count that merging, user space cannot see it. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/signalfd.h>

enum arbiter_action {
	ACTION_IGNORE,
	ACTION_REAP,
	ACTION_SHUTDOWN_GRACEFUL,
	ACTION_SHUTDOWN_QUICK,
	ACTION_SCALE_UP,
	ACTION_SCALE_DOWN,
	ACTION_REOPEN_LOGS,
	ACTION_STOP_WORKERS,
	ACTION_RELOAD,
	ACTION_UPGRADE,
	ACTION_RELOAD_LATER,  /* a reload runs: one more follows it */
	ACTION_UPGRADE_LATER, /* a reload runs: the upgrade starts when it is over */
	ACTION_MAX,
};

/* What phase the arbiter is in, as far as signal handling cares. */
enum arbiter_phase {
	PHASE_RUNNING,
	PHASE_DELAYING, /* TERM received, --shutdown-delay still running: serving, not ready */
	PHASE_DRAINING, /* graceful shutdown: workers got TERM */
	PHASE_QUITTING, /* quick shutdown: workers got QUIT */
};

/* The arbiter's mode: its phase, and whether a reload (a new generation on trial) or
 * an upgrade (a USR2's --check, or its exec waiting) is under way. The signal table
 * below is mode x signal -> action; doc/ARCHITECTURE.md shows it whole. */
enum arbiter_mode {
	MODE_RUNNING,
	MODE_RELOADING,
	MODE_UPGRADING,
	MODE_RELOADING_UPGRADING, /* a HUP during a USR2's --check: the exec follows it */
	MODE_DELAYING,
	MODE_DRAINING,
	MODE_QUITTING,
	MODE_MAX,
};

struct action_context {
	enum arbiter_phase phase;
	bool reloading;
	bool upgrading;
	bool daemon;
};

/* Decide what a signal means. si_code tells a process sender (SI_USER, SI_QUEUE,
 * SI_TKILL: all <= 0) from the kernel (the tty layer sends TTIN/TTOU with SI_KERNEL).
 * When the result is ACTION_IGNORE, *why says why (a static string) for the log. */
enum arbiter_action signal_action(int sig, int32_t si_code, const struct action_context *ctx,
				  const char **why);

const char *action_name(enum arbiter_action a);

/* Sent by a process (SI_USER, SI_QUEUE, SI_TKILL, ...: si_code <= 0), not by the kernel
 * (SI_KERNEL). The probes count TTIN/TTOU by the same test (bpf/sigvisor.bpf.c). */
bool signal_from_process(int32_t si_code);

enum arbiter_mode arbiter_mode_of(const struct action_context *ctx);
const char *arbiter_mode_name(enum arbiter_mode m);

/* Block every signal except the synchronous faults the kernel raises on this thread
 * (SEGV, BUS, FPE, ILL, TRAP, SYS, ABRT) and reset every disposition to SIG_DFL, so a
 * signal ignored by whoever started us (nohup ignores HUP) still reaches the loop.
 * PIPE alone is ignored instead (see signals.c). Fills *ret_mask with the blocked
 * set. First thing main() does. */
int signals_block_all(sigset_t *ret_mask);

/* signalfd(SFD_NONBLOCK | SFD_CLOEXEC) for mask; returns the fd or -errno. */
int signals_open_fd(const sigset_t *mask);

/* "pid 4242 (kubectl) uid 0", or "outside our PID namespace" when ssi_pid is 0 and
 * the signal came from user space; "the kernel" for SI_KERNEL. */
void signal_describe_sender(const struct signalfd_siginfo *si, char *buf, size_t len);
