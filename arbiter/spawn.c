/* Starting a worker (spawn.h); the clone itself is spawn_vm.c's. */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "heartbeat.h"
#include "log.h"
#include "postfork.h"
#include "sigreset.h"
#include "worker_image.h"

_Static_assert(POSTFORK_MAX_FDS >= MAX_BINDS + 1,
	       "a worker gets every listening socket and the heartbeat memfd");

/* Variables we set for each worker; an inherited copy would mislead it. */
static const char *const own_vars[] = {
	"LISTEN_FDS=",		"LISTEN_PID=",		"LISTEN_FDNAMES=",
	"NOTIFY_SOCKET=",	"WATCHDOG_USEC=",	"WATCHDOG_PID=",
	"SIGVISOR_WORKER_ID=",	"SIGVISOR_GENERATION=", "SIGVISOR_ARBITER_PID=",
	"SIGVISOR_LOG_FILE=",	"SIGVISOR_LOG_FORMAT=", "SIGVISOR_ARGS=",
	"SIGVISOR_UPGRADE_FD=", "SIGVISOR_ACTIVATED=",	SPAWN_NOFILE_ENV "=",
};

static bool is_own_var(const char *kv)
{
	for (size_t i = 0; i < sizeof(own_vars) / sizeof(own_vars[0]); i++)
		if (strncmp(kv, own_vars[i], strlen(own_vars[i])) == 0)
			return true;
	return false;
}

int path_resolve(const char *name, char **ret_path)
{
	const char *path_env = getenv("PATH");
	char buf[4096];

	if (strchr(name, '/')) {
		if (access(name, X_OK) < 0)
			return -errno;
		*ret_path = realpath(name, NULL);
		return *ret_path ? 0 : -errno;
	}
	if (!path_env || !*path_env)
		path_env = "/usr/local/bin:/usr/bin:/bin";
	for (const char *p = path_env; *p;) {
		size_t len = strcspn(p, ":");

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)len, len ? p : ".", name);
		if (access(buf, X_OK) == 0) {
			*ret_path = realpath(buf, NULL);
			return *ret_path ? 0 : -errno;
		}
		p += len;
		if (*p == ':')
			p++;
	}
	return -ENOENT;
}

/* Resolve COMMAND's program once, at startup: a missing command is a usage error the
 * operator should see before any worker starts. */
static int resolve_command(const char *name, char **ret_path, char *err, size_t errlen)
{
	int r = path_resolve(name, ret_path);

	if (r == -ENOENT && !strchr(name, '/'))
		snprintf(err, errlen, "worker command '%s' not found in PATH (%s)", name,
			 getenv("PATH") && *getenv("PATH") ? getenv("PATH")
							   : "/usr/local/bin:/usr/bin:/bin");
	else if (r < 0)
		snprintf(err, errlen, "worker command '%s': %s", name, strerror(-r));
	return r;
}

static int resolve_user(const struct settings *s, struct spawn_template *t, char *err,
			size_t errlen)
{
	if (!s->user && !s->group)
		return 0;
	t->uid = getuid();
	t->gid = getgid();
	if (s->user) {
		struct passwd *pw = getpwnam(s->user);

		if (!pw) {
			snprintf(err, errlen, "--user: no such user '%s'", s->user);
			return -EINVAL;
		}
		t->uid = pw->pw_uid;
		t->gid = pw->pw_gid;
	}
	if (s->group) {
		struct group *gr = getgrnam(s->group);

		if (!gr) {
			snprintf(err, errlen, "--group: no such group '%s'", s->group);
			return -EINVAL;
		}
		t->gid = gr->gr_gid;
	}
	if (geteuid() != 0) {
		snprintf(err, errlen, "--user/--group need sigvisor to run as root");
		return -EPERM;
	}
	t->drop_privileges = true;
	return 0;
}

int spawn_template_init(struct spawn_template *t, const struct settings *s, char *const *environ_,
			char *err, size_t errlen)
{
	static char builtin_path[] = "/proc/self/exe";
	size_t n = 0;
	int r;

	memset(t, 0, sizeof(*t));
	t->image_fd = -1;
	t->dispositions = signal_dispositions_set();
	if (s->command) {
		char *path;

		r = resolve_command(s->command[0], &path, err, errlen);
		if (r < 0)
			return r;
		t->path = path;
		t->argv = s->command;
	} else {
		/* The built-in worker is this binary run as "sigvisor worker": a fresh image
		 * with nothing of the arbiter's state, and /proc/self/exe still names the
		 * running binary after the file on disk is replaced. */
		static char arg0[] = "sigvisor", arg1[] = "worker";
		static char *argv[] = {arg0, arg1, NULL};

		t->path = builtin_path;
		t->argv = argv;
		t->builtin = true;
		t->image_fd = worker_image_fd();
	}
	r = resolve_user(s, t, err, errlen);
	if (r < 0)
		return r;
	if (s->log_file) {
		t->log_file_abs = realpath(s->log_file, NULL);
		if (!t->log_file_abs)
			t->log_file_abs = strdup(s->log_file);
	}
	while (environ_ && environ_[n])
		n++;
	t->base_env = calloc(n + 1, sizeof(char *));
	if (!t->base_env)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (!is_own_var(environ_[i]))
			t->base_env[t->n_base_env++] = environ_[i];
	return 0;
}

