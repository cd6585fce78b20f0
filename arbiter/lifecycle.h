/* The worker lifecycle as a table of state x event -> (next state, actions), in the
 * manner of s6-supervise: every transition is visible here and testable without a
 * process. The pool carries out the actions.
 *
 *   booting --ready--> ready --stop--> stopping --deadline--> killing
 *      \                 \                 \                      \
 *       `-----------------`-----exited------`----------------------`--> exited
 */
#pragma once

enum worker_state {
	WORKER_BOOTING,	 /* started, READY=1 not seen yet */
	WORKER_READY,	 /* serving */
	WORKER_STOPPING, /* sent TERM or QUIT (or ABRT by the watchdog); deadline armed */
	WORKER_KILLING,	 /* deadline passed, sent KILL */
	WORKER_EXITED,	 /* reaped; the pool frees it after this loop iteration */
	WORKER_STATE_MAX,
};

enum worker_event {
	WEV_READY,     /* READY=1 arrived (or, without sd_notify, the worker started) */
	WEV_STOP_TERM, /* asked to stop gracefully */
	WEV_STOP_QUIT, /* asked to stop now */
	WEV_DEADLINE,  /* its deadline passed: ready timeout, watchdog, or graceful timeout */
	WEV_EXITED,    /* waitid() reaped it */
	WORKER_EVENT_MAX,
};

/* Actions, as bits: a transition may do several. */
#define WACT_SEND_TERM	    0x01u
#define WACT_SEND_QUIT	    0x02u
#define WACT_SEND_KILL	    0x04u
#define WACT_SEND_ABRT	    0x08u /* systemd's watchdog action */
#define WACT_ARM_STOP	    0x10u /* deadline = now + graceful timeout */
#define WACT_CLEAR_DEADLINE 0x20u
#define WACT_REPLACE	    0x40u /* it left unasked: start another in its slot */
#define WACT_BOOT_FAILED    0x80u /* it never became ready */

struct transition {
	enum worker_state next;
	unsigned actions;
};

struct transition worker_transition(enum worker_state state, enum worker_event event);

const char *worker_state_name(enum worker_state s);
const char *worker_event_name(enum worker_event e);
