/* What the files of the built-in worker share, and nothing else includes: the state struct,
 * the connection, the epoll sources and the functions one file calls in another.
 *
 *   builtin.c     the event loop, its dispatch, sd_notify and `sigvisor worker` itself
 *   conn.c        a connection: read, parse (shared/http.c), answer, flush, close
 *   timeouts.c    idle and lingering connections, and the sweep timer that closes them
 *   sleepheap.c   /sleep: connections parked on a heap of deadlines behind one timerfd
 *   accept.c      the listening sockets: accept, pause when out of fds, drain, retire
 *   signalfd.c    the signals: TERM (drain.c), QUIT and INT (exit now), USR1 (reopen the log)
 *   drain.c       TERM: take the listeners' queues, serve what is in flight, then exit
 *   boot.c        set-up from the environment, and teardown
 *
 * Every name here starts with bw_ (built-in worker), and every other function of these files
 * is static: the worker is linked into the one sigvisor binary with the arbiter, which has a
 * struct worker, a struct listener and a struct source of its own, and with libbpf and
 * liburing, so a generic global name (notify, epoll_add) would mislead a reader or a debugger,
 * or clash at link time. */
#pragma once

#include "builtin.h"
#include "heap.h"
#include "sdnotify.h"

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NSEC_PER_SEC  1000000000ULL
#define NSEC_PER_MSEC 1000000ULL

/* The input buffer holds a maximal head plus room to read pipelined requests behind it. */
#define IN_BUF_SIZE  (2 * HTTP_HEAD_MAX)
#define OUT_BUF_SIZE 8192

#define IDLE_TIMEOUT_NS	  (60 * NSEC_PER_SEC)
#define LINGER_TIMEOUT_NS (5 * NSEC_PER_SEC)
/* How long an idle keep-alive connection may still send one request after TERM, and how
 * long a connection closed after TERM lingers for the client's close. */
#define DRAIN_GRACE_NS (NSEC_PER_SEC)

enum bw_source_type {
	BW_SOURCE_LISTENER,
	BW_SOURCE_CONN,
	BW_SOURCE_SIGNAL,
	BW_SOURCE_SLEEP_TIMER,
	BW_SOURCE_SWEEP_TIMER,
	BW_SOURCE_WATCHDOG,
};

/* First member of everything registered with epoll. */
struct bw_source {
	enum bw_source_type type;
	int fd;
};

struct bw_listener {
	struct bw_source src;
	bool in_epoll;
	bool tcp;
};

enum bw_list_id {
	BW_LIST_NONE, /* parked on the sleep heap: no idle timeout */
	BW_LIST_IDLE,
	BW_LIST_LINGER,
};

struct bw_conn {
	struct bw_source src; /* src.fd is -1 once closed */
	uint32_t events;      /* what is registered with epoll */
	bool parked;	      /* waiting for a /sleep deadline; input is not looked at meanwhile */
	bool want_close;      /* a Connection: close response is queued: no more requests */
	bool eof;	      /* the peer will send nothing more */
	bool lingering;	      /* write side shut down, discarding input until the peer closes */
	bool out_full;
	unsigned int responses; /* answered on this connection so far */
	uint64_t body_left;	/* request body bytes still to discard */
	size_t in_start, in_end;
	size_t out_start, out_end;

	/* the parked /sleep request */
	uint64_t sleep_deadline;
	size_t heap_pos; /* on the worker's sleeping heap (shared/heap.h) */
	unsigned int sleep_ms;
	bool sleep_head;
	bool sleep_keep_alive;

	/* position in the idle or linger list, both ordered by deadline */
	enum bw_list_id list;
	uint64_t deadline;
	struct bw_conn *prev, *next;

	char in[IN_BUF_SIZE];
	char out[OUT_BUF_SIZE];
};

struct bw_conn_list {
	struct bw_conn *head, *tail;
};

struct bw_worker {
	int epfd;
	struct bw_source sigfd;
	struct bw_source sleep_timer;
	struct bw_source sweep_timer;
	struct bw_source watchdog;
	/* The arbiter's heartbeat slot (SIGVISOR_HEARTBEAT): where each watchdog tick
	 * writes the monotonic clock in ms instead of sending WATCHDOG=1. NULL: none. */
	volatile uint64_t *beat;

