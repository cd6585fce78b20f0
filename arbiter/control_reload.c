/* The clients of `sigvisor reload` and `sigvisor upgrade` [--json] [--control PATH]
 * [--timeout S]: ask the arbiter to reload (as HUP) or upgrade (as USR2), then wait
 * for the outcome of that very reload or upgrade.
 *
 * The arbiter answers at once with a number (control_cmd.c: "ok reload 7"): the
 * reload or upgrade that carries the request (a request made while a reload runs is
 * the one queued after it, as a HUP's). How each ended is kept under its number in
 * "status json" (reload_outcomes, upgrade_outcomes; handed over across a USR2 exec,
 * upstate.h), so the waiting is ours: ask "status json" every POLL_MS, each time on a
 * new connection (an upgrade's exec keeps the listening socket, so the new image, or
 * the old one back from a rollback, answers), all within the one --timeout. An upgrade
 * that succeeded then started a reload in the new image: its number is in the
 * upgrade's outcome, and we wait for that reload too. */
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "control_internal.h"
#include "exitstatus.h"
#include "json.h"
#include "timeutil.h"
#include "upstate.h"

#define POLL_MS		   25
#define DEFAULT_TIMEOUT_MS 60000

/* What "status json" says that we look at. */
struct seen {
	int pid;
	char state[32]; /* the arbiter's: running, draining, ... */
	unsigned generation, target;
	bool reloading;
	unsigned long long upgrades;
	unsigned ready, booting, older; /* the current generation's; workers of others */
	bool found;			/* the outcome looked for is there */
	unsigned long long oldest;	/* the oldest outcome kept (0: none) */
	unsigned long long generation_after, reload;
	char result[24];
	char reason[1024];
};

/* A JSON string's body at p (after its opening quote), unescaped into out: where it
 * ends (after the closing quote), or NULL. Our own JSON (json_fputs) escapes quotes,
 * backslashes and control characters only. */
static const char *json_string(const char *p, char *out, size_t len)
{
	size_t n = 0;

	for (; *p && *p != '"'; p++) {
		char c = *p;
		unsigned u;

		if (c == '\\') {
			switch (*++p) {
			case 'n':
				c = '\n';
				break;
			case 't':
				c = '\t';
				break;
			case 'r':
				c = '\r';
				break;
			case 'b':
				c = '\b';
				break;
			case 'f':
				c = '\f';
				break;
			case 'u':
				if (sscanf(p + 1, "%4x", &u) != 1)
					return NULL;
				c = u < 0x80 ? (char)u : '?';
				p += 4;
				break;
			case '\0':
				return NULL;
			default:
				c = *p; /* " \ / */
			}
		}
		if (n + 1 < len)
			out[n++] = c;
	}
	out[n] = '\0';
	return *p == '"' ? p + 1 : NULL;
}

/* The outcome numbered id in the list named key (status.c's json_outcomes). */
static bool parse_outcomes(const char *j, const char *key, unsigned long long id, struct seen *s)
{
	char head[40];
	const char *p;

	snprintf(head, sizeof(head), "\"%s\":[", key);
	p = strstr(j, head);
	if (!p)
		return false;
	p += strlen(head);
	while (*p == '{') {
		unsigned long long oid, gen, reload = 0;
		char result[24], reason[sizeof(s->reason)];
		int n = 0;

		if (sscanf(p, "{\"id\":%llu,\"result\":\"%23[^\"]\",\"generation\":%llu,%n", &oid,
			   result, &gen, &n) != 3 ||
		    !n)
			return false;
		p += n;
		if (strncmp(p, "\"reload\":", 9) == 0 &&
		    sscanf(p, "\"reload\":%llu,%n", &reload, &n) == 1)
			p += n;
		if (strncmp(p, "\"reason\":\"", 10) != 0)
			return false;
		p = json_string(p + 10, reason, sizeof(reason));
		if (!p || *p != '}')
			return false;
		p++;
		if (*p == ',')
			p++;
		if (!s->oldest)
			s->oldest = oid;
		if (oid == id) {
			s->found = true;
			s->generation_after = gen;
			s->reload = reload;
			snprintf(s->result, sizeof(s->result), "%s", result);
			snprintf(s->reason, sizeof(s->reason), "%s", reason);
		}
	}
	return *p == ']';
}

