/* USR2: in-place binary upgrade; see "upgrade.c" in arbiter.h. */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arbiter.h"
#include "upgrade_internal.h"
#include "log.h"
#include "postfork.h"
#include "signames.h"
#include "timeutil.h"
#include "upsettings.h"
#include "upstate.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* The format of the state (upstate.h): "sigvisor-upgrade N" first, N the version it
 * is written in. The --check handshake prints HANDSHAKE and the oldest and newest
 * versions the new binary reads. */
#define STATE_VERSION UPSTATE_VERSION
#define HANDSHAKE     "sigvisor-upgrade-state"
#define UPGRADE_ENV   "SIGVISOR_UPGRADE_FD"
#define ROLLBACK_ENV  "SIGVISOR_ROLLBACK_FD"
#define FAILED_ENV    "SIGVISOR_UPGRADE_FAILED"
#define CHECK_ENV     "SIGVISOR_UPGRADE_CHECK"
/* How long the exec waits for scrapes already accepted on --metrics. */
#define UPGRADE_DRAIN_MS 1000
/* Queued log lines do not survive an exec: how long they may wait for a stalled
 * reader first (log.h). */
#define LOG_EXEC_FLUSH_MS 200

extern char **environ;

int upgrade_resolve_self(const char *argv0, char **ret_path)
{
	char buf[4096];
	ssize_t n;

	if (path_resolve(argv0, ret_path) == 0)
		return 0;
	/* Started in some way we cannot retrace (fexecve): the running file's path. */
	n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	if (n > 10 && strcmp(buf + n - 10, " (deleted)") == 0)
		buf[n - 10] = '\0';
	*ret_path = strdup(buf);
	return *ret_path ? 0 : -ENOMEM;
}

/* "No such file or directory (ENOENT)": what an operator can search for. */
static const char *errno_name(int err)
{
	switch (err) {
	case ENOENT:
		return "ENOENT";
	case EACCES:
		return "EACCES";
	case ENOEXEC:
		return "ENOEXEC";
	case ENOTDIR:
		return "ENOTDIR";
	case ELOOP:
		return "ELOOP";
	case ETXTBSY:
		return "ETXTBSY";
	case ENOMEM:
		return "ENOMEM";
	case E2BIG:
		return "E2BIG";
	case EPERM:
		return "EPERM";
	case EINVAL:
		return "EINVAL";
	default:
		return "?";
	}
}

static void close_check_pipes(struct upgrade *u)
{
	if (u->check_out >= 0)
		close(u->check_out);
	if (u->check_errno >= 0)
		close(u->check_errno);
	u->check_out = u->check_errno = -1;
}

void upgrade_outcome(struct arbiter *a, const char *result, const char *reason, uint64_t reload)
{
	upstate_outcome_push(&a->upgrade.outcomes, a->upgrade.seq, result, reason,
			     a->pool.generation, reload);
}

static void refuse(struct arbiter *a, const char *why)
{
	a->upgrade.refused++;
	upgrade_outcome(a, "refused", why, 0);
	metrics_resume(&a->metrics, &a->loop); /* if the exec had paused it */
	log_error("upgrade refused: %s; still running the old binary", why);
	notify_upstream(&a->notify, "READY=1\nSTATUS=upgrade refused");
}

/* SIGVISOR_UPGRADE_CHECK: the addresses we hold (as given and as bound), one a line,
 * which the check cannot bind and need not: the new image takes them over. */
static void set_check_env(struct arbiter *a)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f) {
		(void)setenv(CHECK_ENV, "", 1);
		return;
	}
	for (size_t i = 0; i < a->listeners.n; i++)
		fprintf(f, "%s\n%s\n", a->listeners.l[i].spec, a->listeners.l[i].address);
	for (size_t k = 0; k < a->n_adopted; k++)
		fprintf(f, "%s\n", a->adopted[k].spec);
	if (a->metrics.listen.fd >= 0 && a->settings->metrics)
		fprintf(f, "%s\n", a->settings->metrics);
	if (fclose(f) == 0 && buf)
		(void)setenv(CHECK_ENV, buf, 1);
	else
		(void)setenv(CHECK_ENV, "", 1);
	free(buf);
}

