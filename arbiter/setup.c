/* What the arbiter does before its loop runs and after it ends: take the sockets an
 * upgrade or systemd handed over, open the listeners, detach (--daemon), write the
 * pidfile, create the loop, the signalfd and the deadline timer, open the control
 * socket, --metrics and the probes; and close all of that again.
 *
 * Set-up may fail loudly and exit (doc/RUNBOOK.md, exit statuses); a new image of an
 * upgrade that fails here rolls back (upgrade.c). */
#include "arbiter.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "check.h"
#include "killable.h"
#include "log.h"
#include "safefile.h"
#include "serving.h"
#include "timeutil.h"

extern char **environ;

/* Created beside the path and renamed over it (safefile.h): a link planted at the path
 * is replaced, never written through. */
static int write_pidfile(const char *path, pid_t pid)
{
	char buf[32];
	int len = snprintf(buf, sizeof(buf), "%d\n", (int)pid);

	return safefile_replace(path, buf, (size_t)len);
}

/* Remove the pidfile only if it is still ours (a new arbiter may have replaced it), and
 * only a regular file: a link at the path is not followed, a FIFO not waited on. */
static void remove_pidfile(const char *path, pid_t pid)
{
	char buf[32] = "";
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	struct stat st;
	ssize_t n = -1;

	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n > 0 && atoi(buf) == (int)pid)
		(void)unlink(path);
}

static int daemonize(void)
{
	pid_t pid = fork();
	int fd;

	if (pid < 0)
		return -errno;
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0)
		_exit(0);
	if (chdir("/") < 0)
		return -errno;
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	(void)dup2(fd, STDIN_FILENO);
	(void)dup2(fd, STDOUT_FILENO);
	/* Without --log-file, stderr is where the log goes: keep it then. */
	if (log_fd() != STDERR_FILENO)
		(void)dup2(fd, STDERR_FILENO);
	close(fd);
	return 0;
}

static int control_render(void *ctx, bool json, struct membuf *out)
{
	return arbiter_render_status(ctx, json, out);
}

static const char *control_events_off(void *ctx)
{
	const struct arbiter *a = ctx;

	return a->bpf ? NULL : a->bpf_why;
}

static int control_set_workers(void *ctx, const struct control_peer *peer,
			       const struct control_workers *req, char *why, size_t whylen)
{
	return arbiter_set_workers(ctx, peer, req, why, whylen);
}

static int64_t control_reload(void *ctx, const struct control_peer *peer, char *why, size_t whylen)
{
	return reload_request(ctx, peer, why, whylen);
}

static int64_t control_upgrade(void *ctx, const struct control_peer *peer, char *why, size_t whylen)
{
	return upgrade_request(ctx, peer, why, whylen);
}

static int control_reopen(void *ctx, const struct control_peer *peer, char *ans, size_t anslen)
{
	return arbiter_reopen_logs(ctx, peer, ans, anslen);
}

static int control_stop(void *ctx, const struct control_peer *peer, bool quick, char *ans,
			size_t anslen)
{
	return arbiter_stop(ctx, peer, quick, ans, anslen);
}

static int control_kill_worker(void *ctx, const struct control_peer *peer,
			       const struct control_kill *req, char *ans, size_t anslen)
{
	return arbiter_kill_worker(ctx, peer, req, ans, anslen);
}

static int control_config(void *ctx, bool json, char **ret, size_t *ret_len)
{
	return arbiter_render_config(ctx, json, ret, ret_len);
}

static void metrics_render(void *ctx, FILE *f)
{
	struct arbiter *a = ctx;

	/* No pass over the notify sockets: a booting worker's is watched, so its READY=1
	 * is read as it comes, and a scrape shows no STATUS= (issue 29). */
	arbiter_render_prometheus(a, f);
}

static const char *metrics_not_ready(void *ctx)
{
	struct arbiter *a = ctx;

	/* READY=1 is read as it comes (a booting worker's socket is watched) */
	if (arbiter_is_ready(a))
		return NULL;
	return a->phase != PHASE_RUNNING ? "not ready: shutting down\n"
					 : "not ready: no worker is ready\n";
}

