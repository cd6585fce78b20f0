// SPDX-License-Identifier: MIT
/*
 * sigbench_pool.c - `sigbench storm` and `sigbench scale`: signals that
 * resize the arbiter's pool. storm sends them as fast as it can and waits for
 * the pool to settle; scale sends TTIN, then TTOU, one step at a time and
 * times each step until the new worker is ready or the old one is reaped.
 */
#define _GNU_SOURCE
#include "sigbench.h"

#include <signal.h>
#include <stdio.h>
#include <unistd.h>

int cmd_storm(const struct opts *o)
{
	struct procwatch w;
	struct pids cur = {0}, prev = {0};
	int64_t t0, t1, deadline, gap = (int64_t)o->gap_us * 1000, last_change;
	long sent = 0, errs = 0, idx = 0;
	int cfd = open_children(o->pid);
	bool settled = false;

	if (cfd < 0 || read_children_stable(cfd, &prev) < 0) {
		say("cannot read the children of %d: %m", (int)o->pid);
		return 1;
	}
	if (pw_open(&w, o->pid) < 0)
		say("no process events (needs CAP_NET_ADMIN): forks and exits are not recorded");
	for (int i = 0; i < prev.n; i++)
		pw_track(&w, prev.v[i]);
	if (pin(o->cpu) < 0)
		return 1;
	t0 = now_ns();
	for (int r = 0; r < o->rounds; r++) {
		for (int k = 0; k < o->nsigs; k++, idx++) {
			if (gap) {
				int64_t due = t0 + idx * gap;

				while (now_ns() < due)
					cpu_relax();
			}
			if (kill(o->pid, o->sigs[k]) < 0)
				errs++;
			else
				sent++;
		}
	}
	t1 = now_ns();
	printf("storm_sent %ld\n", sent);
	sample("storm_send", t1 - t0);
	if (errs)
		say("%ld kill() calls failed", errs);
	/* Settled: no fork or exit under the arbiter and no change in its children for Q ms. */
	deadline = deadline_after(o->timeout);
	last_change = now_ns();
	for (;;) {
		int64_t t;

		if (pw_drain(&w))
			last_change = now_ns();
		if (read_children_stable(cfd, &cur) == 0 && cur.n != prev.n) {
			last_change = now_ns();
			pids_copy(&prev, &cur);
		}
		t = now_ns();
		if (t - last_change >= (int64_t)o->quiet_ms * 1000000) {
			settled = true;
			break;
		}
		if (t >= deadline) {
			say("the pool of %d was still changing %.1f s after the storm (%d "
			    "children)",
			    (int)o->pid, o->timeout, cur.n);
			fail("storm_settle");
			break;
		}
		if (!pid_alive(o->pid)) {
			say("the arbiter %d died during the storm", (int)o->pid);
			fail("storm_settle");
			break;
		}
		sleep_s(0.005);
	}
	if (w.fd >= 0)
		printf("storm_forks %d\nstorm_exits %d\n", w.forks, w.exits);
	pw_report(&w, "storm_exit", NULL);
	read_children_stable(cfd, &cur);
	printf("storm_final %d\n", cur.n);
	sample("storm_settle", last_change - t1);
	if (w.lost)
		printf("storm_events_lost %ld\n", w.lost);
	fflush(stdout);
	return settled ? 0 : 1;
}

int cmd_scale(const struct opts *o)
{
	struct pids before = {0}, cur = {0};
	struct sender snd = {0};
	int cfd = open_children(o->pid), fds_peak = 0, n;
	int top = (o->to - o->from) / 10 > 0 ? (o->to - o->from) / 10 : 1; /* the last 10% */
	int64_t t_all;

	if (cfd < 0 || sender_start(&snd, o->cpu) < 0 || pin(o->probe_cpu) < 0 ||
	    observer_policy() < 0)
		return 1;
	if (read_children_stable(cfd, &before) < 0 || before.n != o->from) {
		say("pid %d has %d workers, expected %d", (int)o->pid, before.n, o->from);
		fail("scale_up");
		return 1;
	}
	/* Sorted: each poll looks up every child in it (O(n log n), not O(n^2)). */
	pids_sort(&before);
	printf("fds_base %d\n", count_fds(o->pid));
	t_all = now_ns();
	for (n = o->from; n < o->to; n++) {
		int64_t deadline = deadline_after(o->timeout), t0 = 0, t_ready = 0;
		unsigned ticket = sender_send(&snd, o->pid, SIGTTIN);
		pid_t fresh = 0;

		while (now_ns() < deadline && !t_ready) {
			if (!fresh && read_children(cfd, &cur) == 0)
				for (int i = 0; i < cur.n && !fresh; i++)
					if (!pids_has_sorted(&before, cur.v[i]))
						fresh = cur.v[i];
			if (fresh && pid_ready(o, fresh))
				t_ready = now_ns();
			else
				cpu_relax();
		}
		if (sender_wait(&snd, ticket, deadline, &t0) < 0 || !t_ready) {
			say("TTIN at %d workers: %s within %.1f s", n,
			    fresh ? "the new worker never waited" : "no new worker", o->timeout);
			fail("scale_up");
			return 1;
		}
		sample(n >= o->to - top ? "scale_up_top" : "scale_up", t_ready - t0);
		pids_insert_sorted(&before, fresh);
	}
	sample("scale_up_total", now_ns() - t_all);
	/* The whole pool at the top: every worker alive, and how many fds that costs. */
	if (read_children_stable(cfd, &cur) < 0 || cur.n != o->to)
		say("at the top: %d children, expected %d", cur.n, o->to);
	printf("top_children %d\n", cur.n);
	fds_peak = count_fds(o->pid);
	printf("fds_peak %d\n", fds_peak);
	pids_copy(&before, &cur);
	t_all = now_ns();
	for (n = o->to; n > o->from; n--) {
		int64_t deadline = deadline_after(o->timeout), t0 = 0, t_done = 0;
		unsigned ticket = sender_send(&snd, o->pid, SIGTTOU);
		int gone = -1;

		while (now_ns() < deadline) {
			/* One reading of the children per poll, not a pid_reaped() per
			 * worker: the one missing from it, if reaped, is the one gone. */
			if (read_children(cfd, &cur) == 0 && cur.n == n - 1) {
				pids_sort(&cur);
				for (int i = 0; i < before.n && gone < 0; i++)
					if (!pids_has_sorted(&cur, before.v[i]) &&
					    pid_reaped(before.v[i]))
						gone = i;
				if (gone >= 0) {
					t_done = now_ns();
					break;
				}
			}
			cpu_relax();
		}
		if (sender_wait(&snd, ticket, deadline, &t0) < 0 || !t_done) {
			say("TTOU at %d workers: %s within %.1f s", n,
			    gone >= 0 ? "the pool did not shrink" : "no worker reaped", o->timeout);
			fail("scale_down");
			return 1;
		}
		sample(n > o->to - top ? "scale_down_top" : "scale_down", t_done - t0);
		before.v[gone] = before.v[--before.n];
	}
	sample("scale_down_total", now_ns() - t_all);
	sleep_s(0.5);
	read_children_stable(cfd, &cur);
	printf("end_children %d\nfds_end %d\n", cur.n, count_fds(o->pid));
	fflush(stdout);
	return 0;
}
