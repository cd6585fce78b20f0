/* libFuzzer target: the one reader of the upgrade state (upstate_parse) with the parts
 * that are plain data, the numbers and the reload/upgrade outcome histories.
 *
 * The input is a whole upgrade state. Besides the sanitizers: every line is handed to
 * the part its first word names and to no other, and what was read, written back and
 * read again is the same (numbers and histories compared field by field). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upstate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_upstate: invariant failed: %s\n", what);
		abort();
	}
}

struct seen {
	struct upstate_numbers num;
	struct upstate_outcomes reload, upgrade;
	struct upstate_histories hist;
	unsigned workers;
};

/* A part whose lines must all start with "worker ": counts them. */
static void take_worker(void *ctx, const char *line, long off)
{
	check(strncmp(line, "worker", 6) == 0 && (line[6] == ' ' || line[6] == '\0'),
	      "a line goes to the part its first word names");
	check(off >= 0, "a line's offset");
	check(strchr(line, '\n') == NULL, "a line is given without its newline");
	((struct seen *)ctx)->workers++;
}

static int parse(FILE *f, struct seen *s)
{
	memset(s, 0, sizeof(*s));
	s->hist = (struct upstate_histories){&s->reload, &s->upgrade};
	const struct upstate_part parts[] = {
		UPSTATE_NUMBERS_PARTS(&s->num),
		{"outcome", upstate_outcomes_take, &s->hist},
		{"worker", take_worker, s},
	};
	return upstate_parse(f, parts, sizeof(parts) / sizeof(parts[0]));
}

static bool same_history(const struct upstate_outcomes *a, const struct upstate_outcomes *b)
{
	if (a->n != b->n)
		return false;
	for (unsigned i = 0; i < a->n; i++)
		if (a->o[i].id != b->o[i].id || a->o[i].generation != b->o[i].generation ||
		    a->o[i].reload != b->o[i].reload || strcmp(a->o[i].result, b->o[i].result) ||
		    strcmp(a->o[i].reason, b->o[i].reason))
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct seen first, again;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = fmemopen((void *)data, size, "r");
	int version, v2;

	if (!f || size == 0) {
		if (f)
			fclose(f);
		return 0;
	}
	version = parse(f, &first);
	fclose(f);
	check(version == -EINVAL || version == -ENOMEM ||
		      (version >= UPSTATE_OLDEST_READ && version <= UPSTATE_VERSION),
	      "the version is one this image reads, or an error");
	check(first.reload.n <= UPSTATE_OUTCOMES && first.upgrade.n <= UPSTATE_OUTCOMES,
	      "a history keeps at most UPSTATE_OUTCOMES");

	/* Written back as an image writes it, and read again: the same. */
	f = open_memstream(&buf, &len);
	check(f != NULL, "open_memstream");
	fprintf(f, "%s %d\n", UPSTATE_MAGIC, UPSTATE_VERSION);
	check(upstate_write(f, &first.num) == 0, "the numbers write");
	check(upstate_outcomes_write(f, "reload", &first.reload) == 0, "the reloads write");
	check(upstate_outcomes_write(f, "upgrade", &first.upgrade) == 0, "the upgrades write");
	check(fclose(f) == 0, "the state is written");
	f = fmemopen(buf, len, "r");
	check(f != NULL, "fmemopen");
	v2 = parse(f, &again);
	fclose(f);
	free(buf);
	check(v2 == UPSTATE_VERSION, "what this image writes, it reads");
	check(memcmp(&first.num, &again.num, sizeof(first.num)) == 0,
	      "the numbers read back the same");
	check(same_history(&first.reload, &again.reload), "the reloads read back the same");
	check(same_history(&first.upgrade, &again.upgrade), "the upgrades read back the same");
	check(again.workers == 0, "no worker line was written");
	return 0;
}
