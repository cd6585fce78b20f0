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

bool signal_from_process(int32_t si_code)
{
	return si_code <= 0; /* SI_USER 0, SI_QUEUE -1, SI_TKILL -6, ...; SI_KERNEL is 0x80 */
}

enum arbiter_mode arbiter_mode_of(const struct action_context *ctx)
{
	switch (ctx->phase) {
	case PHASE_DELAYING:
		return MODE_DELAYING;
	case PHASE_DRAINING:
		return MODE_DRAINING;
	case PHASE_QUITTING:
		return MODE_QUITTING;
	case PHASE_RUNNING:
		break;
	}
	if (ctx->reloading)
		return ctx->upgrading ? MODE_RELOADING_UPGRADING : MODE_RELOADING;
	return ctx->upgrading ? MODE_UPGRADING : MODE_RUNNING;
}

const char *arbiter_mode_name(enum arbiter_mode m)
{
	static const char *const names[] = {
		[MODE_RUNNING] = "running",	[MODE_RELOADING] = "reloading",
		[MODE_UPGRADING] = "upgrading", [MODE_RELOADING_UPGRADING] = "reloading+upgrading",
		[MODE_DELAYING] = "delaying",	[MODE_DRAINING] = "draining",
		[MODE_QUITTING] = "quitting",
	};

	return (unsigned)m < MODE_MAX ? names[m] : "?";
}

/* The control signals, in the table's column order. */
enum { COL_TERM, COL_QUICK, COL_TTIN, COL_TTOU, COL_USR1, COL_WINCH, COL_HUP, COL_USR2, N_COLS };

struct cell {
	enum arbiter_action action;
	const char *why; /* for ACTION_IGNORE */
};

#define IGN(why)                                                                                   \
	{                                                                                          \
		ACTION_IGNORE, why                                                                 \
	}
#define SHUTTING "a shutdown is in progress"

/* mode x signal -> action. Outside this table: TTIN/TTOU from the terminal and WINCH
 * without --daemon are ignored whatever the mode; CHLD always reaps. */
static const struct cell table[MODE_MAX][N_COLS] = {
	/* each row in the columns' order: TERM, INT/QUIT, TTIN, TTOU, USR1, WINCH, HUP, USR2 */
	[MODE_RUNNING] = {{ACTION_SHUTDOWN_GRACEFUL},
			  {ACTION_SHUTDOWN_QUICK},
			  {ACTION_SCALE_UP},
			  {ACTION_SCALE_DOWN},
			  {ACTION_REOPEN_LOGS},
			  {ACTION_STOP_WORKERS},
			  {ACTION_RELOAD},
			  {ACTION_UPGRADE}},
	[MODE_RELOADING] = {{ACTION_SHUTDOWN_GRACEFUL},
			    {ACTION_SHUTDOWN_QUICK},
			    {ACTION_SCALE_UP},
			    {ACTION_SCALE_DOWN},
			    {ACTION_REOPEN_LOGS},
			    {ACTION_STOP_WORKERS},
			    {ACTION_RELOAD_LATER},
			    {ACTION_UPGRADE_LATER}},
	[MODE_UPGRADING] = {{ACTION_SHUTDOWN_GRACEFUL},
			    {ACTION_SHUTDOWN_QUICK},
			    {ACTION_SCALE_UP},
			    {ACTION_SCALE_DOWN},
			    {ACTION_REOPEN_LOGS},
			    {ACTION_STOP_WORKERS},
			    /* the reload runs first, the exec waits for its end */
			    {ACTION_RELOAD},
			    IGN("an upgrade is already in progress")},
	[MODE_RELOADING_UPGRADING] = {{ACTION_SHUTDOWN_GRACEFUL},
				      {ACTION_SHUTDOWN_QUICK},
				      {ACTION_SCALE_UP},
				      {ACTION_SCALE_DOWN},
				      {ACTION_REOPEN_LOGS},
				      {ACTION_STOP_WORKERS},
				      {ACTION_RELOAD_LATER},
				      IGN("an upgrade is already in progress")},
	/* TERM during --shutdown-delay: the delay runs on; INT/QUIT cut it short */
	[MODE_DELAYING] = {IGN("a shutdown is already in progress"),
			   {ACTION_SHUTDOWN_QUICK},
			   IGN(SHUTTING),
			   IGN(SHUTTING),
			   {ACTION_REOPEN_LOGS},
			   IGN(SHUTTING),
			   IGN(SHUTTING),
			   IGN(SHUTTING)},
	[MODE_DRAINING] = {IGN("a shutdown is already in progress"),
			   {ACTION_SHUTDOWN_QUICK},
			   IGN(SHUTTING),
			   IGN(SHUTTING),
			   {ACTION_REOPEN_LOGS},
			   IGN(SHUTTING),
			   IGN(SHUTTING),
			   IGN(SHUTTING)},
	[MODE_QUITTING] = {IGN("a shutdown is already in progress"),
			   IGN("a quick shutdown is already in progress"),
			   IGN(SHUTTING),
			   IGN(SHUTTING),
			   {ACTION_REOPEN_LOGS},
			   IGN(SHUTTING),
			   IGN(SHUTTING),
			   IGN(SHUTTING)},
};

static int column(int sig)
{
	switch (sig) {
	case SIGTERM:
		return COL_TERM;
	case SIGINT:
	case SIGQUIT:
		return COL_QUICK;
	case SIGTTIN:
		return COL_TTIN;
	case SIGTTOU:
		return COL_TTOU;
	case SIGUSR1:
		return COL_USR1;
	case SIGWINCH:
		return COL_WINCH;
	case SIGHUP:
		return COL_HUP;
	case SIGUSR2:
		return COL_USR2;
	default:
		return -1;
	}
}

enum arbiter_action signal_action(int sig, int32_t si_code, const struct action_context *ctx,
				  const char **why)
{
	enum arbiter_mode mode = arbiter_mode_of(ctx);
	int col = column(sig);
	const struct cell *c;

	*why = NULL;
	if (sig == SIGCHLD)
		return ACTION_REAP;
	if (sig == SIGPIPE) {
		*why = "a peer closed a socket we were writing to";
		return ACTION_IGNORE;
	}
	if (col < 0) {
		*why = "not a control signal";
		return ACTION_IGNORE;
	}
	if ((sig == SIGTTIN || sig == SIGTTOU) && !signal_from_process(si_code)) {
		*why = "sent by the terminal, not by a process";
		return ACTION_IGNORE;
	}
	if (sig == SIGWINCH && !ctx->daemon) {
		*why = "WINCH stops workers only with --daemon (a terminal resize otherwise)";
		return ACTION_IGNORE;
	}
	c = &table[mode][col];
	*why = c->why;
	return c->action;
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
		[ACTION_RELOAD_LATER] = "reload after the one in progress",
		[ACTION_UPGRADE_LATER] = "upgrade after the reload in progress",
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

	if (!signal_from_process(si->ssi_code)) {
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