/* Our own JSON, in the order status.c writes it: pid and state first, the generation
 * before "workers", each worker starting {"id":..,"pid":..,"generation":..,"state":"..",
 * the counters after them, the outcomes last. */
static bool parse_status(const char *j, const char *key, unsigned long long id, struct seen *s)
{
	const char *p, *end;

	memset(s, 0, sizeof(*s));
	p = strstr(j, "\"pid\":");
	if (!p || sscanf(p, "\"pid\":%d", &s->pid) != 1)
		return false;
	p = strstr(j, "\"state\":\"");
	if (!p || sscanf(p, "\"state\":\"%31[a-z-]\"", s->state) != 1)
		return false;
	p = strstr(j, "\"generation\":");
	if (!p || sscanf(p, "\"generation\":%u,\"target\":%u", &s->generation, &s->target) != 2)
		return false;
	s->reloading = strstr(j, "\"reloading\":true") != NULL;
	p = strstr(p, "\"workers\":[");
	end = p ? strstr(p, "],\"listeners\":") : NULL;
	if (!p || !end)
		return false;
	while ((p = strstr(p, "{\"id\":")) && p < end) {
		unsigned wid, gen;
		int pid;
		char state[16];

		if (sscanf(p, "{\"id\":%u,\"pid\":%d,\"generation\":%u,\"state\":\"%15[a-z]\"",
			   &wid, &pid, &gen, state) != 4)
			return false;
		p++;
		if (gen != s->generation)
			s->older++;
		else if (strcmp(state, "ready") == 0)
			s->ready++;
		else if (strcmp(state, "booting") == 0)
			s->booting++;
	}
	p = strstr(end, "\"upgrades\":");
	if (!p || sscanf(p, "\"upgrades\":%llu", &s->upgrades) != 1)
		return false;
	return parse_outcomes(end, key, id, s);
}

/* An answer "error: refused: WHY" as WHY in why (one line); false if it is not one. */
static bool refusal(const char *ans, char *why, size_t len)
{
	const char *t = ans + 7;

	if (strncmp(ans, "error: ", 7) != 0)
		return false;
	if (strncmp(t, "refused: ", 9) == 0)
		t += 9;
	snprintf(why, len, "%.*s", (int)strcspn(t, "\n"), t);
	return true;
}

/* The status, with the outcome id of key looked for: false said on stderr, or when
 * the arbiter refused us (another uid) and refused is given, why in it. */
static bool look(const char *name, const char *control, char *path, size_t len, const char *key,
		 unsigned long long id, struct seen *s, char *refused, size_t refused_len)
{
	char *j = control_client_request(control, path, len, "status json\n");
	bool ok = j && parse_status(j, key, id, s);

	if (j && !ok && !(refused && refusal(j, refused, refused_len)))
		fprintf(stderr, "%s: %s: %s", name, path,
			strncmp(j, "error:", 6) == 0 ? j : "the status answer does not parse\n");
	free(j);
	return ok;
}

struct run {
	const char *name; /* "sigvisor reload" */
	const char *what; /* "reload", "upgrade" */
	bool json;
	uint64_t start, timeout_ms;
	unsigned long long id, reload; /* ours; an upgrade's reload in the new image */
	int pid_before;
};

/* The outcome, one line for people (stdout on success, stderr otherwise) or one JSON
 * object on stdout. s: the last look (NULL: none). */
