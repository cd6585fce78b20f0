/* Signal intake and the signal -> action table; see signals.h. */
#include "signals.h"

#include "sigreset.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Faults the kernel raises synchronously on the faulting thread: blocking them
 * would turn a crash into a hang (or a kill without a core), so they stay default. */
static const int sync_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT};

static bool from_process(int32_t si_code)
{
	return si_code <= 0; /* SI_USER 0, SI_QUEUE -1, SI_TKILL -6, ...; SI_KERNEL is 0x80 */
}

static bool shutting_down(enum arbiter_phase p)
{
	return p != PHASE_RUNNING;
}

enum arbiter_action signal_action(int sig, int32_t si_code, const struct action_context *ctx,
				  const char **why)
{
	*why = NULL;
	switch (sig) {
	case SIGCHLD:
		return ACTION_REAP;
	case SIGTERM:
		if (ctx->phase == PHASE_RUNNING)
			return ACTION_SHUTDOWN_GRACEFUL;
		*why = "a shutdown is already in progress";
		return ACTION_IGNORE;
	case SIGINT:
	case SIGQUIT:
		/* Escalates a graceful shutdown (or its delay) to a quick one. */
		if (ctx->phase != PHASE_QUITTING)
			return ACTION_SHUTDOWN_QUICK;
		*why = "a quick shutdown is already in progress";
		return ACTION_IGNORE;
	case SIGTTIN:
	case SIGTTOU:
		if (!from_process(si_code)) {
			*why = "sent by the terminal, not by a process";
			return ACTION_IGNORE;
		}
		if (shutting_down(ctx->phase)) {
			*why = "a shutdown is in progress";
			return ACTION_IGNORE;
		}
		return sig == SIGTTIN ? ACTION_SCALE_UP : ACTION_SCALE_DOWN;
	case SIGUSR1:
		return ACTION_REOPEN_LOGS;
	case SIGWINCH:
		if (!ctx->daemon) {
			*why = "WINCH stops workers only with --daemon (a terminal resize "
			       "otherwise)";
			return ACTION_IGNORE;
		}
		if (shutting_down(ctx->phase)) {
			*why = "a shutdown is in progress";
			return ACTION_IGNORE;
		}
		return ACTION_STOP_WORKERS;
	case SIGHUP:
		if (!ctx->reload_supported) {
			*why = "reload on HUP is not supported yet";
			return ACTION_IGNORE;
		}
		if (shutting_down(ctx->phase)) {
			*why = "a shutdown is in progress";
			return ACTION_IGNORE;
		}
		return ACTION_RELOAD;
	case SIGUSR2:
		if (!ctx->upgrade_supported) {
			*why = "binary upgrade on USR2 is not supported yet";
			return ACTION_IGNORE;
		}
		if (shutting_down(ctx->phase)) {
			*why = "a shutdown is in progress";
			return ACTION_IGNORE;
		}
		return ACTION_UPGRADE;
	case SIGPIPE:
		*why = "a peer closed a socket we were writing to";
		return ACTION_IGNORE;
	default:
		*why = "not a control signal";
		return ACTION_IGNORE;
	}
}

const char *action_name(enum arbiter_action a)
{
	static const char *const names[] = {
		[ACTION_IGNORE] = "ignore",
		[ACTION_REAP] = "reap",
		[ACTION_SHUTDOWN_GRACEFUL] = "graceful shutdown",
		[ACTION_SHUTDOWN_QUICK] = "quick shutdown",
		[ACTION_SCALE_UP] = "scale up",
		[ACTION_SCALE_DOWN] = "scale down",
		[ACTION_REOPEN_LOGS] = "reopen logs",
		[ACTION_STOP_WORKERS] = "stop workers",
		[ACTION_RELOAD] = "reload",
		[ACTION_UPGRADE] = "upgrade",
	};
	return names[a];
}

int signals_block_all(sigset_t *ret_mask)
{
	sigset_t mask;

	sigfillset(&mask);
	for (size_t i = 0; i < sizeof(sync_signals) / sizeof(sync_signals[0]); i++)
		sigdelset(&mask, sync_signals[i]);
	if (sigprocmask(SIG_SETMASK, &mask, NULL) < 0)
		return -errno;
	/* Blocked first, then reset: nothing can be delivered to a stale disposition in
	 * between. */
	reset_signal_dispositions();
	/* PIPE is ignored, not read: a write to a closed stderr (the log pipe of a
	 * container runtime that went away) raises it synchronously, and logging the
	 * signal it raised would raise the next one. The signalfd hands out the lowest
	 * pending signal first, so that endless PIPE would also starve TERM (15) and
	 * every signal above it. Setting SIG_IGN discards one already pending. */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		return -errno;
	sigdelset(&mask, SIGPIPE);
	if (sigprocmask(SIG_SETMASK, &mask, NULL) < 0)
		return -errno;
	*ret_mask = mask;
	return 0;
}

int signals_open_fd(const sigset_t *mask)
{
	int fd = signalfd(-1, mask, SFD_NONBLOCK | SFD_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

void signal_describe_sender(const struct signalfd_siginfo *si, char *buf, size_t len)
{
	char path[64], comm[32] = "";
	ssize_t n;
	int fd;

	if (!from_process(si->ssi_code)) {
		snprintf(buf, len, "the kernel");
		return;
	}
	if (si->ssi_pid == 0) {
		/* The sender is in an ancestor PID namespace: the container runtime, a
		 * kubelet, or kill(1) on the host. */
		snprintf(buf, len, "pid 0 (outside our PID namespace) uid %u", si->ssi_uid);
		return;
	}
	snprintf(path, sizeof(path), "/proc/%u/comm", si->ssi_pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, comm, sizeof(comm) - 1);
		close(fd);
		comm[n > 0 ? n : 0] = '\0';
		comm[strcspn(comm, "\n")] = '\0';
	}
	if (comm[0])
		snprintf(buf, len, "pid %u (%s) uid %u", si->ssi_pid, comm, si->ssi_uid);
	else
		snprintf(buf, len, "pid %u uid %u", si->ssi_pid, si->ssi_uid);
}
