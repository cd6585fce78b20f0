/* The worker lifecycle table; see lifecycle.h. */
#include "lifecycle.h"

/* The table reads as a table: */
/* clang-format off */
#define T(state, actions) {WORKER_##state, (actions)}

static const struct transition table[WORKER_STATE_MAX][WORKER_EVENT_MAX] = {
	[WORKER_BOOTING] = {
		[WEV_READY] = T(READY, WACT_CLEAR_DEADLINE),
		[WEV_STOP_TERM] = T(STOPPING, WACT_SEND_TERM | WACT_ARM_STOP),
		[WEV_STOP_QUIT] = T(STOPPING, WACT_SEND_QUIT | WACT_ARM_STOP),
		/* --ready-timeout passed: stop it the graceful way, the pool retries. */
		[WEV_DEADLINE] = T(STOPPING, WACT_SEND_TERM | WACT_ARM_STOP | WACT_BOOT_FAILED),
		[WEV_EXITED] = T(EXITED, WACT_REPLACE | WACT_BOOT_FAILED),
	},
	[WORKER_READY] = {
		[WEV_READY] = T(READY, 0),
		[WEV_STOP_TERM] = T(STOPPING, WACT_SEND_TERM | WACT_ARM_STOP),
		[WEV_STOP_QUIT] = T(STOPPING, WACT_SEND_QUIT | WACT_ARM_STOP),
		/* The watchdog (--timeout) fired: abort it like systemd, for a core dump. */
		[WEV_DEADLINE] = T(STOPPING, WACT_SEND_ABRT | WACT_ARM_STOP | WACT_REPLACE),
		[WEV_EXITED] = T(EXITED, WACT_REPLACE),
	},
	[WORKER_STOPPING] = {
		[WEV_READY] = T(STOPPING, 0),
		/* Exactly one TERM per worker: repeating it only races the worker's exit. */
		[WEV_STOP_TERM] = T(STOPPING, 0),
		/* Escalation from graceful to quick; the deadline stays where it was. */
		[WEV_STOP_QUIT] = T(STOPPING, WACT_SEND_QUIT),
		[WEV_DEADLINE] = T(KILLING, WACT_SEND_KILL | WACT_CLEAR_DEADLINE),
		[WEV_EXITED] = T(EXITED, 0),
	},
	[WORKER_KILLING] = {
		[WEV_READY] = T(KILLING, 0),
		[WEV_STOP_TERM] = T(KILLING, 0),
		[WEV_STOP_QUIT] = T(KILLING, 0),
		[WEV_DEADLINE] = T(KILLING, 0),
		[WEV_EXITED] = T(EXITED, 0),
	},
	[WORKER_EXITED] = {
		[WEV_READY] = T(EXITED, 0),
		[WEV_STOP_TERM] = T(EXITED, 0),
		[WEV_STOP_QUIT] = T(EXITED, 0),
		[WEV_DEADLINE] = T(EXITED, 0),
		[WEV_EXITED] = T(EXITED, 0),
	},
};

/* clang-format on */

struct transition worker_transition(enum worker_state state, enum worker_event event)
{
	return table[state][event];
}

const char *worker_state_name(enum worker_state s)
{
	static const char *const names[] = {
		[WORKER_BOOTING] = "booting",	[WORKER_READY] = "ready",
		[WORKER_STOPPING] = "stopping", [WORKER_KILLING] = "killing",
		[WORKER_EXITED] = "exited",
	};
	return s < WORKER_STATE_MAX ? names[s] : "?";
}

const char *worker_event_name(enum worker_event e)
{
	static const char *const names[] = {
		[WEV_READY] = "ready",	       [WEV_STOP_TERM] = "stop-term",
		[WEV_STOP_QUIT] = "stop-quit", [WEV_DEADLINE] = "deadline",
		[WEV_EXITED] = "exited",
	};
	return e < WORKER_EVENT_MAX ? names[e] : "?";
}
