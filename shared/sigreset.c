/* See sigreset.h. */
#include "sigreset.h"

#include <signal.h>

#include "rawsys.h"

/* The kernel's struct sigaction (not glibc's): handler, flags, restorer, mask. */
struct kernel_sigaction {
	void (*handler)(int);
	unsigned long flags;
	void (*restorer)(void);
	unsigned long mask;
};

void reset_signal_dispositions(void)
{
	struct kernel_sigaction dfl = {.handler = SIG_DFL};

	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			(void)raw_syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(dfl.mask));
}
