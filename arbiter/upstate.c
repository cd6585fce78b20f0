/* The numbers of the upgrade state; see upstate.h. */
#include "upstate.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Every counter, by the name it has in the state. Append; never rename. */
static const struct {
	const char *name;
	size_t offset;
} counters[] = {
#define C(field)                                                                                   \
	{                                                                                          \
#field, offsetof(struct upstate_numbers, field)                                    \
	}
	C(spawned),	   C(spawn_errors),    C(exited),
	C(exited_clean),   C(exited_error),    C(exited_signal),
	C(killed),	   C(replaced),	       C(boot_failures_total),
	C(orphans_reaped), C(reloads),	       C(reload_failures),
	C(upgrades),	   C(upgrade_refused), C(upgrade_rollbacks),
	C(config_workers), C(scale_counted),   C(ttin_consumed),
	C(ttou_consumed),  C(scale_merged),
#undef C
};

#define N_COUNTERS (sizeof(counters) / sizeof(counters[0]))

static uint64_t *counter(struct upstate_numbers *n, size_t i)
{
	return (uint64_t *)((char *)n + counters[i].offset);
}

int upstate_write(FILE *f, const struct upstate_numbers *n)
{
	fprintf(f, "started %llu\n", (unsigned long long)n->started_ms);
	for (size_t i = 0; i < N_COUNTERS; i++)
		fprintf(f, "counter %s %llu\n", counters[i].name,
			(unsigned long long)*counter((struct upstate_numbers *)n, i));
	for (int sig = 1; sig < UPSTATE_SIGNALS; sig++)
		if (n->signals_received[sig] || n->signals_ignored[sig])
			fprintf(f, "signal %d %llu %llu\n", sig,
				(unsigned long long)n->signals_received[sig],
				(unsigned long long)n->signals_ignored[sig]);
	return ferror(f) ? -EIO : 0;
}

/* Version 1: the first 14 counters on one line, in the table's order, and the
 * rollbacks on a line of their own. */
static bool read_v1(const char *line, struct upstate_numbers *n)
{
	unsigned long long v[14];

	if (sscanf(line, "rollbacks %llu", &v[0]) == 1) {
		n->upgrade_rollbacks = v[0];
		return true;
	}
	if (sscanf(line,
		   "counters %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu "
		   "%llu",
		   &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10],
		   &v[11], &v[12], &v[13]) != 14)
		return false;
	for (size_t i = 0; i < 14; i++)
		*counter(n, i) = v[i];
	return true;
}

bool upstate_read_line(const char *line, struct upstate_numbers *n)
{
	char name[64];
	unsigned long long v, w;
	int sig;

	/* "counter " with its space: sscanf's " " would match none, and take v1's line */
	if (strncmp(line, "counter ", 8) == 0 && sscanf(line + 8, "%63s %llu", name, &v) == 2) {
		for (size_t i = 0; i < N_COUNTERS; i++)
			if (strcmp(name, counters[i].name) == 0)
				*counter(n, i) = v;
		return true; /* a counter of a newer image: skipped */
	}
	if (sscanf(line, "started %llu", &v) == 1) {
		n->started_ms = v;
		return true;
	}
	if (sscanf(line, "signal %d %llu %llu", &sig, &v, &w) == 3) {
		if (sig > 0 && sig < UPSTATE_SIGNALS) {
			n->signals_received[sig] = v;
			n->signals_ignored[sig] = w;
		}
		return true;
	}
	return read_v1(line, n);
}