/* Bind i: a socket inherited through an upgrade when one has that spec, else a new one. */
static int open_or_adopt_listener(struct arbiter *a, size_t i, char *err, size_t errlen)
{
	const char *spec = a->settings->binds[i];
	struct listener *l = &a->listeners.l[a->listeners.n];
	int r;

	for (size_t k = 0; k < a->n_adopted; k++) {
		if (a->adopted[k].fd < 0 || strcmp(a->adopted[k].spec, spec) != 0)
			continue;
		r = listener_adopt(l, a->adopted[k].fd, spec);
		a->adopted[k].fd = -1;
		if (r < 0)
			snprintf(err, errlen, "upgrade: cannot take over %s: %s", spec,
				 strerror(-r));
		return r;
	}
	return listener_open(l, spec, a->settings->backlog, err, errlen);
}

/* Inherited sockets the new configuration no longer binds stay in a->adopted: the
 * adopted workers may still serve them, and retire_old_listeners closes them before the
 * last of those is stopped. */
static void keep_unadopted(struct arbiter *a)
{
	size_t n = 0;

	for (size_t k = 0; k < a->n_adopted; k++) {
		if (a->adopted[k].fd >= 0)
			a->adopted[n++] = a->adopted[k];
		else
			free(a->adopted[k].spec);
	}
	a->n_adopted = n;
}

/* --metrics: the listener the image before a USR2 handed over when it was opened for
 * the same address (it keeps its port, even a port 0, and its pending scrapes), else a
 * new one; a handed-over listener no longer configured is closed. */
static int setup_metrics(struct arbiter *a, char *err, size_t errlen)
{
	const struct settings *s = a->settings;
	struct upgrade *u = &a->upgrade;
	int r = 0;

	if (u->metrics_fd >= 0 &&
	    !(s->metrics && u->metrics_spec && strcmp(s->metrics, u->metrics_spec) == 0)) {
		log_info("upgrade: --metrics %s is no longer configured, closing it",
			 u->metrics_spec ? u->metrics_spec : "?");
		listener_close_inherited(u->metrics_fd, u->metrics_spec ? u->metrics_spec : "");
		u->metrics_fd = -1;
	}
	if (s->metrics) {
		if (u->metrics_fd >= 0)
			r = metrics_adopt(&a->metrics, u->metrics_fd, s->metrics, err, errlen);
		else
			r = metrics_open(&a->metrics, s->metrics, err, errlen);
		u->metrics_fd = -1;
		if (r == 0)
			r = metrics_start(
				&a->metrics, &a->loop,
				&(struct metrics_view){a, metrics_render, metrics_not_ready});
		if (r < 0)
			return r;
		log_info("metrics on http://%s/metrics", a->metrics.address);
	}
	free(u->metrics_spec);
	u->metrics_spec = NULL;
	return 0;
}

/* Started with LISTEN_FDS for us: those sockets are our binds (activation.h). The
 * new image of an upgrade gets their fds with the other handed-over listeners. */
static int setup_activation(struct arbiter *a, char *err, size_t errlen)
{
	int fds[MAX_BINDS];
	int n = activation_take(&a->activation, fds, err, errlen);

	for (int i = 0; i < n; i++) {
		if (fds[i] < 0)
			continue;
		a->adopted[a->n_adopted].spec = strdup(a->activation.spec[i]);
		if (!a->adopted[a->n_adopted].spec)
			return -ENOMEM;
		a->adopted[a->n_adopted++].fd = fds[i];
		log_info("socket activation: serving on %s (fd %d%s%s), passed by systemd",
			 a->activation.spec[i], fds[i], a->activation.name[i] ? ", " : "",
			 a->activation.name[i] ? a->activation.name[i] : "");
	}
	if (n > 0 && activation_apply_binds(&a->activation, a->settings, "") < 0)
		return -ENOMEM;
	return n < 0 ? n : 0;
}

/* A container started with `docker run --init` or `podman run --init` puts a small init
 * in front of us as PID 1, and `kill -TTIN 1` reaches it, not us. Measured (tini 0.19,
 * catatonit 0.1.7, dumb-init 1.2.5): tini (docker's docker-init) and catatonit
 * (podman's) pass TERM on but not TTIN or TTOU; dumb-init turns TTIN into SIGSTOP for
 * our whole process group, which stops the arbiter and every worker. Said once. */