static int outcome(const struct run *r, const char *result, const struct seen *s,
		   const char *reason)
{
	bool ok = strcmp(result, "ok") == 0;
	uint64_t waited = now_ms() - r->start;

	if (r->json) {
		printf("{\"ok\":%s,\"result\":", ok ? "true" : "false");
		json_fputs(stdout, result);
		if (r->id)
			printf(",\"id\":%llu", r->id);
		if (r->reload)
			printf(",\"reload\":%llu", r->reload);
		if (s)
			printf(",\"pid\":%d,\"state\":\"%s\",\"generation\":%u,\"target\":%u,"
			       "\"ready\":%u,\"booting\":%u,\"older\":%u,\"reloading\":%s,"
			       "\"upgrades\":%llu",
			       s->pid, s->state, s->generation, s->target, s->ready, s->booting,
			       s->older, s->reloading ? "true" : "false", s->upgrades);
		printf(",\"waited_ms\":%llu", (unsigned long long)waited);
		if (reason) {
			printf(",\"reason\":");
			json_fputs(stdout, reason);
		}
		printf("}\n");
	} else if (ok && r->reload && s) {
		printf("upgrade #%llu done: pid %d runs the new image (upgrades %llu); reload "
		       "#%llu: "
		       "generation %u serving with %u workers, in %.2f s\n",
		       r->id, s->pid, s->upgrades, r->reload, s->generation, s->ready,
		       (double)waited / 1000.0);
	} else if (ok && s) {
		printf("reload #%llu done: generation %u serving with %u workers, the old one "
		       "gone, in %.2f s\n",
		       r->id, s->generation, s->ready, (double)waited / 1000.0);
	}
	if (!ok)
		fprintf(stderr, "%s: %s\n", r->name, reason);
	return ok ? EXIT_OK : EXIT_FATAL;
}

static int timed_out(const struct run *r, const struct seen *s)
{
	char why[512];

	snprintf(why, sizeof(why),
		 "timed out after %.1f s: %s #%llu not done; last seen: %s%s, generation %u: "
		 "%u ready, %u booting of %u; %u workers of older generations "
		 "(--timeout changes the wait)",
		 (double)r->timeout_ms / 1000.0, r->reload ? "reload" : r->what,
		 r->reload ? r->reload : r->id, s->state, s->reloading ? " (reloading)" : "",
		 s->generation, s->ready, s->booting, s->target, s->older);
	return outcome(r, "timeout", s, why);
}

/* The outcome found: done, or (an upgrade that went through) go on waiting for the
 * new image's reload. -1: keep waiting. */
static int judge(struct run *r, const struct seen *s)
{
	char why[1200];

	if (strcmp(s->result, "ok") == 0) {
		if (strcmp(r->what, "upgrade") == 0 && !r->reload && s->reload) {
			r->reload = s->reload;
			return -1;
		}
		/* The reload is complete once no old worker is active; done, for us, once
		 * the old ones have exited too (a retiring worker may still finish requests). */
		if (s->older > 0)
			return -1;
		return outcome(r, "ok", s, NULL);
	}
	if (r->reload)
		snprintf(why, sizeof(why),
			 "upgrade #%llu: the new image runs (pid %d), but its reload #%llu %s: %s",
			 r->id, s->pid, r->reload, s->result, s->reason);
	else if (strcmp(s->result, "rolled-back") == 0 || strcmp(s->result, "refused") == 0)
		snprintf(why, sizeof(why), "%s #%llu %s: %s; the previous %s keeps serving",
			 r->what, r->id, s->result, s->reason,
			 strcmp(r->what, "upgrade") == 0 ? "image" : "configuration");
	else if (strcmp(r->what, "upgrade") == 0)
		snprintf(why, sizeof(why), "upgrade #%llu %s: %s", r->id, s->result, s->reason);
	else
		snprintf(why, sizeof(why),
			 "reload #%llu %s: %s; the previous configuration keeps serving", r->id,
			 s->result, s->reason);
	return outcome(r, r->reload ? "reload-failed" : s->result, s, why);
}

