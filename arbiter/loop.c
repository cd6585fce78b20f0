/* Backend-independent part of the loop; see loop.h. */
#include "loop.h"

#include <stdio.h>

int loop_init(struct loop *l, const struct loop_backend *backend)
{
	l->backend = backend;
	l->fd = -1;
	l->priv = 0;
	l->n_batch = 0;
	return backend->init(l);
}

void loop_fini(struct loop *l)
{
	if (l->backend)
		l->backend->fini(l);
	l->backend = 0;
}

const struct loop_backend *loop_backend_select(int kind, char *err, unsigned long errlen)
{
	char why[256];

	/* kind is an enum loop_kind (options.h): 0 auto, 1 epoll, 2 io_uring. auto stays
	 * epoll: io_uring is often blocked in containers (Docker's default seccomp profile). */
	if (kind != 2)
		return &loop_backend_epoll;
	/* Asked for by name: io_uring or nothing, never a silent fallback. */
	if (loop_uring_probe(why, sizeof(why)) < 0) {
		snprintf(err, errlen, "--loop io_uring: %s; use --loop epoll", why);
		return 0;
	}
	return &loop_backend_io_uring;
}