static void warn_init_in_front(pid_t self)
{
	static const struct {
		const char *comm, *what;
	} inits[] = {
		{"tini", "passes TTIN and TTOU on to nobody"},
		{"docker-init", "(tini) passes TTIN and TTOU on to nobody"},
		{"catatonit", "passes TTIN and TTOU on to nobody"},
		{"dumb-init", "turns TTIN and TTOU into SIGSTOP for our process group: `kill "
			      "-TTIN 1` stops sigvisor and every worker"},
	};
	char comm[32] = "";
	ssize_t n;
	int fd;

	if (self == 1 || getppid() != 1)
		return;
	fd = open("/proc/1/comm", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, comm, sizeof(comm) - 1);
	close(fd);
	comm[n > 0 ? n : 0] = '\0';
	comm[strcspn(comm, "\n")] = '\0';
	for (size_t i = 0; i < sizeof(inits) / sizeof(inits[0]); i++)
		if (strcmp(comm, inits[i].comm) == 0)
			log_warn(
				"PID 1 is %s (docker/podman --init?), not sigvisor: it %s; "
				"send TTIN/TTOU to pid %d, use `sigvisor workers`, or run sigvisor "
				"as the entrypoint without --init (it reaps orphans itself)",
				comm, inits[i].what, (int)self);
}

