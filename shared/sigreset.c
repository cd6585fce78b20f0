/* See sigreset.h. */
#include "sigreset.h"

#include <signal.h>
#include <stdbool.h>

#include "rawsys.h"

/* The kernel's struct sigaction (not glibc's): handler, flags, restorer, mask. */
struct kernel_sigaction {
	void (*handler)(int);
	unsigned long flags;
	void (*restorer)(void);
	unsigned long mask;
};

static bool resettable(int sig)
{
	return sig != SIGKILL && sig != SIGSTOP;
}

unsigned long long signal_dispositions_set(void)
{
	unsigned long long set = 0;

	for (int sig = 1; sig < NSIG; sig++) {
		struct kernel_sigaction old = {.handler = SIG_DFL};

		/* One the kernel would not tell counts as set: resetting it costs little. */
		if (resettable(sig) &&
		    (raw_syscall(SYS_rt_sigaction, sig, NULL, &old, sizeof(old.mask)) < 0 ||
		     old.handler != SIG_DFL))
			set |= SIGRESET_BIT(sig);
	}
	return set;
}

void reset_signal_dispositions_in(unsigned long long set)
{
	struct kernel_sigaction dfl = {.handler = SIG_DFL};

	for (int sig = 1; sig < NSIG; sig++)
		if (resettable(sig) && (set & SIGRESET_BIT(sig)))
			(void)raw_syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(dfl.mask));
}

void reset_signal_dispositions(void)
{
	reset_signal_dispositions_in(~0ULL);
}