	struct bw_listener *listeners;
	int n_listeners;
	bool listeners_paused; /* out of fds: listeners are out of epoll for a while */
	uint64_t accept_resume_at;
	uint64_t accept_error_logged_at;

	uint64_t now; /* CLOCK_MONOTONIC ns, read once per epoll_wait */
	size_t n_conns;
	struct bw_conn_list idle, linger;
	struct bw_conn *free_conns; /* linked through ->next */
	size_t n_free;
	struct bw_conn *dead_conns; /* closed during this batch, recycled after it */

	/* parked /sleep connections, a min-heap on sleep_deadline */
	struct heap sleeping;
	uint64_t sleep_armed; /* absolute deadline the timerfd is armed for, 0 when not */
	uint64_t sweep_armed;

	bool draining;
	bool quit;
	const char *exit_reason;

	struct sd_notifier notifier;
	uint64_t notify_failed_at; /* when a failed send was last logged, 0 never */
	unsigned notify_failures;  /* since then */

	const char *log_file;
	unsigned long id, generation, arbiter_pid;
	char root_body[160];
	size_t root_body_len;
};

/* builtin.c */
int bw_timer_set(int fd, uint64_t at);
void bw_timer_drain(int fd);
int bw_epoll_add(struct bw_worker *w, struct bw_source *src, uint32_t events);
bool bw_error_log_allowed(struct bw_worker *w);
void bw_notify(struct bw_worker *w, const char *msg);
/* Write the time into the arbiter's heartbeat slot (w->beat must be set). */
void bw_heartbeat(struct bw_worker *w);

/* conn.c */
void bw_conn_accepted(struct bw_worker *w, const struct bw_listener *l, int fd);
void bw_conn_event(struct bw_worker *w, struct bw_conn *c, uint32_t events);
void bw_conn_run(struct bw_worker *w, struct bw_conn *c);
bool bw_conn_is_idle(const struct bw_conn *c);
void bw_conn_respond(struct bw_worker *w, struct bw_conn *c, int status, bool head_only,
		     bool keep_alive, const char *body, size_t body_len, const char *extra);
void bw_conn_respond_text(struct bw_worker *w, struct bw_conn *c, int status, bool head_only,
			  bool keep_alive, const char *body);
void bw_conn_close(struct bw_worker *w, struct bw_conn *c);
void bw_conns_recycle(struct bw_worker *w);

/* timeouts.c */
void bw_sweep_schedule(struct bw_worker *w, uint64_t at);
void bw_sweep_maybe_disarm(struct bw_worker *w);
void bw_list_unlink(struct bw_worker *w, struct bw_conn *c);
void bw_list_append(struct bw_worker *w, struct bw_conn *c, enum bw_list_id id, uint64_t timeout);
size_t bw_count_list(const struct bw_conn_list *l);
void bw_conn_touch(struct bw_worker *w, struct bw_conn *c);
void bw_sweep_timer_fired(struct bw_worker *w);

/* sleepheap.c */
void bw_conn_park(struct bw_worker *w, struct bw_conn *c, unsigned int ms, bool head_only,
		  bool keep_alive);
void bw_heap_remove(struct bw_worker *w, struct bw_conn *c);
void bw_sleep_timer_update(struct bw_worker *w);
void bw_sleep_timer_fired(struct bw_worker *w);

/* accept.c */
void bw_listeners_resume(struct bw_worker *w);
bool bw_listener_drain(struct bw_worker *w, struct bw_listener *l);
void bw_listener_ready(struct bw_worker *w, struct bw_listener *l);

/* signalfd.c */
void bw_signals_read(struct bw_worker *w);

/* drain.c */
struct signalfd_siginfo;
void bw_drain(struct bw_worker *w, const struct signalfd_siginfo *si);

/* boot.c */
int bw_setup(struct bw_worker *w, const sigset_t *mask);
void bw_free(struct bw_worker *w);
