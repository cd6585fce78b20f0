/* What the arbiter's workers started and left behind: every process descended from
 * the arbiter. A worker's children outlive it when they ignore its TERM or double-fork
 * away; as PID 1, or as a child subreaper otherwise, the arbiter adopts them (they
 * become its direct children), so the whole tree is below it and can be found and
 * stopped at exit. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

/* Whether the arbiter has any child at all, running or a zombie not yet reaped. Every
 * descendant has a child of ours as its ancestor (an orphan comes to us), so none
 * means nothing we started is left. */
bool descendants_any(void);

/* The parent pid of pid, from /proc/PID/stat, in *ret: 0, -ESRCH when pid is gone
 * (reaped, also between our open and read of the file), another -errno when the file
 * cannot be read or parsed. */
int descendants_parent(pid_t pid, pid_t *ret);

/* The state letter of /proc/PID/stat ('R' running or waiting for a CPU, 'S' asleep,
 * 'D' waiting on I/O, ...), or -errno as descendants_parent(). Never waits on the
 * process: this file takes no lock of its memory (cmdline and environ do). */
int descendants_state(pid_t pid);

/* Send sig to every descendant, parents before their children, each through a pidfd
 * opened once its parent is seen to be the one it was found under (so a pid reused
 * meanwhile is never signalled). The number signalled, or -errno when /proc cannot be
 * read as ours (not mounted, another PID namespace's). At most DESCENDANTS_MAX a call:
 * the caller calls again for the rest. */
#define DESCENDANTS_MAX 4096
int descendants_signal(int sig);
