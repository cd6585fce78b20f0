/* Version string; see version.h. Built with -DSIGVISOR_GIT_REV and -DSIGVISOR_FEATURES
 * by mk/install.mk; a build without them (an IDE, a one-off cc) still links, and
 * says "unknown" rather than guessing. */
#include "version.h"

#ifndef SIGVISOR_GIT_REV
#define SIGVISOR_GIT_REV "unknown"
#endif
#ifndef SIGVISOR_FEATURES
#define SIGVISOR_FEATURES "+epoll"
#endif

const char *sigvisor_version_string(void)
{
	/* Everything is known at compile time: one constant, nothing to free. */
	return "sigvisor " SIGVISOR_VERSION " (git " SIGVISOR_GIT_REV
	       ") features: " SIGVISOR_FEATURES;
}

const char *sigvisor_git_revision(void)
{
	return SIGVISOR_GIT_REV;
}

const char *sigvisor_features(void)
{
	return SIGVISOR_FEATURES;
}
