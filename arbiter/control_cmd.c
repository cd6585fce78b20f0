/* The control socket's requests and what each does: the request line parsed, and the
 * answer rendered by the view (the arbiter) into the connection's buffer. The transport
 * (control.c) reads the line and sends the answer; a new command goes here: a value
 * of enum control_request (control.h), its word in control_parse_request, its case in
 * control_handle_request. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "control_internal.h"

enum control_request control_parse_request(const char *line)
{
	if (strcmp(line, "status") == 0)
		return CONTROL_STATUS_TEXT;
	if (strcmp(line, "status json") == 0)
		return CONTROL_STATUS_JSON;
	if (strcmp(line, "events") == 0)
		return CONTROL_EVENTS;
	return CONTROL_UNKNOWN;
}

int control_handle_request(struct control *c, struct control_conn *cc, const char *line)
{
	const char *events_off;
	char safe[65];
	size_t k = 0;

	switch (control_parse_request(line)) {
	case CONTROL_STATUS_TEXT:
		return c->view.render_status(c->view.ctx, false, &cc->out, &cc->out_len);
	case CONTROL_STATUS_JSON:
		return c->view.render_status(c->view.ctx, true, &cc->out, &cc->out_len);
	case CONTROL_EVENTS:
		events_off = c->view.events_off(c->view.ctx);
		if (events_off) {
			if (asprintf(&cc->out,
				     "error: events come from the BPF probes, which are "
				     "off: %s\n",
				     events_off) < 0)
				return -ENOMEM;
			cc->out_len = strlen(cc->out);
			return 0;
		}
		cc->follower = true;
		return 0;
	case CONTROL_UNKNOWN:
		break;
	}
	/* echo a printable prefix only: the reply goes to someone's terminal */
	for (; k < sizeof(safe) - 1 && line[k]; k++)
		safe[k] = (line[k] >= 0x20 && line[k] < 0x7f) ? line[k] : '?';
	safe[k] = '\0';
	if (asprintf(&cc->out, "error: unknown request '%s'\n", safe) < 0)
		return -ENOMEM;
	cc->out_len = strlen(cc->out);
	return 0;
}
