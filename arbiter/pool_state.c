/* The pool's part of the upgrade state (upstate.h): its size and generations on a
 * "pool" line and each live worker on a "worker" line, written by the image that
 * execs and taken by the one that follows (or by the image rolled back to), which
 * watches the workers' pidfds again. The pool reads and writes its own lines; the
 * upgrade only says when. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pool.h"
#include "timeutil.h"

static void set_cloexec(int fd, bool on)
{
	(void)fcntl(fd, F_SETFD, on ? FD_CLOEXEC : 0);
}

int pool_state_write(const struct pool *p, FILE *f)
{
	fprintf(f, "pool %u %u %u\n", p->target, p->generation, p->max_generation);
	if (p->hb.fd >= 0)
		fprintf(f, "heartbeats %d\n", p->hb.fd);
	for (size_t i = 0; i < p->n; i++) {
		const struct worker *w = p->workers[i];

		if (!worker_is_alive(w))
			continue;
		/* The slot last: an image before heartbeats reads the line without it. */
		fprintf(f, "worker %u %d %d %u %d %llu %llu %d %d %d %d %s %d\n", w->id,
			(int)w->pid, w->src.fd, w->generation, (int)w->state,
			(unsigned long long)w->started_ms, (unsigned long long)w->deadline_ms,
			w->watchdog ? 1 : 0, w->stop_signal, w->notify ? 1 : 0, w->notify_src.fd,
			w->notify_env[0] ? w->notify_env : "-", w->hb_slot);
	}
	return ferror(f) ? -EIO : 0;
}

bool pool_worker_line(const char *line, struct pool_worker_line *w)
{
	*w = (struct pool_worker_line){.notify_fd = -1, .notify_env = "-", .hb_slot = -1};
	return sscanf(line, "worker %u %d %d %u %d %llu %llu %d %d %d %d %95s %d", &w->id, &w->pid,
		      &w->pidfd, &w->generation, &w->state, &w->started_ms, &w->deadline_ms,
		      &w->watchdog, &w->stop_signal, &w->notify, &w->notify_fd, w->notify_env,
		      &w->hb_slot) >= 9 &&
	       w->state >= 0 && w->state < WORKER_EXITED;
}

void pool_state_cloexec(const struct pool *p, bool on)
{
	for (size_t i = 0; i < p->n; i++) {
		const struct worker *w = p->workers[i];

		if (!worker_is_alive(w))
			continue;
		set_cloexec(w->src.fd, on);
		if (w->notify_src.fd >= 0)
			set_cloexec(w->notify_src.fd, on);
	}
	if (p->hb.fd >= 0)
		set_cloexec(p->hb.fd, on);
}

void pool_take_heartbeats_line(void *adopting, const char *line, long off)
{
	struct pool *p = ((struct pool_adopting *)adopting)->pool;
	int fd;

	(void)off;
	if (sscanf(line, "heartbeats %d", &fd) != 1 || fd < 0)
		return;
	p->hb_tried = true;
	if (!heartbeats_adopt(&p->hb, fd))
		log_warn("upgrade: cannot map the heartbeats of the workers adopted; their "
			 "--timeout is not watched until they are replaced");
}

void pool_take_pool_line(void *adopting, const char *line, long off)
{
	struct pool *p = ((struct pool_adopting *)adopting)->pool;
	unsigned target, g, maxg;

	(void)off;
	if (sscanf(line, "pool %u %u %u", &target, &g, &maxg) == 3) {
		p->target = target;
		p->generation = g;
		p->max_generation = maxg;
	}
}

void pool_take_worker_line(void *adopting, const char *line, long off)
{
	struct pool_adopting *ad = adopting;
	struct pool_worker_line l;
	struct worker *w;

	(void)off;
	if (!pool_worker_line(line, &l))
		return;
	w = calloc(1, sizeof(*w));
	if (!w || pool_adopt(ad->pool, w) < 0) {
		free(w);
		log_error("upgrade: out of memory adopting worker pid %d", l.pid);
		return;
	}
	set_cloexec(l.pidfd, true);
	w->src.type = SOURCE_WORKER;
	w->src.fd = l.pidfd;
	w->id = l.id;
	w->pid = (pid_t)l.pid;
	w->generation = l.generation;
	w->state = (enum worker_state)l.state;
	w->started_ms = l.started_ms;
	w->deadline_ms = l.deadline_ms;
	w->watchdog = l.watchdog;
	w->stop_signal = l.stop_signal;
	w->notify = l.notify;
	w->notify_src.type = SOURCE_NOTIFY;
	w->notify_src.fd = l.notify_fd;
	if (l.notify_fd >= 0)
		set_cloexec(l.notify_fd, true);
	snprintf(w->notify_env, sizeof(w->notify_env), "%s",
		 strcmp(l.notify_env, "-") ? l.notify_env : "");
	w->hb_slot = -1;
	if (l.hb_slot >= 0 && heartbeats_claim(&ad->pool->hb, l.hb_slot, w)) {
		w->hb_slot = l.hb_slot;
		/* Ready and beating: watched again, from now. */
		if (w->state == WORKER_READY && w->watchdog && ad->pool->cfg.timeout_ms)
			pool_heartbeat_watch(ad->pool, w, now_ms());
	}
	if (loop_add(ad->pool->loop, &w->src, LOOP_IN) < 0)
		log_warn("upgrade: cannot watch worker %u's pidfd", l.id);
	ad->adopted++;
}

void pool_keep_worker_line(void *unused, const char *line, long off)
{
	struct pool_worker_line w;

	(void)unused;
	(void)off;
	if (!pool_worker_line(line, &w))
		return;
	set_cloexec(w.pidfd, false);
	if (w.notify_fd >= 0)
		set_cloexec(w.notify_fd, false);
}