int reload_main(int argc, char **argv)
{
	bool upgrade = strcmp(argv[1], "upgrade") == 0;
	struct run r = {
		.name = upgrade ? "sigvisor upgrade" : "sigvisor reload",
		.what = upgrade ? "upgrade" : "reload",
		.timeout_ms = DEFAULT_TIMEOUT_MS,
	};
	struct control_client_args args = {.name = r.name, .timeout_ms = r.timeout_ms};
	const char *control;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)], found[sizeof(path)], why[512];
	struct seen s, last;
	char *ans;
	int ret = -1;

	for (int i = 2; i < argc; i++) {
		int taken = control_client_arg(&args, argc, argv, &i);

		if (taken < 0)
			return EXIT_USAGE;
		if (taken == 0)
			return control_client_usage(&args, argv[i], args.name);
	}
	r.json = args.json;
	r.timeout_ms = args.timeout_ms;
	control = args.control;
	control_client_begin(r.name, r.timeout_ms);
	r.start = now_ms();
	/* The arbiter as it is before: its pid (an upgrade keeps it). */
	why[0] = '\0';
	if (!look(r.name, control, path, sizeof(path), "reload_outcomes", 0, &last, why,
		  sizeof(why)))
		return why[0] ? outcome(&r, "refused", NULL, why) : EXIT_FATAL;
	r.pid_before = last.pid;
	/* The socket found is the one asked from now on. */
	snprintf(found, sizeof(found), "%s", path);
	control = found;
	ans = control_client_request(control, path, sizeof(path),
				     upgrade ? "upgrade\n" : "reload\n");
	if (!ans)
		return EXIT_FATAL;
	if (sscanf(ans, upgrade ? "ok upgrade %llu" : "ok reload %llu", &r.id) != 1) {
		if (!refusal(ans, why, sizeof(why)))
			snprintf(why, sizeof(why), "an answer that is not a sigvisor's: %.*s",
				 (int)strcspn(ans, "\n"), ans);
		free(ans);
		return outcome(&r, "refused", NULL, why);
	}
	free(ans);
	for (bool seen = false; ret < 0; seen = true) {
		const char *key = r.reload || !upgrade ? "reload_outcomes" : "upgrade_outcomes";
		unsigned long long want = r.reload ? r.reload : r.id;
		int left = control_client_remaining_ms();

		/* The deadline spent waiting: what it looked like a moment ago. */
		if (left == 0 && seen)
			return timed_out(&r, &last);
		if (!look(r.name, control, path, sizeof(path), key, want, &s, NULL, 0)) {
			/* Said above on stderr; a look the deadline cut short is a timeout. */
			if (seen && control_client_remaining_ms() == 0)
				return timed_out(&r, &last);
			return outcome(&r, "error", seen ? &last : NULL,
				       "lost the arbiter while waiting (said above)");
		}
		last = s;
		if (s.pid != r.pid_before) {
			snprintf(why, sizeof(why),
				 "the arbiter's pid changed (%d, now %d): another sigvisor "
				 "answers at %s",
				 r.pid_before, s.pid, control);
			return outcome(&r, "error", &s, why);
		}
		if (s.found) {
			ret = judge(&r, &s);
			continue;
		}
		if (strcmp(s.state, "running") != 0) {
			snprintf(why, sizeof(why), "%s #%llu not done: the arbiter is %s",
				 r.reload ? "reload" : r.what, want, s.state);
			return outcome(&r, "shutting-down", &s, why);
		}
		if (s.oldest > want) {
			snprintf(why, sizeof(why),
				 "%s #%llu: its outcome is no longer kept (only the last %d are)",
				 r.reload ? "reload" : r.what, want, UPSTATE_OUTCOMES);
			return outcome(&r, "error", &s, why);
		}
		left = control_client_remaining_ms();
		(void)poll(NULL, 0, left < 0 || left > POLL_MS ? POLL_MS : left);
	}
	return ret;
}
