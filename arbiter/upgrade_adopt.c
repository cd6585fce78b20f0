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

int upgrade_adopt_sockets(struct arbiter *a, int fd, char *err, size_t errlen)
{
	char *line = NULL;
	size_t cap = 0;
	FILE *f = upgrade_open_state(fd);
	struct upstate_numbers num = {0};
	bool magic = false;

	if (!f) {
		snprintf(err, errlen, "upgrade: cannot read the inherited state: %s",
			 strerror(errno));
		return -EIO;
	}
	/* getline: a control connection's unsent answer makes a line of any length */
	for (long off = ftell(f); getline(&line, &cap, f) > 0; off = ftell(f)) {
		char rest[4096];
		int n, sfd;

		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "bpf ", 4) == 0 || strncmp(line, "bpfwhy ", 7) == 0) {
			/* The probes, for arbiter_bpf_setup(): kept, or let go (bpf.h). */
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
		} else if (sscanf(line, STATE_MAGIC " %d", &n) == 1) {
			magic = n >= UPSTATE_OLDEST_READ && n <= UPSTATE_VERSION;
		} else if (upstate_outcome_read_line(line, "reload", &a->reload_outcomes) ||
			   upstate_outcome_read_line(line, "upgrade", &a->upgrade.outcomes) ||
			   upstate_read_line(line, &num)) {
			continue;
		} else if (strncmp(line, "controlconn ", 12) == 0) {
			if (!control_adopt_conn(&a->control, line + 12))
				log_warn("upgrade: a control connection was not handed over "
					 "right, closed it");
		} else if (sscanf(line, "listener %d %4095[^\n]", &sfd, rest) == 2 &&
			   a->n_adopted < MAX_BINDS) {
			(void)upgrade_set_cloexec(sfd, true);
			a->adopted[a->n_adopted].fd = sfd;
			a->adopted[a->n_adopted].spec = strdup(rest);
			a->n_adopted++;
		} else if (sscanf(line, "control %d %4095[^\n]", &sfd, rest) == 2) {
			(void)upgrade_set_cloexec(sfd, true);
			control_adopt(&a->control, sfd, rest);
		} else if (sscanf(line, "metrics %d %4095[^\n]", &sfd, rest) == 2 &&
			   a->upgrade.metrics_fd < 0) {
			(void)upgrade_set_cloexec(sfd, true);
			a->upgrade.metrics_fd = sfd;
			a->upgrade.metrics_spec = strdup(rest);
		} else if (sscanf(line, "notify %u %u", &a->upgrade.notify_cookie,
				  &a->upgrade.notify_seq) == 2) {
			a->upgrade.have_notify = true;
		}
	}
	free(line);
	fclose(f);
	if (!magic) {
		snprintf(err, errlen, "upgrade: the inherited state is not ours");
		return -EINVAL;
	}
	a->started_ms = num.started_ms;
	a->pool.spawned = num.spawned;
	a->pool.spawn_errors = num.spawn_errors;
	a->pool.exited = num.exited;
	a->pool.exited_clean = num.exited_clean;
	a->pool.exited_error = num.exited_error;
	a->pool.exited_signal = num.exited_signal;
	a->pool.exited_retired = num.exited_retired;
	a->pool.killed = num.killed;
	a->pool.replaced = num.replaced;
	a->pool.boot_failures_total = num.boot_failures_total;
	a->pool.orphans_reaped = num.orphans_reaped;
	a->pool.reloads = num.reloads;
	a->pool.reload_failures = num.reload_failures;
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
	char *line = NULL;
	size_t cap = 0;
	FILE *f = upgrade_open_state(fd);
	unsigned adopted = 0;

	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		unsigned id, gen, target, g, maxg;
		int pid, pidfd, state, watchdog, stop, notify = 0, nfd = -1;
		char nenv[96] = "-";
		unsigned long long started, deadline;
		struct worker *w;

		if (sscanf(line, "pool %u %u %u", &target, &g, &maxg) == 3) {
			p->target = target;
			p->generation = g;
			p->max_generation = maxg;
			continue;
		}
		if (sscanf(line, "worker %u %d %d %u %d %llu %llu %d %d %d %d %95s", &id, &pid,
			   &pidfd, &gen, &state, &started, &deadline, &watchdog, &stop, &notify,
			   &nfd, nenv) < 9 ||
		    state < 0 || state >= WORKER_EXITED)
			continue;
		w = calloc(1, sizeof(*w));
		if (!w || pool_adopt(p, w) < 0) {
			free(w);
			log_error("upgrade: out of memory adopting worker pid %d", pid);
			continue;
		}
		(void)upgrade_set_cloexec(pidfd, true);
		w->src.type = SOURCE_WORKER;
		w->src.fd = pidfd;
		w->id = id;
		w->pid = (pid_t)pid;
		w->generation = gen;
		w->state = (enum worker_state)state;
		w->started_ms = started;
		w->deadline_ms = deadline;
		w->watchdog = watchdog;
		w->stop_signal = stop;
		w->notify = notify;
		w->notify_src.type = SOURCE_NOTIFY;
		w->notify_src.fd = nfd;
		if (nfd >= 0)
			(void)upgrade_set_cloexec(nfd, true);
		snprintf(w->notify_env, sizeof(w->notify_env), "%s", strcmp(nenv, "-") ? nenv : "");
		if (loop_add(&a->loop, &w->src, LOOP_IN) < 0)
			log_warn("upgrade: cannot watch worker %u's pidfd", id);
		adopted++;
	}
	free(line);
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