void spawn_template_free(struct spawn_template *t)
{
	if (t->path && strcmp(t->path, "/proc/self/exe") != 0)
		free((char *)t->path);
	free(t->log_file_abs);
	free(t->base_env);
	memset(t, 0, sizeof(*t));
}

int spawn_fd_high(int fd)
{
	int high;

	if (fd < 0 || fd >= SPAWN_FD_HIGH)
		return fd;
	high = fcntl(fd, F_DUPFD_CLOEXEC, SPAWN_FD_HIGH);
	if (high < 0)
		return fd;
	close(fd);
	return high;
}

int spawn_worker(const struct spawn_request *rq, pid_t *ret_pid, int *ret_pidfd)
{
	const struct spawn_template *t = rq->tmpl;
	const struct settings *s = rq->settings;
	char v_fds[32], v_pid[32 + LISTEN_PID_DIGITS], v_id[48], v_gen[48], v_arb[48];
	char *v_names = NULL, *v_log = NULL, v_fmt[48], v_wd[48];
	/* The built-in worker's argv[0], what ps and top show, as nginx names its
	 * workers; main() dispatches on argv[1]. */
	char title[64], *builtin_argv[3] = {title, NULL, NULL};
	char v_hb[48];
	int fds[POSTFORK_MAX_FDS];
	bool hb = false;
	char **envp;
	size_t k = 0;
	struct exec_plan plan;
	int pidfd = -1;
	pid_t pid;

	envp = calloc(t->n_base_env + 13, sizeof(char *));
	if (!envp)
		return -ENOMEM;
	memcpy(envp, t->base_env, t->n_base_env * sizeof(char *));
	k = t->n_base_env;
	snprintf(v_fds, sizeof(v_fds), "LISTEN_FDS=%zu", rq->n_listen_fds);
	/* Room for the digits the child writes in its own copy (postfork.c). */
	snprintf(v_pid, sizeof(v_pid), "LISTEN_PID=%*s", LISTEN_PID_DIGITS, "");
	snprintf(v_id, sizeof(v_id), "SIGVISOR_WORKER_ID=%u", rq->id);
	snprintf(v_gen, sizeof(v_gen), "SIGVISOR_GENERATION=%u", rq->generation);
	snprintf(v_arb, sizeof(v_arb), "SIGVISOR_ARBITER_PID=%d", (int)rq->arbiter_pid);
	snprintf(v_fmt, sizeof(v_fmt), "SIGVISOR_LOG_FORMAT=%s",
		 s->log_format == LOG_FORMAT_JSON ? "json" : "text");
	if (asprintf(&v_names, "LISTEN_FDNAMES=%s", rq->listen_fdnames) < 0) {
		free(envp);
		return -ENOMEM;
	}
	if (t->log_file_abs && asprintf(&v_log, "SIGVISOR_LOG_FILE=%s", t->log_file_abs) < 0) {
		free(v_names);
		free(envp);
		return -ENOMEM;
	}
	envp[k++] = v_fds;
	envp[k++] = v_pid;
	envp[k++] = v_names;
	envp[k++] = v_id;
	envp[k++] = v_gen;
	envp[k++] = v_arb;
	envp[k++] = v_fmt;
	if (v_log)
		envp[k++] = v_log;
	if (rq->notify_env && rq->notify_env[0])
		envp[k++] = rq->notify_env;
	if (s->timeout_ms) {
		/* systemd's contract: ping with WATCHDOG=1 at least this often. */
		snprintf(v_wd, sizeof(v_wd), "WATCHDOG_USEC=%llu",
			 (unsigned long long)s->timeout_ms * 1000);
		envp[k++] = v_wd;
	}
	/* The heartbeat memfd goes after the listening sockets, outside LISTEN_FDS. */
	if (t->builtin && s->timeout_ms && rq->heartbeat_fd >= 0 && rq->heartbeat_slot >= 0 &&
	    rq->n_listen_fds < sizeof(fds) / sizeof(fds[0])) {
		memcpy(fds, rq->listen_fds, rq->n_listen_fds * sizeof(int));
		fds[rq->n_listen_fds] = rq->heartbeat_fd;
		snprintf(v_hb, sizeof(v_hb), HEARTBEAT_ENV "=%zu:%d", 3 + rq->n_listen_fds,
			 rq->heartbeat_slot);
		envp[k++] = v_hb;
		hb = true;
	}
	envp[k] = NULL;

	if (t->builtin) {
		snprintf(title, sizeof(title), "sigvisor: worker %u (gen %u)", rq->id,
			 rq->generation);
		builtin_argv[1] = t->argv[1];
	}
	plan = (struct exec_plan){
		.path = t->path,
		.exec_fd = t->image_fd >= 0 ? &t->image_fd : NULL,
		.reset_only = &t->dispositions,
		.argv = t->builtin ? builtin_argv : t->argv,
		.envp = envp,
		.listen_pid_digits = v_pid + strlen("LISTEN_PID="),
		.fds = hb ? fds : rq->listen_fds,
		.n_fds = (unsigned)rq->n_listen_fds + (hb ? 1 : 0),
		.parent = rq->arbiter_pid,
		.drop_privileges = t->drop_privileges,
		.uid = t->uid,
		.gid = t->gid,
		.json_log = s->log_format == LOG_FORMAT_JSON,
		.nofile = spawn_nofile_given(),
	};
	pid = spawn_exec(&plan, &pidfd);
	free(v_names);
	free(v_log);
	free(envp);
	if (pid < 0)
		return -errno;
	*ret_pid = (pid_t)pid;
	*ret_pidfd = spawn_fd_high(pidfd);
	return 0;
}

