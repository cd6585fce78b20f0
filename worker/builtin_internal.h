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
 *   boot.c        set-up from the environment, and teardown */
#pragma once

#include "builtin.h"
#include "sdnotify.h"

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

enum source_type {
	SOURCE_LISTENER,
	SOURCE_CONN,
	SOURCE_SIGNAL,
	SOURCE_SLEEP_TIMER,
	SOURCE_SWEEP_TIMER,
	SOURCE_WATCHDOG,
};

/* First member of everything registered with epoll. */
struct source {
	enum source_type type;
	int fd;
};

struct listener {
	struct source src;
	bool in_epoll;
	bool tcp;
};

enum conn_list_id {
	LIST_NONE, /* parked on the sleep heap: no idle timeout */
	LIST_IDLE,
	LIST_LINGER,
};

struct conn {
	struct source src; /* src.fd is -1 once closed */
	uint32_t events;   /* what is registered with epoll */
	bool parked;	   /* waiting for a /sleep deadline; input is not looked at meanwhile */
	bool want_close;   /* a Connection: close response is queued: no more requests */
	bool eof;	   /* the peer will send nothing more */
	bool lingering;	   /* write side shut down, discarding input until the peer closes */
	bool out_full;
	unsigned int responses; /* answered on this connection so far */
	uint64_t body_left;	/* request body bytes still to discard */
	size_t in_start, in_end;
	size_t out_start, out_end;

	/* the parked /sleep request */
	uint64_t sleep_deadline;
	size_t heap_index;
	unsigned int sleep_ms;
	bool sleep_head;
	bool sleep_keep_alive;

	/* position in the idle or linger list, both ordered by deadline */
	enum conn_list_id list;
	uint64_t deadline;
	struct conn *prev, *next;

	char in[IN_BUF_SIZE];
	char out[OUT_BUF_SIZE];
};

struct conn_list {
	struct conn *head, *tail;
};

struct worker {
	int epfd;
	struct source sigfd;
	struct source sleep_timer;
	struct source sweep_timer;
	struct source watchdog;

	struct listener *listeners;
	int n_listeners;
	bool listeners_paused; /* out of fds: listeners are out of epoll for a while */
	uint64_t accept_resume_at;
	uint64_t accept_error_logged_at;

	uint64_t now; /* CLOCK_MONOTONIC ns, read once per epoll_wait */
	size_t n_conns;
	struct conn_list idle, linger;
	struct conn *free_conns; /* linked through ->next */
	size_t n_free;
	struct conn *dead_conns; /* closed during this batch, recycled after it */

	/* parked /sleep connections, a binary min-heap on sleep_deadline */
	struct conn **heap;
	size_t heap_len, heap_cap;
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
int timer_set(int fd, uint64_t at);
void timer_drain(int fd);
int epoll_add(struct worker *w, struct source *src, uint32_t events);
bool error_log_allowed(struct worker *w);
void notify(struct worker *w, const char *msg);

/* conn.c */
void conn_accepted(struct worker *w, const struct listener *l, int fd);
void conn_event(struct worker *w, struct conn *c, uint32_t events);
void conn_run(struct worker *w, struct conn *c);
bool conn_is_idle(const struct conn *c);
void conn_respond(struct worker *w, struct conn *c, int status, bool head_only, bool keep_alive,
		  const char *body, size_t body_len, const char *extra);
void conn_respond_text(struct worker *w, struct conn *c, int status, bool head_only,
		       bool keep_alive, const char *body);
void conn_close(struct worker *w, struct conn *c);
void conns_recycle(struct worker *w);

/* timeouts.c */
void sweep_schedule(struct worker *w, uint64_t at);
void sweep_maybe_disarm(struct worker *w);
void list_unlink(struct worker *w, struct conn *c);
void list_append(struct worker *w, struct conn *c, enum conn_list_id id, uint64_t timeout);
size_t count_list(const struct conn_list *l);
void conn_touch(struct worker *w, struct conn *c);
void sweep_timer_fired(struct worker *w);

/* sleepheap.c */
void conn_park(struct worker *w, struct conn *c, unsigned int ms, bool head_only, bool keep_alive);
void heap_remove(struct worker *w, struct conn *c);
void sleep_timer_update(struct worker *w);
void sleep_timer_fired(struct worker *w);

/* accept.c */
void listeners_resume(struct worker *w);
bool listener_drain(struct worker *w, struct listener *l);
void listener_ready(struct worker *w, struct listener *l);

/* signalfd.c */
void signals_read(struct worker *w);

/* drain.c */
struct signalfd_siginfo;
void worker_drain(struct worker *w, const struct signalfd_siginfo *si);

/* boot.c */
int builtin_setup(struct worker *w, const sigset_t *mask);
void builtin_free(struct worker *w);
