/* USR2, the new image's side: it takes over what the previous one handed over in the
 * upgrade state (upgrade.c writes it): the sockets, the probes, the running workers and
 * the numbers. A rolled-back image reads the same state the same way. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arbiter.h"
#include "log.h"
#include "upgrade_internal.h"
#include "upstate.h"

/* The probes' lines, for arbiter_bpf_setup(): kept, or let go (bpf.h). */
static void take_bpf(void *ctx, const char *line, long off)
{
	struct arbiter *a = ctx;
	size_t have = a->upgrade.bpf_state ? strlen(a->upgrade.bpf_state) : 0;
	char *more = realloc(a->upgrade.bpf_state, have + strlen(line) + 2);

	if (line[3] == ' ') {
		bpf_handover_cloexec(line, true);
		a->upgrade.bpf_state_off = off;
	}
	if (more) {
		sprintf(more + have, "%s\n", line);
		a->upgrade.bpf_state = more;
	}
}

static void take_control_conn(void *ctx, const char *line, long off)
{
	struct arbiter *a = ctx;

	(void)off;
	if (!control_adopt_conn(&a->control, line + strlen("controlconn ")))
		log_warn("upgrade: a control connection was not handed over right, closed it");
}

static void take_listener(void *ctx, const char *line, long off)
{
	struct arbiter *a = ctx;
	char spec[4096];
	int sfd;

	(void)off;
	if (sscanf(line, "listener %d %4095[^\n]", &sfd, spec) != 2 || a->n_adopted >= MAX_BINDS)
		return;
	(void)upgrade_set_cloexec(sfd, true);
	a->adopted[a->n_adopted].fd = sfd;
	a->adopted[a->n_adopted].spec = strdup(spec);
	a->n_adopted++;
}

static void take_control(void *ctx, const char *line, long off)
{
	struct arbiter *a = ctx;
	char path[4096];
	int sfd;

	(void)off;
	if (sscanf(line, "control %d %4095[^\n]", &sfd, path) != 2)
		return;
	(void)upgrade_set_cloexec(sfd, true);
	control_adopt(&a->control, sfd, path);
}

static void take_metrics(void *ctx, const char *line, long off)
{
	struct arbiter *a = ctx;
	char spec[4096];
	int sfd;

	(void)off;
	if (sscanf(line, "metrics %d %4095[^\n]", &sfd, spec) != 2 || a->upgrade.metrics_fd >= 0)
		return;
	(void)upgrade_set_cloexec(sfd, true);
	a->upgrade.metrics_fd = sfd;
	a->upgrade.metrics_spec = strdup(spec);
}

static void take_notify(void *ctx, const char *line, long off)
{
	struct arbiter *a = ctx;

	(void)off;
	if (sscanf(line, "notify %u %u", &a->upgrade.notify_cookie, &a->upgrade.notify_seq) == 2)
		a->upgrade.have_notify = true;
}

int upgrade_adopt_sockets(struct arbiter *a, int fd, char *err, size_t errlen)
{
	FILE *f = upgrade_open_state(fd);
	struct upstate_numbers num = {0};
	struct upstate_histories hist = {&a->reload_outcomes, &a->upgrade.outcomes};
	const struct upstate_part parts[] = {
		UPSTATE_NUMBERS_PARTS(&num),
		{"outcome", upstate_outcomes_take, &hist},
		{"bpf", take_bpf, a},
		{"bpfwhy", take_bpf, a},
		{"controlconn", take_control_conn, a},
		{"listener", take_listener, a},
		{"control", take_control, a},
		{"metrics", take_metrics, a},
		{"notify", take_notify, a},
	};
	int version;

	if (!f) {
		snprintf(err, errlen, "upgrade: cannot read the inherited state: %s",
			 strerror(errno));
		return -EIO;
	}
	version = upstate_parse(f, parts, sizeof(parts) / sizeof(parts[0]));
	fclose(f);
	if (version < 0) {
		snprintf(err, errlen, "upgrade: the inherited state is not ours");
		return -EINVAL;
	}
	a->started_ms = num.started_ms;
	a->pool.counters = num.pool;
	a->upgrade.upgrades = (unsigned long)num.upgrades;
	a->upgrade.refused = (unsigned long)num.upgrade_refused;
	a->upgrade.rollbacks = (unsigned long)num.upgrade_rollbacks;
	a->upgrade.config_workers = (unsigned)num.config_workers;
	a->reload_seq = num.reload_seq;
	a->upgrade.seq = num.upgrade_seq;
	a->scale.inherited = num.scale_counted == 1;
	a->scale.consumed[0] = num.ttin_consumed;
	a->scale.consumed[1] = num.ttou_consumed;
	a->scale.merged = num.scale_merged;
	memcpy(a->signals_received, num.signals_received, sizeof(num.signals_received));
	memcpy(a->signals_ignored, num.signals_ignored, sizeof(num.signals_ignored));
	if (a->upgrade.rolled_back) {
		/* The exec counted as an upgrade in the state; it was undone. */
		if (a->upgrade.upgrades)
			a->upgrade.upgrades--;
		a->upgrade.rollbacks++;
	}
	return 0;
}

void upgrade_bpf_taken(struct arbiter *a)
{
	/* "bpf " -> "#pf ": skipped by every image from now on. */
	if (a->upgrade_fd >= 0 && a->upgrade.bpf_state_off >= 0)
		(void)!pwrite(a->upgrade_fd, "#", 1, a->upgrade.bpf_state_off);
	free(a->upgrade.bpf_state);
	a->upgrade.bpf_state = NULL;
	a->upgrade.bpf_state_off = -1;
}

int upgrade_adopt_workers(struct arbiter *a, int fd)
{
	struct pool *p = &a->pool;
	FILE *f = upgrade_open_state(fd);
	struct pool_adopting ad = {.pool = p};
	const struct upstate_part parts[] = {
		{"pool", pool_take_pool_line, &ad},
		{"heartbeats", pool_take_heartbeats_line, &ad},
		{"worker", pool_take_worker_line, &ad},
	};
	unsigned adopted;

	if (!f)
		return -errno;
	(void)upstate_parse(f, parts, sizeof(parts) / sizeof(parts[0]));
	adopted = ad.adopted;
	fclose(f);
	close(fd);
	if (a->upgrade.rolled_back) {
		upgrade_outcome(a, "rolled-back", a->upgrade.rollback_why, 0);
		log_error("upgrade failed, rolled back: %s; resumed with %u workers of generation "
			  "%u, still running the old binary (pid %d)",
			  a->upgrade.rollback_why, adopted, p->generation, (int)getpid());
		if (a->upgrade.settings_kept)
			log_info("upgrade: resumed with the settings this image had before the "
				 "exec, handed over in the state%s%s%s",
				 a->settings->config ? "; the config file " : "",
				 a->settings->config ? a->settings->config : "",
				 a->settings->config ? " was not read again (a HUP reads it)" : "");
	} else {
		/* arbiter_main starts the new generation's reload next, numbered after the
		 * last: `sigvisor upgrade` waits for that one too. */
		upgrade_outcome(a, "ok", NULL, a->reload_seq + 1);
		log_info("upgraded in place: adopted %u workers of generation %u", adopted,
			 p->generation);
	}
	control_after_upgrade(&a->control);
	/* A worker may have exited between the old image's last look and now. */
	for (size_t i = 0; i < p->n; i++)
		pool_reap_worker(p, p->workers[i]);
	return 0;
}