/* The limit the arbiter was given; valid when nofile_raised. */
static struct rlimit nofile_given;
static bool nofile_raised;

void spawn_raise_nofile(void)
{
	const char *v = getenv(SPAWN_NOFILE_ENV);
	struct rlimit now;
	unsigned long long soft, hard;

	if (getrlimit(RLIMIT_NOFILE, &now) < 0)
		return;
	nofile_given = now;
	/* The new image of an upgrade: the limit is already raised, the one given is
	 * what the old image passed on. */
	if (v && sscanf(v, "%llu %llu", &soft, &hard) == 2 && soft <= now.rlim_cur) {
		nofile_given.rlim_cur = (rlim_t)soft;
		nofile_given.rlim_max = (rlim_t)hard;
	}
	unsetenv(SPAWN_NOFILE_ENV);
	now.rlim_cur = now.rlim_max;
	/* A hard limit below the soft one cannot be; leave it if setrlimit refuses. */
	if (now.rlim_cur != nofile_given.rlim_cur && setrlimit(RLIMIT_NOFILE, &now) < 0)
		return;
	/* The hard limit may have been lowered since (by prlimit): a child cannot be
	 * given a soft limit above it. */
	if (nofile_given.rlim_max > now.rlim_max)
		nofile_given.rlim_max = now.rlim_max;
	if (nofile_given.rlim_cur > nofile_given.rlim_max)
		nofile_given.rlim_cur = nofile_given.rlim_max;
	nofile_raised = nofile_given.rlim_cur != now.rlim_cur;
}

const struct rlimit *spawn_nofile_given(void)
{
	return nofile_raised ? &nofile_given : NULL;
}

void spawn_nofile_export(bool on)
{
	char v[64];

	if (!on || !nofile_raised) {
		unsetenv(SPAWN_NOFILE_ENV);
		return;
	}
	snprintf(v, sizeof(v), "%llu %llu", (unsigned long long)nofile_given.rlim_cur,
		 (unsigned long long)nofile_given.rlim_max);
	(void)setenv(SPAWN_NOFILE_ENV, v, 1);
}

/* Per worker a pidfd and a notify socket; a reload holds two generations; and the
 * arbiter's own: listeners, control and metrics connections, the loop, the probes. */
#define NOFILE_PER_WORKER 2
#define NOFILE_OWN	  256

unsigned long spawn_nofile_short(unsigned workers, unsigned long *ret_hard)
{
	struct rlimit now;
	unsigned long need = 2UL * NOFILE_PER_WORKER * workers + NOFILE_OWN;

	if (getrlimit(RLIMIT_NOFILE, &now) < 0 || now.rlim_cur == RLIM_INFINITY ||
	    now.rlim_cur >= need)
		return 0;
	*ret_hard = (unsigned long)now.rlim_cur;
	return need;
}
