/* Backend-independent part of the loop; see loop.h. */
#include "loop.h"

int loop_init(struct loop *l, const struct loop_backend *backend)
{
	l->backend = backend;
	l->fd = -1;
	l->priv = 0;
	return backend->init(l);
}

void loop_fini(struct loop *l)
{
	if (l->backend)
		l->backend->fini(l);
	l->backend = 0;
}
