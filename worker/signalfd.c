/* Signals of the built-in worker, read from its signalfd: TERM drains (serve what is queued
 * and in flight, then exit; drain.c), QUIT and INT exit at once, USR1 reopens the log file,
 * WINCH asks whether it has a request in hand (the arbiter's --max-workers, before it
 * retires a worker: the answer is a STATUS= on the notify socket, so it costs nothing
 * per request, and nothing at all unless asked). */
#include "builtin_internal.h"
#include "log.h"
#include "signames.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <unistd.h>

static void log_reopen(struct bw_worker *w)
{
	int r;

	if (!w->log_file) {
		log_debug("SIGUSR1 without a log file, nothing to reopen");
		return;
	}
	r = log_open(w->log_file);
	if (r < 0) {
		errno = -r;
		log_error("reopening log file %s failed, keeping the old one: %m", w->log_file);
		return;
	}
	log_info("reopened log file %s", w->log_file);
}

/* Everything but /sleep is answered in the turn of the loop that read it: the requests
 * in hand between two turns are the parked ones. */
static void say_in_hand(struct bw_worker *w)
{
	char msg[64];

	if (!w->sleeping.n) {
		bw_notify(w, "STATUS=idle");
		return;
	}
	snprintf(msg, sizeof(msg), "STATUS=busy: %zu requests in hand", w->sleeping.n);
	bw_notify(w, msg);
}

void bw_signals_read(struct bw_worker *w)
{
	struct signalfd_siginfo si[8];

	for (;;) {
		ssize_t n = read(w->sigfd.fd, si, sizeof(si));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				log_warn("reading the signalfd failed, ignoring: %m");
			return;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(si[0]); i++) {
			switch (si[i].ssi_signo) {
			case SIGTERM:
				bw_drain(w, &si[i]);
				break;
			case SIGQUIT:
			case SIGINT:
				log_info("SIG%s from pid %u: exiting now",
					 signal_name((int)si[i].ssi_signo), si[i].ssi_pid);
				w->quit = true;
				w->exit_reason = "quick shutdown";
				break;
			case SIGUSR1:
				log_reopen(w);
				break;
			case SIGWINCH:
				say_in_hand(w);
				break;
			default:
				log_debug("signal %u from pid %u ignored", si[i].ssi_signo,
					  si[i].ssi_pid);
				break;
			}
		}
	}
}
