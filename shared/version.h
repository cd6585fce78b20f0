/* The version, the git revision and the compiled-in features, for --version, the
 * status output and the sigvisor_build_info metric. The revision and the feature
 * list come from the build (mk/install.mk passes them for version.c alone), so a
 * new commit recompiles one file. */
#pragma once

/* The one place the version number is set. arbiter.h may define it too while code
 * moves over: an identical redefinition is allowed, a different one is an error. */
#define SIGVISOR_VERSION "0.1.0"

/* "sigvisor 0.1.0 (git abc1234) features: +epoll +io_uring +bpf" */
const char *sigvisor_version_string(void);

/* "abc1234", "abc1234-dirty", or "unknown" outside a git checkout. */
const char *sigvisor_git_revision(void);

/* "+epoll +io_uring +bpf" (a feature that was not built in shows as "-bpf"). */
const char *sigvisor_features(void);
