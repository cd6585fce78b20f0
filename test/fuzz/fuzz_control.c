/* libFuzzer target: control-socket requests (control_parse_request, and the
 * parsers of "workers" and "kill-worker").
 *
 * The input is what a client sends. It is framed the way control_on_conn() does it: at
 * most 255 bytes into a NUL-terminated buffer, cut at the first '\n'; a request
 * without a newline is never parsed. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_control: invariant failed: %s\n", what);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char in[256];
	size_t len = size < sizeof(in) - 1 ? size : sizeof(in) - 1;
	char *nl, *line;
	enum control_request req;

	memcpy(in, data, len);
	in[len] = '\0';
	nl = strchr(in, '\n');
	if (!nl)
		return 0;
	*nl = '\0';
	/* An exact-size copy, so ASan sees a read past the line's end. */
	line = strdup(in);
	if (!line)
		return 0;
	req = control_parse_request(line);
	switch (req) {
	case CONTROL_STATUS_TEXT:
		check(strcmp(line, "status") == 0, "only \"status\" is the text status");
		break;
	case CONTROL_STATUS_JSON:
		check(strcmp(line, "status json") == 0, "only \"status json\" is JSON");
		break;
	case CONTROL_EVENTS:
		check(strcmp(line, "events") == 0, "only \"events\" follows events");
		break;
	case CONTROL_WORKERS: {
		struct control_workers w;
		char again[64];

		/* one spelling per request: it reads back as it was written */
		check(control_parse_workers(line, &w), "\"workers\" parses");
		snprintf(again, sizeof(again), "workers %s%u",
			 w.op == '='   ? ""
			 : w.op == '+' ? "+"
				       : "-",
			 w.n);
		check(strcmp(line, again) == 0, "\"workers\" has one spelling");
		break;
	}
	case CONTROL_RELOAD:
		check(strcmp(line, "reload") == 0, "only \"reload\" reloads");
		break;
	case CONTROL_UPGRADE:
		check(strcmp(line, "upgrade") == 0, "only \"upgrade\" upgrades");
		break;
	case CONTROL_REOPEN:
		check(strcmp(line, "reopen") == 0, "only \"reopen\" reopens");
		break;
	case CONTROL_STOP:
		check(strcmp(line, "stop") == 0 || strcmp(line, "stop quick") == 0,
		      "only \"stop\" and \"stop quick\" stop");
		break;
	case CONTROL_KILL_WORKER: {
		struct control_kill k;
		char again[64];

		check(control_parse_kill(line, &k), "\"kill-worker\" parses");
		snprintf(again, sizeof(again), "kill-worker %s%u %s%s", k.by_pid ? "pid:" : "", k.n,
			 k.sig, k.force ? " force" : "");
		check(strcmp(line, again) == 0, "\"kill-worker\" has one spelling");
		break;
	}
	case CONTROL_CONFIG_TEXT:
		check(strcmp(line, "config") == 0, "only \"config\" is the text config");
		break;
	case CONTROL_CONFIG_JSON:
		check(strcmp(line, "config json") == 0, "only \"config json\" is JSON");
		break;
	case CONTROL_UNKNOWN:
		check(!control_parse_workers(line, &(struct control_workers){0}),
		      "a workers request is known");
		check(!control_parse_kill(line, &(struct control_kill){0}),
		      "a kill-worker request is known");
		check(strcmp(line, "status") != 0 && strcmp(line, "status json") != 0 &&
			      strcmp(line, "events") != 0 && strcmp(line, "reload") != 0 &&
			      strcmp(line, "upgrade") != 0 && strcmp(line, "reopen") != 0 &&
			      strcmp(line, "stop") != 0 && strcmp(line, "stop quick") != 0 &&
			      strcmp(line, "config") != 0 && strcmp(line, "config json") != 0,
		      "known requests are known");
		break;
	default:
		check(false, "a known enum value");
	}
	free(line);
	return 0;
}
