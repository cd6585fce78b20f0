/* Resetting every signal disposition to SIG_DFL, for the arbiter at startup and for a
 * worker between clone and exec. */
#pragma once

/* Async-signal-safe. Uses the raw rt_sigaction system call: glibc's sigaction()
 * refuses signals 32 and 33 (reserved for its threads), yet a parent may have left
 * them ignored, and an ignored disposition survives execve. */
void reset_signal_dispositions(void);
