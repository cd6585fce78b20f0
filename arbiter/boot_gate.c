/* See boot_gate.h. */
#include "boot_gate.h"

#include <sched.h>
#include <string.h>

#include "descendants.h"
#include "timeutil.h"

unsigned boot_gate_default_cap(void)
{
	cpu_set_t set;
	int cpus = 1;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		cpus = CPU_COUNT(&set);
	if (cpus * 4 < 8)
		return 8;
	return cpus * 4 > BOOT_GATE_MAX ? BOOT_GATE_MAX : (unsigned)cpus * 4;
}

void boot_gate_init(struct boot_gate *g, unsigned cap)
{
	memset(g, 0, sizeof(*g));
	g->cap = cap > BOOT_GATE_MAX ? BOOT_GATE_MAX : cap;
}

void boot_gate_enter(struct boot_gate *g, pid_t pid, uint64_t now)
{
	if (!g->cap || g->n >= g->cap)
		return;
	g->held[g->n].pid = pid;
	g->held[g->n].since_ms = now;
	g->n++;
}

static void drop(struct boot_gate *g, unsigned i)
{
	g->held[i] = g->held[--g->n];
	g->next_look_ms = 0; /* a place is free: nothing to look at until it is full */
}

void boot_gate_leave(struct boot_gate *g, pid_t pid)
{
	for (unsigned i = 0; i < g->n; i++)
		if (g->held[i].pid == pid) {
			drop(g, i);
			return;
		}
}

bool boot_gate_open(struct boot_gate *g, uint64_t now)
{
	uint64_t next = 0;

	if (!g->cap || g->n < g->cap)
		return true;
	if (g->next_look_ms > now)
		return false; /* looked at less than BOOT_GATE_LOOK_MS ago */
	for (unsigned i = 0; i < g->n;) {
		uint64_t due = g->held[i].since_ms + BOOT_GATE_LOOK_MS;
		int state;

		if (due > now) {
			next = earlier_deadline(next, due);
			i++;
			continue;
		}
		state = descendants_state(g->held[i].pid);
		/* Running or waiting for a CPU: it keeps its place. Anything else (asleep,
		 * in I/O, stopped, a zombie, gone) gives it up. */
		if (state == 'R') {
			g->held[i].since_ms = now;
			next = earlier_deadline(next, now + BOOT_GATE_LOOK_MS);
			i++;
			continue;
		}
		g->released++;
		drop(g, i);
	}
	if (g->n < g->cap)
		return true; /* drop() cleared next_look_ms */
	g->next_look_ms = next;
	return false;
}

uint64_t boot_gate_deadline(const struct boot_gate *g)
{
	return g->next_look_ms;
}