bool upgrade_check_holds(const char *spec)
{
	const char *held = getenv(CHECK_ENV);
	size_t n = strlen(spec);

	for (const char *p = held; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		if (len == n && strncmp(p, spec, n) == 0)
			return true;
		p = nl ? nl + 1 : p + len;
	}
	return false;
}

bool upgrade_checking(void)
{
	return getenv(CHECK_ENV) != NULL;
}

void upgrade_check_handshake(void)
{
	if (getenv(CHECK_ENV))
		printf("%s %d %d bpf=%llx\n", HANDSHAKE, UPSTATE_OLDEST_READ, UPSTATE_VERSION,
		       (unsigned long long)bpf_probes_identity());
}

/* The check child is gone: the versions it said it reads, oldest to newest (0: it
 * said none, not a sigvisor). A binary of version 1 names only one. */
static int read_handshake(struct upgrade *u, int *ret_newest)
{
	char buf[4096];
	size_t len = 0;
	ssize_t n;
	int version = 0, newest = 0;

	while (len < sizeof(buf) - 1 &&
	       (n = read(u->check_out, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	for (char *line = buf; line && *line;) {
		char *nl = strchr(line, '\n');

		if (nl)
			*nl = '\0';
		int k = sscanf(line, HANDSHAKE " %d %d", &version, &newest);
		const char *id = strstr(line, " bpf=");

		if (k >= 1) {
			*ret_newest = k == 2 ? newest : version;
			u->check_bpf = id ? strtoull(id + 5, NULL, 16) : 0;
			return version;
		}
		line = nl ? nl + 1 : NULL;
	}
	return 0;
}

void upgrade_start(struct arbiter *a)
{
	struct upgrade *u = &a->upgrade;
	char **argv;
	struct exec_plan plan;
	int pidfd = -1, r, out_pipe[2] = {-1, -1}, errno_pipe[2] = {-1, -1};
	pid_t pid;

	if (u->check_pid || u->exec_wanted) {
		log_info("upgrade already in progress; this USR2 changes nothing");
		return;
	}
	if (reload_busy(a)) {
		u->pending = true;
		log_info("a reload is in progress; the upgrade starts when it is over");
		return;
	}
	u->seq++;
	argv = calloc((size_t)a->argc + 2, sizeof(char *));
	if (!argv) {
		refuse(a, "out of memory");
		return;
	}
	argv[0] = a->self_path;
	argv[1] = (char *)"--check";
	for (int i = 1; i < a->argc; i++)
		argv[i + 1] = a->argv[i];
	/* Its stdout is the handshake; errno_pipe says why an exec failed (closed on a
	 * successful exec, so it reads EOF then). */
	if (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(errno_pipe, O_CLOEXEC) < 0) {
		if (out_pipe[0] >= 0) {
			close(out_pipe[0]);
			close(out_pipe[1]);
		}
		free(argv);
		refuse(a, "cannot create the --check's pipes");
		return;
	}
	set_check_env(a);
	plan = (struct exec_plan){.path = a->self_path,
				  .argv = argv,
				  .envp = environ,
				  .parent = a->pid,
				  .stdout_fd = &out_pipe[1],
				  .errno_fd = &errno_pipe[1]};
	pid = spawn_exec(&plan, &pidfd);
	r = -errno;
	unsetenv(CHECK_ENV);
	free(argv);
	close(out_pipe[1]);
	close(errno_pipe[1]);
	u->check_out = out_pipe[0];
	u->check_errno = errno_pipe[0];
	(void)fcntl(u->check_out, F_SETFL, O_NONBLOCK);
	(void)fcntl(u->check_errno, F_SETFL, O_NONBLOCK);
	if (pid < 0) {
		close_check_pipes(u);
		errno = -r;
		refuse(a, "cannot start the new binary's --check");
		return;
	}
	u->check.type = SOURCE_UPGRADE_CHECK;
	u->check.fd = pidfd;
	u->check_pid = (pid_t)pid;
	u->check_deadline_ms =
		now_ms() + (a->settings->ready_timeout_ms ? a->settings->ready_timeout_ms : 30000);
	r = loop_add(&a->loop, &u->check, LOOP_IN);
	if (r < 0)
		log_warn("cannot watch the upgrade check's pidfd (SIGCHLD will do): %s",
			 strerror(-r));
	notify_upstream(&a->notify, "RELOADING=1\nSTATUS=upgrading");
	log_info("upgrade: running %s --check (pid %d)", a->self_path, (int)pid);
}

void upgrade_check_done(struct arbiter *a)
{
	struct upgrade *u = &a->upgrade;
	siginfo_t si;
	char why[PATH_MAX + 256];
	int err = 0;

	if (!u->check_pid)
		return;
	memset(&si, 0, sizeof(si));
	if (waitid((idtype_t)P_PIDFD, (id_t)u->check.fd, &si, WEXITED | WNOHANG) < 0 ||
	    si.si_pid == 0)
		return;
	(void)loop_del(&a->loop, &u->check);
	close(u->check.fd);
	u->check.fd = -1;
	u->check_pid = 0;
	if (!u->check_deadline_ms) {
		close_check_pipes(u);
		refuse(a, "the new binary's --check did not finish in time");
		return;
	}
	u->check_deadline_ms = 0;
	if (si.si_code == CLD_EXITED && si.si_status == 0) {
		int newest = 0, version = read_handshake(u, &newest);

		close_check_pipes(u);
		if (version == 0) {
			snprintf(why, sizeof(why),
				 "%s passed --check but is not a sigvisor: it did not say which "
				 "upgrade-state format it reads",
				 a->self_path);
			refuse(a, why);
			return;
		}
		if (STATE_VERSION < version || STATE_VERSION > newest) {
			snprintf(why, sizeof(why),
				 "%s reads upgrade-state formats %d to %d, this sigvisor writes %d",
				 a->self_path, version, newest, STATE_VERSION);
			refuse(a, why);
			return;
		}
		log_info("upgrade: %s passed --check (upgrade-state format %d)", a->self_path,
			 STATE_VERSION);
		u->exec_wanted = true;
		return;
	}
	if (si.si_code == CLD_EXITED && si.si_status == 127 &&
	    read(u->check_errno, &err, sizeof(err)) == (ssize_t)sizeof(err))
		snprintf(why, sizeof(why), "cannot run %s: %s (%s)", a->self_path, strerror(err),
			 errno_name(err));
	else if (si.si_code == CLD_EXITED)
		snprintf(why, sizeof(why), "%s --check exited with status %d", a->self_path,
			 si.si_status);
	else
		snprintf(why, sizeof(why), "%s --check was killed by SIG%s", a->self_path,
			 signal_name(si.si_status));
	close_check_pipes(u);
	refuse(a, why);
}

void upgrade_check_timeout(struct arbiter *a, uint64_t now)
{
	struct upgrade *u = &a->upgrade;

	if (!u->check_pid || !u->check_deadline_ms || now < u->check_deadline_ms)
		return;
	u->check_deadline_ms = 0; /* marks the timeout for upgrade_check_done */
	(void)pidfd_send_signal(u->check.fd, SIGKILL, NULL, 0);
}

int upgrade_set_cloexec(int fd, bool on)
{
	return fcntl(fd, F_SETFD, on ? FD_CLOEXEC : 0) < 0 ? -errno : 0;
}

static void handover_fds(struct arbiter *a, bool back)
{
	for (size_t i = 0; i < a->listeners.n; i++)
		(void)upgrade_set_cloexec(a->listeners.l[i].fd, back);
	(void)upgrade_set_cloexec(a->control.listen.fd, back);
	/* Accepted control connections too: the new image answers them (a close here would
	 * reset a client whose request was not read yet). */
	control_set_cloexec(&a->control, back);
	if (a->metrics.listen.fd >= 0)
		(void)upgrade_set_cloexec(a->metrics.listen.fd, back);
	pool_state_cloexec(&a->pool, back);
}

static int write_state(struct arbiter *a, FILE *f, enum probes_handover *ret_bpf)
{
	const struct pool *p = &a->pool;

	struct upstate_numbers num = {
		.started_ms = a->started_ms,
		.pool = p->counters,
		.upgrades = a->upgrade.upgrades + 1, /* this exec; a rollback takes it back */
		.upgrade_refused = a->upgrade.refused,
		.upgrade_rollbacks = a->upgrade.rollbacks,
		.config_workers = a->settings->workers,
		.reload_seq = a->reload_seq,
		.upgrade_seq = a->upgrade.seq,
		/* Only the probes handed over go on counting from these (arbiter_bpf.c). */
		.scale_counted = a->scale.counting,
		.ttin_consumed = a->scale.consumed[0],
		.ttou_consumed = a->scale.consumed[1],
		.scale_merged = a->scale.merged,
	};

	memcpy(num.signals_received, a->signals_received, sizeof(num.signals_received));
	memcpy(num.signals_ignored, a->signals_ignored, sizeof(num.signals_ignored));
	fprintf(f, "%s %d\n", STATE_MAGIC, STATE_VERSION);
	if (pool_state_write(p, f) < 0 || upstate_write(f, &num) < 0 ||
	    upstate_outcomes_write(f, "reload", &a->reload_outcomes) < 0 ||
	    upstate_outcomes_write(f, "upgrade", &a->upgrade.outcomes) < 0)
		return -EIO;
	/* For a rollback: this image resumes with them, whatever the config file says by
	 * then (the new image reads its options and config file as on HUP). */
	if (settings_save(f, a->settings) < 0)
		return -EIO;
	fprintf(f, "control %d %s\n", a->control.listen.fd, a->control.path);
	control_write_state(&a->control, f); /* after the listener: adopting it resets them */
	if (a->metrics.listen.fd >= 0 && a->settings->metrics)
		fprintf(f, "metrics %d %s\n", a->metrics.listen.fd, a->settings->metrics);
	fprintf(f, "notify %u %u\n", a->notify.cookie, a->notify.seq);
	for (size_t i = 0; i < a->listeners.n; i++)
		fprintf(f, "listener %d %s\n", a->listeners.l[i].fd, a->listeners.l[i].spec);
	/* The new binary carries the same probes (its --check said): they stay attached
	 * and it takes them over. */
	*ret_bpf = arbiter_bpf_handover(a, f, a->upgrade.check_bpf);
	fprintf(f, "end\n");
	return ferror(f) ? -EIO : 0;
}

void upgrade_maybe_exec(struct arbiter *a)
{
	struct upgrade *u = &a->upgrade;
	char env[64], why[PATH_MAX + 128];
	FILE *f;
	enum probes_handover bpf = PROBES_NOT_HANDED_OVER;
	int fd, dupfd, r;

	if (u->pending && !reload_busy(a) && a->phase == PHASE_RUNNING) {
		u->pending = false;
		upgrade_start(a);
		return;
	}
	if (!u->exec_wanted || reload_busy(a))
		return;
	if (a->phase != PHASE_RUNNING) {
		u->exec_wanted = false;
		u->drain_deadline_ms = 0;
		metrics_resume(&a->metrics, &a->loop);
		log_info("upgrade dropped: shutting down");
		upgrade_outcome(a, "dropped", "shutting down", 0);
		return;
	}
	/* A scrape the old image has accepted would be reset by the exec (its fd is
	 * close-on-exec). Stop accepting: new scrapes wait in the listener's queue for
	 * the new image, which takes the listener over. Let the accepted ones finish,
	 * for up to UPGRADE_DRAIN_MS. */
	if (a->metrics.n_conns > 0) {
		uint64_t now = now_ms();

		if (!u->drain_deadline_ms) {
			u->drain_deadline_ms = now + UPGRADE_DRAIN_MS;
			metrics_pause(&a->metrics, &a->loop);
			return;
		}
		if (now < u->drain_deadline_ms)
			return;
		log_warn("upgrade: %u metrics connections still open after %d ms, they will be "
			 "reset",
			 a->metrics.n_conns, UPGRADE_DRAIN_MS);
	}
	u->exec_wanted = false;
	u->drain_deadline_ms = 0;
	/* Not close-on-exec: the new image reads it. */
	fd = memfd_create("sigvisor-upgrade", 0);
	if (fd < 0) {
		refuse(a, "cannot create the state memfd");
		return;
	}
	dupfd = dup(fd);
	f = dupfd >= 0 ? fdopen(dupfd, "w") : NULL;
	if (!f) {
		if (dupfd >= 0)
			close(dupfd);
		close(fd);
		refuse(a, "cannot write the state memfd");
		return;
	}
	r = write_state(a, f, &bpf);
	if (fclose(f) != 0 || r < 0 || lseek(fd, 0, SEEK_SET) < 0) {
		if (bpf == PROBES_HANDED_OVER)
			bpf_probes_handover_undo(a->bpf);
		close(fd);
		refuse(a, "cannot write the state memfd");
		return;
	}
	snprintf(env, sizeof(env), "%d", fd);
	if (setenv(UPGRADE_ENV, env, 1) < 0) {
		if (bpf == PROBES_HANDED_OVER)
			bpf_probes_handover_undo(a->bpf);
		close(fd);
		refuse(a, "cannot set " UPGRADE_ENV);
		return;
	}
	handover_fds(a, false);
	/* Our own executable, for the new image to come back to if it cannot start. */
	if (u->self_fd >= 0 && upgrade_set_cloexec(u->self_fd, false) == 0) {
		snprintf(env, sizeof(env), "%d", u->self_fd);
		(void)setenv(ROLLBACK_ENV, env, 1);
	}
	log_info("upgrade: exec %s in place (pid %d stays)%s", a->self_path, (int)a->pid,
		 bpf == PROBES_HANDED_OVER ? ", the BPF probes handed over attached" : "");
	if (bpf == PROBES_NOT_HANDED_OVER)
		arbiter_bpf_stop(a);
	spawn_nofile_export(true);
	log_flush_for(LOG_EXEC_FLUSH_MS);
	execv(a->self_path, a->argv);
	r = errno;
	spawn_nofile_export(false);
	if (bpf == PROBES_NOT_HANDED_OVER)
		arbiter_bpf_start(a);
	else if (bpf == PROBES_HANDED_OVER)
		bpf_probes_handover_undo(a->bpf);
	handover_fds(a, true);
	if (u->self_fd >= 0)
		(void)upgrade_set_cloexec(u->self_fd, true);
	unsetenv(ROLLBACK_ENV);
	unsetenv(UPGRADE_ENV);
	close(fd);
	snprintf(why, sizeof(why), "cannot exec %s: %s (%s)", a->self_path, strerror(r),
		 errno_name(r));
	refuse(a, why);
}

/* The fd named by the variable name, close-on-exec from now on; -1 if none. */
static int inherited_fd(const char *name)
{
	const char *v = getenv(name);
	char *end;
	long fd;

	if (!v)
		return -1;
	fd = strtol(v, &end, 10);
	unsetenv(name);
	if (*end || end == v || fd < 0 || fd > INT_MAX || fcntl((int)fd, F_GETFD) < 0)
		return -1;
	(void)upgrade_set_cloexec((int)fd, true);
	return (int)fd;
}

void upgrade_inherit(struct arbiter *a)
{
	struct upgrade *u = &a->upgrade;
	const char *why = getenv(FAILED_ENV);

	/* Now, while /proc/self/exe is what runs: the file at our path may be replaced
	 * or deleted later, this fd still executes us. */
	u->self_fd = open("/proc/self/exe", O_PATH | O_CLOEXEC);
	a->upgrade_fd = inherited_fd(UPGRADE_ENV);
	u->rollback_fd = inherited_fd(ROLLBACK_ENV);
	if (why) {
		u->rolled_back = a->upgrade_fd >= 0;
		snprintf(u->rollback_why, sizeof(u->rollback_why), "%s", why);
		unsetenv(FAILED_ENV);
	}
	if (a->upgrade_fd < 0 && u->rollback_fd >= 0) {
		close(u->rollback_fd);
		u->rollback_fd = -1;
	}
}

void upgrade_commit(struct arbiter *a)
{
	if (a->upgrade.rollback_fd >= 0)
		close(a->upgrade.rollback_fd);
	a->upgrade.rollback_fd = -1;
}

/* Clear close-on-exec again on every fd the state names (adopting set it), and on the
 * state itself: the previous image adopts them all once more. */
static void keep_bpf(void *ctx, const char *line, long off)
{
	(void)ctx;
	(void)off;
	bpf_handover_cloexec(line, false);
}

/* "listener FD ...", "control FD ...", "controlconn FD ...", "metrics FD ...". */
static void keep_first_fd(void *ctx, const char *line, long off)
{
	int sfd;

	(void)ctx;
	(void)off;
	if (sscanf(line + strcspn(line, " "), " %d", &sfd) == 1)
		(void)upgrade_set_cloexec(sfd, false);
}

static int keep_state_fds(int fd)
{
	FILE *f = upgrade_open_state(fd);
	static const struct upstate_part parts[] = {
		{"bpf", keep_bpf, NULL},
		{"listener", keep_first_fd, NULL},
		{"control", keep_first_fd, NULL},
		{"controlconn", keep_first_fd, NULL},
		{"metrics", keep_first_fd, NULL},
		{"worker", pool_keep_worker_line, NULL},
		{"heartbeats", keep_first_fd, NULL},
	};

	if (!f)
		return -errno;
	(void)upstate_parse(f, parts, sizeof(parts) / sizeof(parts[0]));
	fclose(f);
	return upgrade_set_cloexec(fd, false);
}

void upgrade_rollback(struct arbiter *a, const char *why)
{
	struct upgrade *u = &a->upgrade;
	char env[32];
	int r;

	if (a->upgrade_fd < 0 || u->rollback_fd < 0)
		return;
	log_error("upgrade: the new image cannot start (%s); rolling back to the previous image, "
		  "pid %d stays",
		  why, (int)getpid());
	arbiter_bpf_stop(a);
	r = keep_state_fds(a->upgrade_fd);
	if (r < 0) {
		log_error("upgrade: cannot roll back, the state is unreadable: %s", strerror(-r));
		return;
	}
	snprintf(env, sizeof(env), "%d", a->upgrade_fd);
	if (setenv(UPGRADE_ENV, env, 1) < 0 || setenv(FAILED_ENV, why, 1) < 0) {
		log_error("upgrade: cannot roll back: %m");
		return;
	}
	spawn_nofile_export(true);
	log_flush_for(LOG_EXEC_FLUSH_MS);
	fexecve(u->rollback_fd, a->argv, environ);
	log_error("upgrade: cannot re-execute the previous image: %m");
	spawn_nofile_export(false);
	unsetenv(UPGRADE_ENV);
	unsetenv(FAILED_ENV);
}

int upgrade_settings(struct arbiter *a, struct settings *s, char *err, size_t errlen)
{
	FILE *f = upgrade_open_state(a->upgrade_fd);
	int r;

	if (!f) {
		settings_init(s);
		snprintf(err, errlen, "cannot read the upgrade state: %s", strerror(errno));
		return -EIO;
	}
	r = settings_load(s, f, err, errlen);
	fclose(f);
	a->upgrade.settings_kept = r == 0;
	return r;
}

FILE *upgrade_open_state(int fd)
{
	int d = dup(fd);
	FILE *f;

	if (d < 0)
		return NULL;
	f = fdopen(d, "r");
	if (!f) {
		close(d);
		return NULL;
	}
	if (lseek(d, 0, SEEK_SET) < 0) {
		fclose(f);
		return NULL;
	}
	return f;
}

int64_t upgrade_request(struct arbiter *a, const struct control_peer *peer, char *why,
			size_t whylen)
{
	struct upgrade *u = &a->upgrade;
	char asked[96];
	bool later = reload_busy(a);
	int64_t id;

	control_peer_words(peer, asked, sizeof(asked));
	if (a->phase != PHASE_RUNNING)
		snprintf(why, whylen, "shutting down");
	/* A USR2 then changes nothing; the client would wait for an outcome that is
	 * another's. */
	else if (u->check_pid || u->exec_wanted || u->pending)
		snprintf(why, whylen, "an upgrade is already in progress; try again when it ends");
	else if (!a->self_path)
		snprintf(why, whylen, "the path this sigvisor was started from is unknown");
	else
		why[0] = '\0';
	if (why[0]) {
		control_log_command("upgrade", peer, "refused",
				    "control: upgrade from %s refused: %s", asked, why);
		return -1;
	}
	id = (int64_t)u->seq + 1;
	control_log_command("upgrade", peer, later ? "queued" : "applied",
			    "control: upgrade #%lld from %s%s", (long long)id, asked,
			    later ? ", after the reload in progress" : "");
	/* As a USR2: during a reload it starts when the reload is over. */
	if (later)
		u->pending = true;
	else
		upgrade_start(a);
	return id;
}
