/* The built-in HTTP worker: what every worker runs when sigvisor is started without COMMAND.
 *
 * One process, one thread, one epoll, no signal handlers: TERM, QUIT, INT, USR1, HUP and PIPE
 * are blocked and read from a signalfd. The sockets come from the arbiter the systemd way
 * (LISTEN_FDS) and are shared by every worker, hence EPOLLEXCLUSIVE. HTTP/1.1 with keep-alive
 * and pipelining, GET and HEAD only, three routes (/, /healthz, /sleep?ms=N). /sleep parks the
 * connection on a heap of deadlines behind one timerfd instead of blocking, so the worker keeps
 * serving everyone else.
 *
 * Every object registered with epoll starts with a struct bw_source, whose type tag picks the
 * handler. Connections are never freed inside an epoll batch (a later event of the same batch
 * may still point at them); they go on a dead list that is recycled after the batch.
 *
 * When idle (no connections, no watchdog) the worker arms no timer and never wakes up.
 *
 * This file holds the loop, the helpers every part uses, and `sigvisor worker` itself; the
 * parts are listed in builtin_internal.h. */
#include "builtin.h"
#include "builtin_internal.h"
#include "log.h"
#include "sdnotify.h"
#include "timeutil.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define EXIT_BOOT_FAILURE 3

#define MAX_EVENTS	      128
#define ERROR_LOG_INTERVAL_NS (1 * NSEC_PER_SEC)

/* Arm fd for the absolute CLOCK_MONOTONIC time at; 0 disarms. */
int bw_timer_set(int fd, uint64_t at)
{
	struct itimerspec its = {0};

	its.it_value.tv_sec = (time_t)(at / NSEC_PER_SEC);
	its.it_value.tv_nsec = (long)(at % NSEC_PER_SEC);
	if (timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		return -errno;
	return 0;
}

void bw_timer_drain(int fd)
{
	uint64_t ticks;

	/* EAGAIN is fine: the timer may have been re-armed since it fired. */
	if (read(fd, &ticks, sizeof(ticks)) < 0) {
	}
}

int bw_epoll_add(struct bw_worker *w, struct bw_source *src, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = src};

	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, src->fd, &ev) < 0)
		return -errno;
	return 0;
}

/* Errors a client can cause at any rate: log at most one a second. */
bool bw_error_log_allowed(struct bw_worker *w)
{
	if (w->accept_error_logged_at && w->now - w->accept_error_logged_at < ERROR_LOG_INTERVAL_NS)
		return false;
	w->accept_error_logged_at = w->now;
	return true;
}

void bw_notify(struct bw_worker *w, const char *msg)
{
	int r = sd_notifier_send(&w->notifier, msg);

	if (r == 0)
		return;
	/* A lost message is not a reason to stop serving: the next WATCHDOG=1 comes half
	 * a timeout later (a second chance before the arbiter's deadline), and the
	 * arbiter treats a worker that never notifies as ready once started. Said once
	 * a minute at most, with the count. */
	w->notify_failures++;
	if (w->notify_failed_at && w->now - w->notify_failed_at < 60 * NSEC_PER_SEC)
		return;
	log_warn("sending %s to NOTIFY_SOCKET failed: %s; trying again with the next message "
		 "(%u failed since this was last said)",
		 msg, strerror(-r), w->notify_failures);
	w->notify_failed_at = w->now ? w->now : 1;
	w->notify_failures = 0;
}

static void watchdog_fired(struct bw_worker *w)
{
	bw_timer_drain(w->watchdog.fd);
	if (w->beat)
		bw_heartbeat(w);
	else
		bw_notify(w, "WATCHDOG=1");
}

