/* --metrics is not implemented yet: this stub keeps the interface (see metrics.h). */
#include "metrics.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int metrics_open(struct metrics *m, const char *addr, char *err, size_t errlen)
{
	memset(m, 0, sizeof(*m));
	m->listen.fd = -1;
	snprintf(err, errlen, "--metrics %s: not implemented yet", addr);
	return -ENOTSUP;
}

void metrics_close(struct metrics *m)
{
	(void)m;
}

void metrics_on_listener(struct arbiter *a)
{
	(void)a;
}

void metrics_on_conn(struct arbiter *a, struct source *conn, unsigned events)
{
	(void)a;
	(void)conn;
	(void)events;
}
