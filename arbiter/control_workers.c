/* The client of `sigvisor workers [N|+K|-K] [--json] [--control PATH] [--timeout S]`:
 * shows the pool, or asks the arbiter for a new target and then watches the pool reach
 * it. The arbiter answers the change at once (control_cmd.c, scale.c); the waiting is
 * ours, by asking "status json" every WATCH_POLL_MS until the current generation has
 * exactly the target's ready workers and none booting or stopping, all within the one
 * deadline (--timeout) the connecting shares. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "control_internal.h"
#include "exitstatus.h"
#include "options.h"
#include "timeutil.h"

#define WATCH_POLL_MS 25
#define NAME	      "sigvisor workers"

bool control_parse_pool(const char *j, struct pool_seen *s)
{
	const char *p = strstr(j, "\"state\":\""), *end;

	memset(s, 0, sizeof(*s));
	if (!p || sscanf(p, "\"state\":\"%31[a-z-]\"", s->state) != 1)
		return false;
	p = strstr(j, "\"generation\":");
	if (!p || sscanf(p, "\"generation\":%u,\"target\":%u", &s->generation, &s->target) != 2)
		return false;
	p = strstr(p, "\"workers\":[");
	end = p ? strstr(p, "],\"listeners\":") : NULL;
	if (!p || !end)
		return false;
	while ((p = strstr(p, "{\"id\":")) && p < end && s->n < sizeof(s->w) / sizeof(s->w[0])) {
		struct worker_seen *w = &s->w[s->n];

		if (sscanf(p, "{\"id\":%u,\"pid\":%d,\"generation\":%u,\"state\":\"%15[a-z]\"",
			   &w->id, &w->pid, &w->generation, w->state) != 4)
			return false;
		s->n++;
		p++;
		if (w->generation != s->generation)
			continue;
		if (strcmp(w->state, "ready") == 0)
			s->ready++;
		else if (strcmp(w->state, "booting") == 0)
			s->booting++;
		else if (strcmp(w->state, "stopping") == 0 || strcmp(w->state, "killing") == 0)
			s->stopping++;
	}
	return true;
}

static bool get_pool(const char *control, char *path, size_t len, struct pool_seen *s)
{
	char *j = control_client_request(control, path, len, "status json\n");
	bool ok = j && control_parse_pool(j, s);

	if (j && !ok)
		fprintf(stderr, NAME ": %s: %s", path,
			strncmp(j, "error:", 6) == 0 ? j : "the status answer does not parse\n");
	free(j);
	return ok;
}

static void print_pool(const struct pool_seen *s, bool json)
{
	if (!json) {
		printf("target %u, ready %u, booting %u, stopping %u (generation %u, %s)\n",
		       s->target, s->ready, s->booting, s->stopping, s->generation, s->state);
		printf("  %-4s %-8s %-4s %s\n", "ID", "PID", "GEN", "STATE");
		for (size_t i = 0; i < s->n; i++)
			printf("  %-4u %-8d %-4u %s\n", s->w[i].id, s->w[i].pid, s->w[i].generation,
			       s->w[i].state);
		return;
	}
	printf("{\"state\":\"%s\",\"target\":%u,\"ready\":%u,\"booting\":%u,\"stopping\":%u,"
	       "\"generation\":%u,\"workers\":[",
	       s->state, s->target, s->ready, s->booting, s->stopping, s->generation);
	for (size_t i = 0; i < s->n; i++)
		printf("%s{\"id\":%u,\"pid\":%d,\"generation\":%u,\"state\":\"%s\"}", i ? "," : "",
		       s->w[i].id, s->w[i].pid, s->w[i].generation, s->w[i].state);
	printf("]}\n");
}

/* The outcome of a change, one line for people or one JSON object. reason is plain
 * text without quotes or backslashes (ours, or the arbiter's refusal made so). */
static int outcome(bool json, const char *result, int previous, int target,
		   const struct pool_seen *s, uint64_t waited, const char *reason);

static int timed_out(bool json, uint64_t timeout_ms, int previous, int target,
		     const struct pool_seen *s, uint64_t waited)
{
	char why[256];

	snprintf(why, sizeof(why),
		 "timed out after %.1f s: target %d, %u ready, %u booting, %u stopping "
		 "(generation %u; --timeout changes the wait)",
		 (double)timeout_ms / 1000.0, target, s->ready, s->booting, s->stopping,
		 s->generation);
	return outcome(json, "timeout", previous, target, s, waited, why);
}

static int outcome(bool json, const char *result, int previous, int target,
		   const struct pool_seen *s, uint64_t waited, const char *reason)
{
	bool ok = strcmp(result, "ok") == 0;

	if (json) {
		printf("{\"ok\":%s,\"result\":\"%s\"", ok ? "true" : "false", result);
		if (previous >= 0)
			printf(",\"previous\":%d", previous);
		if (target >= 0)
			printf(",\"target\":%d", target);
		if (s)
			printf(",\"ready\":%u,\"booting\":%u,\"stopping\":%u,\"generation\":%u",
			       s->ready, s->booting, s->stopping, s->generation);
		printf(",\"waited_ms\":%llu", (unsigned long long)waited);
		if (reason) {
			printf(",\"reason\":\"");
			for (const char *c = reason; *c && *c != '\n'; c++)
				putchar(*c == '"' || *c == '\\' || *c < 0x20 ? '?' : *c);
			printf("\"");
		}
		printf("}\n");
	} else if (ok) {
		printf("pool at %d workers (was %d), all ready, in %.2f s\n", target, previous,
		       (double)waited / 1000.0);
	}
	if (!ok)
		fprintf(stderr, NAME ": %s\n", reason);
	return ok ? EXIT_OK : EXIT_FATAL;
}

