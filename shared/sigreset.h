/* Resetting every signal disposition to SIG_DFL, for the arbiter at startup and for a
 * worker between clone and exec. */
#pragma once

/* Async-signal-safe. Uses the raw rt_sigaction system call: glibc's sigaction()
 * refuses signals 32 and 33 (reserved for its threads), yet a parent may have left
 * them ignored, and an ignored disposition survives execve. */
void reset_signal_dispositions(void);

/* Signal sig's bit in the sets below (signals 1 to 64). */
#define SIGRESET_BIT(sig) (1ULL << ((sig)-1))

/* The signals whose disposition is not SIG_DFL now (ignored, or a handler): all a
 * child of this process needs to reset. Asks the kernel once a signal. */
unsigned long long signal_dispositions_set(void);

/* reset_signal_dispositions() for the signals in set only. Async-signal-safe. */
void reset_signal_dispositions_in(unsigned long long set);
