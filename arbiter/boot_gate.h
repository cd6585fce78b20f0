/* How many workers may boot on the CPUs at once. Starting a generation of 4,096 all at
 * once leaves hundreds of processes runnable, exec'ing and loading, and the arbiter one
 * of them: a `status` or a TERM waits its turn behind all of them (70-100 ms median,
 * 370 ms at worst on 2 CPUs, issue 29). So a worker holds a place from its start until
 * it is ready (or stops, or is gone), and no more than cap places are held: a new
 * worker starts when one is free.
 *
 * Only a worker that is using a CPU needs its place. One that waits (on I/O, a
 * database, a timer before its READY=1) costs the CPUs nothing, and holding it would
 * start a pool of slow-but-idle booters cap at a time. So a holder older than
 * BOOT_GATE_LOOK_MS (a fresh one is exec'ing and loading: always on the CPU) is looked
 * at in /proc/PID/stat when the places are full, and one not running gives its place
 * up. Looked at again every BOOT_GATE_LOOK_MS while the gate is closed (a booter may
 * start waiting at any time), never otherwise: an idle pool has no timer of it. Low
 * layer: it knows pids, /proc (descendants.h) and time. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define BOOT_GATE_MAX	  256
#define BOOT_GATE_LOOK_MS 10

struct boot_gate {
	unsigned cap; /* 0: no limit */
	unsigned n;
	struct {
		pid_t pid;
		uint64_t since_ms; /* when it started, or was last seen running */
	} held[BOOT_GATE_MAX];
	uint64_t next_look_ms; /* while closed: when to look again; 0 whenever n < cap */
	uint64_t released;     /* places given up by holders seen waiting */
};

/* The cap for this machine: four per CPU we may run on (sched_getaffinity), at least
 * 8, at most BOOT_GATE_MAX. */
unsigned boot_gate_default_cap(void);
void boot_gate_init(struct boot_gate *g, unsigned cap);

/* A worker started: it holds a place (a full gate, or no limit: not held). */
void boot_gate_enter(struct boot_gate *g, pid_t pid, uint64_t now);
/* It is ready, stopping or gone: its place is free. Not a holder: nothing. */
void boot_gate_leave(struct boot_gate *g, pid_t pid);
/* Whether another worker may start now: a place is free, or is made free by holders
 * seen waiting. Closed: boot_gate_deadline() says when to ask again. */
bool boot_gate_open(struct boot_gate *g, uint64_t now);
/* While closed, when to look at the holders again; 0 when open. */
uint64_t boot_gate_deadline(const struct boot_gate *g);