int arbiter_setup(struct arbiter *a, char *err, size_t errlen, int *ret_status)
{
	struct settings *s = a->settings;
	const struct loop_backend *backend;
	char control_path[256];
	int r;

	*ret_status = EXIT_FATAL;
	r = setup_activation(a, err, errlen);
	if (r < 0)
		return r;
	if (s->n_binds == 0) {
		s->binds[0] = strdup("127.0.0.1:8000");
		if (!s->binds[0])
			return -ENOMEM;
		s->n_binds = 1;
	}
	for (size_t i = 0; i < s->n_binds; i++) {
		struct sockaddr_storage ss;
		socklen_t len;

		r = listener_parse(s->binds[i], &ss, &len, err, errlen);
		if (r < 0) {
			*ret_status = EXIT_USAGE;
			return r;
		}
	}
	if (s->metrics && (r = metrics_check_address(s->metrics, err, errlen)) < 0) {
		*ret_status = EXIT_USAGE;
		return r;
	}
	r = spawn_template_init(&a->tmpl, s, environ, err, errlen);
	if (r < 0) {
		*ret_status = EXIT_USAGE;
		return r;
	}
	if (s->log_file) {
		r = log_open(s->log_file);
		if (r < 0) {
			snprintf(err, errlen, "--log-file %s: %s", s->log_file, safefile_why());
			*ret_status = EXIT_USAGE;
			return r;
		}
	}
	if (s->check) {
		r = check_startup(s, upgrade_check_holds, upgrade_checking(), err, errlen);
		if (r < 0)
			return r;
		*ret_status = EXIT_OK;
		upgrade_check_handshake();
		return 1;
	}

	if (a->upgrade_fd >= 0) {
		r = upgrade_adopt_sockets(a, a->upgrade_fd, err, errlen);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < s->n_binds; i++) {
		r = open_or_adopt_listener(a, i, err, errlen);
		if (r < 0 && a->upgrade.rolled_back) {
			/* back from a failed upgrade: serve on with what we had */
			log_warn("%s; serving without it", err);
			continue;
		}
		if (r < 0)
			return r;
		a->listeners.n++;
	}
	keep_unadopted(a);
	if (activation_mark(&a->activation, a->listeners.l, a->listeners.n) < 0 ||
	    listener_set_refresh(&a->listeners) < 0)
		return -ENOMEM;

	if (s->daemon && a->upgrade_fd < 0) {
		r = daemonize();
		if (r < 0) {
			snprintf(err, errlen, "cannot detach (--daemon): %s", strerror(-r));
			return r;
		}
	}
	a->pid = getpid();
	if (!a->started_ms) /* an upgrade keeps the original start */
		a->started_ms = now_ms();
	/* As PID 1 we are every orphan's reaper already; otherwise ask to be, so the
	 * workers' orphaned children come to us and not to an init that may not reap. */
	if (a->pid != 1 && prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		log_warn("cannot become a child subreaper, ignoring: %m");
	if (a->upgrade_fd < 0 && !a->upgrade.rolled_back) /* once, not at every USR2 */
		warn_init_in_front(a->pid);

	if (s->pidfile) {
		r = write_pidfile(s->pidfile, a->pid);
		if (r < 0 && a->upgrade.rolled_back)
			log_warn("--pid %s: %s; serving on without rewriting it (the image before "
				 "the upgrade wrote it, with this same pid)",
				 s->pidfile, safefile_why());
		else if (r < 0) {
			snprintf(err, errlen, "--pid %s: %s", s->pidfile, safefile_why());
			*ret_status = EXIT_USAGE;
			return r;
		}
	}

	backend = loop_backend_select(s->loop, err, errlen);
	if (!backend)
		return -ENOTSUP;
	r = loop_init(&a->loop, backend);
	if (r < 0) {
		snprintf(err, errlen, "cannot create the %s event loop: %s", backend->name,
			 strerror(-r));
		return r;
	}
	a->sigfd.type = SOURCE_SIGNALFD;
	a->sigfd.fd = signals_open_fd(&a->sigmask);
	a->timer.type = SOURCE_TIMERFD;
	a->timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (a->sigfd.fd < 0 || a->timer.fd < 0) {
		snprintf(err, errlen, "cannot create the signalfd or timerfd: %s", strerror(errno));
		return -errno;
	}
	if ((r = loop_add(&a->loop, &a->sigfd, LOOP_IN)) < 0 ||
	    (r = loop_add(&a->loop, &a->timer, LOOP_IN)) < 0) {
		snprintf(err, errlen, "cannot register with the event loop: %s", strerror(-r));
		return r;
	}

	if (a->control.listen.fd < 0)
		control_forget(&a->control); /* the image before a USR2 had none */
	if (a->control.listen.fd >= 0) {
		/* inherited through an upgrade: same pid, same path */
		snprintf(control_path, sizeof(control_path), "%s", a->control.path);
	} else if (s->control) {
		snprintf(control_path, sizeof(control_path), "%s", s->control);
	} else if (control_default_path(control_path, sizeof(control_path), (int)a->pid) < 0) {
		snprintf(err, errlen, "no writable directory for the control socket (%s)",
			 control_default_dirs());
		control_path[0] = '\0';
		r = -ENOENT;
	}
	/* The control socket is optional (a read-only root has no place for it), unless
	 * --control asked for one: then not having it is an error. */
	if (a->control.listen.fd < 0 && control_path[0])
		r = control_open(&a->control, control_path, err, errlen);
	if (a->control.listen.fd < 0) {
		if (s->control || r == -EADDRINUSE)
			return r;
		log_warn("%s: running without a control socket, `sigvisor status` is unavailable "
			 "(give --control PATH in a writable directory)",
			 err);
		control_forget(&a->control);
	}
	r = control_start(
		&a->control, &a->loop,
		&(struct control_view){a, control_render, control_events_off, control_set_workers,
				       control_reload, control_upgrade, .reopen = control_reopen,
				       .stop = control_stop, .kill_worker = control_kill_worker,
				       .render_config = control_config});
	if (r < 0) {
		snprintf(err, errlen, "cannot register the control socket: %s", strerror(-r));
		return r;
	}
	notify_init(&a->notify, a->pid);
	if (a->upgrade.have_notify)
		notify_adopt(&a->notify, a->upgrade.notify_cookie, a->upgrade.notify_seq);
	r = setup_metrics(a, err, errlen);
	if (r == 0) {
		r = arbiter_bpf_setup(a, err, errlen);
		/* The probes of the state were taken, kept or let go (bpf.h): a rollback
		 * must not hand their fds on. */
		if (a->upgrade.bpf_state)
			upgrade_bpf_taken(a);
	}
	if (r < 0 && a->upgrade.rolled_back) {
		log_warn("%s; going on without it after the rollback", err);
		r = 0;
	}
	return r;
}

void arbiter_teardown(struct arbiter *a)
{
	if (a->upgrade.check.fd >= 0)
		close(a->upgrade.check.fd);
	arbiter_bpf_stop(a);	    /* a loader still running is killed, not waited for */
	free(a->upgrade.bpf_state); /* not taken: a set-up that failed before the probes */
	a->upgrade.bpf_state = NULL;
	reload_discard(a);
	if (a->config_src.fd >= 0)
		(void)loop_del(&a->loop, &a->config_src);
	config_read_free(&a->config_read); /* a reader still running gets SIGKILL */
	metrics_close(&a->metrics);
	retire_all_listeners(a); /* already done, unless setup failed half-way */
	control_close(&a->control);
	if (a->settings->pidfile && a->pid)
		remove_pidfile(a->settings->pidfile, a->pid);
	pool_free(&a->pool);
	serving_free(a->pool.serving);
	a->pool.serving = NULL;
	killable_free(a->killable);
	a->killable = NULL;
	notify_close(&a->notify); /* after the workers' sockets: it removes their directory */
	if (a->sigfd.fd > 0)
		close(a->sigfd.fd);
	if (a->timer.fd > 0)
		close(a->timer.fd);
	loop_fini(&a->loop);
	spawn_template_free(&a->tmpl);
	activation_free(&a->activation);
}