static int usage(const char *bad)
{
	fprintf(stderr,
		NAME ": %s '%s'\n"
		     "usage: sigvisor workers [N | +K | -K] [--json] [--control PATH] [--timeout "
		     "SECONDS]\n",
		bad[0] == '-' ? "unknown argument" : "not a worker count", bad);
	return EXIT_USAGE;
}

int workers_main(int argc, char **argv)
{
	struct control_client_args args = {.name = NAME, .timeout_ms = 10000};
	const char *control, *change = NULL;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)], found[sizeof(path)];
	char req[64], why[512];
	struct control_workers parsed;
	struct pool_seen *s = calloc(1, sizeof(*s));
	uint64_t timeout_ms, start;
	bool json;
	int previous, target, r = EXIT_FATAL;
	char *ans;

	if (!s) {
		fprintf(stderr, NAME ": out of memory\n");
		return EXIT_FATAL;
	}
	for (int i = 2; i < argc; i++) {
		int taken = control_client_arg(&args, argc, argv, &i);

		if (taken < 0) {
			free(s);
			return EXIT_USAGE;
		}
		if (taken > 0)
			continue;
		if (!change && ((argv[i][0] >= '0' && argv[i][0] <= '9') ||
				((argv[i][0] == '+' || argv[i][0] == '-') && argv[i][1] >= '0' &&
				 argv[i][1] <= '9'))) {
			change = argv[i];
			continue;
		}
		free(s);
		return usage(argv[i]);
	}
	control = args.control;
	timeout_ms = args.timeout_ms;
	json = args.json;
	if (change && (snprintf(req, sizeof(req), "workers %s", change) >= (int)sizeof(req) ||
		       !control_parse_workers(req, &parsed))) {
		free(s);
		return usage(change);
	}
	control_client_begin(NAME, timeout_ms);
	start = now_ms();
	if (!change) {
		if (get_pool(control, path, sizeof(path), s)) {
			print_pool(s, json);
			r = EXIT_OK;
		}
		free(s);
		return r;
	}
	/* What the target was, for the outcome: the pool as it is now. */
	if (!get_pool(control, path, sizeof(path), s)) {
		free(s);
		return EXIT_FATAL;
	}
	previous = (int)s->target;
	/* The socket found is the one asked from now on. */
	snprintf(found, sizeof(found), "%s", path);
	control = found;
	strcat(req, "\n");
	ans = control_client_request(control, path, sizeof(path), req);
	if (!ans) {
		free(s);
		return EXIT_FATAL;
	}
	if (sscanf(ans, "ok target %d", &target) != 1) {
		const char *t = strncmp(ans, "error: ", 7) == 0 ? ans + 7 : ans;

		if (strncmp(t, "refused: ", 9) == 0)
			t += 9;

		snprintf(why, sizeof(why), "%.*s", (int)strcspn(t, "\n"), t);
		free(ans);
		r = outcome(json, "refused", previous, -1, NULL, now_ms() - start, why);
		free(s);
		return r;
	}
	free(ans);
	for (bool seen = false;; seen = true) {
		int left = control_client_remaining_ms();
		unsigned ready = s->ready, booting = s->booting, stopping = s->stopping;
		unsigned generation = s->generation;

		/* The deadline spent waiting: what the pool looked like a moment ago. */
		if (left == 0 && seen) {
			r = timed_out(json, timeout_ms, previous, target, s, now_ms() - start);
			break;
		}
		if (!get_pool(control, path, sizeof(path), s)) {
			/* The deadline ran out during this look (said above on stderr): still
			 * a timeout, with the pool as last seen, and its outcome for --json. */
			s->ready = ready, s->booting = booting, s->stopping = stopping;
			s->generation = generation;
			if (seen && control_client_remaining_ms() == 0)
				r = timed_out(json, timeout_ms, previous, target, s,
					      now_ms() - start);
			else
				r = outcome(json, "error", previous, target, NULL, now_ms() - start,
					    "lost the arbiter while waiting (said above)");
			break;
		}
		if (strcmp(s->state, "running") != 0) {
			snprintf(why, sizeof(why), "the arbiter is %s", s->state);
			r = outcome(json, "shutting-down", previous, target, s, now_ms() - start,
				    why);
			break;
		}
		if (s->target != (unsigned)target) {
			snprintf(why, sizeof(why),
				 "the pool's target is now %u, not %d: changed since (TTIN/TTOU, a "
				 "reload or another `sigvisor workers`)",
				 s->target, target);
			r = outcome(json, "changed", previous, target, s, now_ms() - start, why);
			break;
		}
		if (s->ready == (unsigned)target && !s->booting && !s->stopping) {
			r = outcome(json, "ok", previous, target, s, now_ms() - start, NULL);
			break;
		}
		left = control_client_remaining_ms();
		(void)poll(NULL, 0, left < 0 || left > WATCH_POLL_MS ? WATCH_POLL_MS : left);
	}
	free(s);
	return r;
}
