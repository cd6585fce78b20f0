/* The numbers of the upgrade state; see upstate.h. */
#include "upstate.h"

#include <errno.h>
#include <stdio.h>
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
/* The pool's, by their own names. */
#define P(field)                                                                                   \
	{                                                                                          \
#field, offsetof(struct upstate_numbers, pool.field)                               \
	}
	P(spawned),
	P(spawn_errors),
	P(exited),
	P(exited_clean),
	P(exited_error),
	P(exited_signal),
	P(killed),
	P(replaced),
	P(boot_failures_total),
	P(orphans_reaped),
	P(reloads),
	P(reload_failures),
	C(upgrades),
	C(upgrade_refused),
	C(upgrade_rollbacks),
	/* New names go last: version 1's line is the first 14, by position. */
	C(config_workers),
	P(exited_retired),
	C(reload_seq),
	C(upgrade_seq),
	C(scale_counted),
	C(ttin_consumed),
	C(ttou_consumed),
	C(scale_merged),
#undef C
#undef P
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

void upstate_outcome_push(struct upstate_outcomes *h, uint64_t id, const char *result,
			  const char *reason, uint64_t generation, uint64_t reload)
{
	struct upstate_outcome *o;

	if (h->n == UPSTATE_OUTCOMES) {
		memmove(&h->o[0], &h->o[1], sizeof(h->o[0]) * (UPSTATE_OUTCOMES - 1));
		h->n--;
	}
	o = &h->o[h->n++];
	memset(o, 0, sizeof(*o));
	o->id = id;
	o->generation = generation;
	o->reload = reload;
	snprintf(o->result, sizeof(o->result), "%s", result);
	snprintf(o->reason, sizeof(o->reason), "%s", reason ? reason : "");
	for (char *c = o->result; *c; c++)
		if (*c <= ' ' || *c >= 0x7f)
			*c = '-'; /* one word on the state's line */
	for (char *c = o->reason; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
}

const struct upstate_outcome *upstate_outcome_find(const struct upstate_outcomes *h, uint64_t id)
{
	for (unsigned i = 0; i < h->n; i++)
		if (h->o[i].id == id)
			return &h->o[i];
	return NULL;
}

int upstate_outcomes_write(FILE *f, const char *kind, const struct upstate_outcomes *h)
{
	for (unsigned i = 0; i < h->n; i++) {
		const struct upstate_outcome *o = &h->o[i];

		fprintf(f, "outcome %s %llu %llu %llu %s %s\n", kind, (unsigned long long)o->id,
			(unsigned long long)o->generation, (unsigned long long)o->reload, o->result,
			o->reason);
	}
	return ferror(f) ? -EIO : 0;
}

bool upstate_outcome_read_line(const char *line, const char *kind, struct upstate_outcomes *h)
{
	size_t k = strlen(kind);
	unsigned long long id, gen, reload;
	char result[24];
	int end = 0;

	if (strncmp(line, "outcome ", 8) != 0 || strncmp(line + 8, kind, k) != 0 ||
	    line[8 + k] != ' ')
		return false;
	if (sscanf(line + 9 + k, "%llu %llu %llu %23s%n", &id, &gen, &reload, result, &end) == 4 &&
	    end > 0)
		upstate_outcome_push(h, id, result, line + 9 + k + end + (line[9 + k + end] == ' '),
				     gen, reload);
	return true;
}

void upstate_numbers_take(void *numbers, const char *line, long off)
{
	(void)off;
	(void)upstate_read_line(line, numbers);
}

void upstate_outcomes_take(void *histories, const char *line, long off)
{
	struct upstate_histories *h = histories;

	(void)off;
	if (!upstate_outcome_read_line(line, "reload", h->reload))
		(void)upstate_outcome_read_line(line, "upgrade", h->upgrade);
}

int upstate_parse(FILE *f, const struct upstate_part *parts, size_t n)
{
	char *line = NULL;
	size_t cap = 0;
	int version = -EINVAL;
	ssize_t len;

	for (long off = ftell(f); (len = getline(&line, &cap, f)) > 0; off = ftell(f)) {
		size_t key;
		int v;

		line[strcspn(line, "\n")] = '\0';
		key = strcspn(line, " ");
		if (key == strlen(UPSTATE_MAGIC) && strncmp(line, UPSTATE_MAGIC, key) == 0) {
			if (sscanf(line + key, " %d", &v) == 1 && v >= UPSTATE_OLDEST_READ &&
			    v <= UPSTATE_VERSION)
				version = v;
			continue;
		}
		for (size_t i = 0; i < n; i++)
			if (strlen(parts[i].key) == key && strncmp(line, parts[i].key, key) == 0) {
				parts[i].take(parts[i].ctx, line, off);
				break;
			}
	}
	if (!feof(f) && ferror(f) && errno == ENOMEM)
		version = -ENOMEM;
	free(line);
	return version;
}