static int worker_loop(struct bw_worker *w)
{
	struct epoll_event events[MAX_EVENTS];

	while (!w->quit) {
		int n;

		if (w->draining && w->n_conns == 0) {
			w->exit_reason = "graceful shutdown complete";
			break;
		}
		/* Lines the log did not take yet (a stalled reader, log.h): try again
		 * every LOG_RETRY_MS while there are any, never wait on them. */
		log_flush();
		n = epoll_wait(w->epfd, events, MAX_EVENTS, log_pending() ? LOG_RETRY_MS : -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error("epoll_wait failed: %m");
			return 1;
		}
		w->now = now_ns();
		for (int i = 0; i < n && !w->quit; i++) {
			struct bw_source *src = events[i].data.ptr;

			switch (src->type) {
			case BW_SOURCE_LISTENER:
				if (src->fd >= 0)
					bw_listener_ready(w, (struct bw_listener *)src);
				break;
			case BW_SOURCE_CONN:
				bw_conn_event(w, (struct bw_conn *)src, events[i].events);
				break;
			case BW_SOURCE_SIGNAL:
				bw_signals_read(w);
				break;
			case BW_SOURCE_SLEEP_TIMER:
				bw_sleep_timer_fired(w);
				break;
			case BW_SOURCE_SWEEP_TIMER:
				bw_sweep_timer_fired(w);
				break;
			case BW_SOURCE_WATCHDOG:
				watchdog_fired(w);
				break;
			}
		}
		bw_conns_recycle(w);
	}
	return 0;
}

/* Named as nginx names its workers: the arbiter exec'd us as {"sigvisor: worker 0 (gen
 * 1)", "worker"} through /proc/self/exe, which would make our comm "exe" (ps -o comm, ss
 * -p, the probes' events). The comm takes 15 bytes and is one word for the tools that
 * split on blanks: "sigvisor-w4095" at most; the generation is in the title. The
 * "worker" word main() dispatched on is blanked, so ps shows the title alone. */
static void name_self(int argc, char **argv)
{
	const char *id = getenv("SIGVISOR_WORKER_ID");
	char comm[32];

	snprintf(comm, sizeof(comm), "sigvisor-w%s", id ? id : "?");
	(void)prctl(PR_SET_NAME, comm, 0, 0, 0);
	if (argc > 1 && strncmp(argv[0], "sigvisor: ", 10) == 0)
		memset(argv[1], 0, strlen(argv[1]));
}

int builtin_worker_main(int argc, char **argv)
{
	struct bw_worker w = {
		.epfd = -1,
		.sigfd.fd = -1,
		.sleep_timer.fd = -1,
		.sweep_timer.fd = -1,
		.watchdog.fd = -1,
		.notifier.fd = -1,
		.exit_reason = "unknown",
		.sleeping = HEAP_INIT(struct bw_conn, sleep_deadline, heap_pos),
	};
	sigset_t mask;
	int r;

	name_self(argc, argv);
	log_setup("worker", LOG_FORMAT_TEXT, LOG_LEVEL_INFO);
	log_nonblocking(); /* a stalled log reader must not keep a worker from serving */

	/* First thing, so a TERM that arrives while booting waits in the signalfd instead of
	 * killing us with the default action. PIPE is blocked too, although every send uses
	 * MSG_NOSIGNAL, so nothing the libc does behind our back can kill the worker. USR2,
	 * WINCH, TTIN and TTOU mean something to the arbiter only: one sent to a worker by
	 * mistake (`kill -USR2` on the wrong pid) is read and ignored, where its default
	 * action would kill (USR2) or stop (TTIN, TTOU) the worker. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGQUIT);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGPIPE);
	sigaddset(&mask, SIGUSR2);
	sigaddset(&mask, SIGWINCH);
	sigaddset(&mask, SIGTTIN);
	sigaddset(&mask, SIGTTOU);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
		log_error("blocking signals failed: %m");
		return EXIT_BOOT_FAILURE;
	}

	r = bw_setup(&w, &mask);
	if (r < 0) {
		bw_free(&w);
		return EXIT_BOOT_FAILURE;
	}

	log_info("worker %lu (generation %lu) serving on %d sockets", w.id, w.generation,
		 w.n_listeners);
	log_debug("arbiter pid %lu", w.arbiter_pid);
	bw_notify(&w, "READY=1");

	/* From here on nothing a client or the system does may end the loop except a
	 * signal: errors are logged and the worker carries on. */
	w.now = now_ns();
	r = worker_loop(&w);

	log_info("worker %lu (generation %lu) exiting: %s", w.id, w.generation,
		 r == 0 ? w.exit_reason : "fatal error");
	bw_free(&w);
	log_flush_for(LOG_EXIT_FLUSH_MS);
	return r;
}
