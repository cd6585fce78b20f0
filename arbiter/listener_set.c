/* Sets of listening sockets; see listener_set.h. */
#include "listener_set.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

bool listener_set_has(const struct listener_set *set, const char *spec)
{
	for (size_t i = 0; i < set->n; i++)
		if (strcmp(set->l[i].spec, spec) == 0)
			return true;
	return false;
}

int listener_set_refresh(struct listener_set *set)
{
	size_t len = 1;
	char *names;

	for (size_t i = 0; i < set->n; i++)
		len += strlen(set->l[i].fdname) + 1;
	names = calloc(1, len);
	if (!names)
		return -ENOMEM;
	for (size_t i = 0; i < set->n; i++) {
		if (i)
			strcat(names, ":");
		strcat(names, set->l[i].fdname);
		set->fds[i] = set->l[i].fd;
	}
	free(set->fdnames);
	set->fdnames = names;
	return 0;
}

/* A copy of l that shares its socket (dup): the old and the new set can then be closed
 * independently while the socket itself, and its accept queue, stay open. */
static int listener_dup(struct listener *to, const struct listener *l)
{
	memset(to, 0, sizeof(*to));
	to->fd = fcntl(l->fd, F_DUPFD_CLOEXEC, 3);
	to->spec = strdup(l->spec);
	to->address = strdup(l->address);
	to->fdname = strdup(l->fdname);
	to->unix_path = l->unix_path ? strdup(l->unix_path) : NULL;
	to->activated = l->activated;
	if (to->fd < 0 || !to->spec || !to->address || !to->fdname ||
	    (l->unix_path && !to->unix_path)) {
		listener_close(to, false);
		return -ENOMEM;
	}
	return 0;
}

int listener_set_build(struct listener_set *to, const struct listener_set *from, char *const *binds,
		       size_t n_binds, unsigned backlog, char *err, size_t errlen)
{
	int r = 0;

	to->n = 0;
	to->fdnames = NULL;
	for (size_t i = 0; i < n_binds; i++, to->n++) {
		bool reused = false;

		for (size_t k = 0; k < from->n && !reused; k++) {
			if (strcmp(from->l[k].spec, binds[i]) == 0) {
				r = listener_dup(&to->l[i], &from->l[k]);
				reused = true;
			}
		}
		if (!reused)
			r = listener_open(&to->l[i], binds[i], backlog, err, errlen);
		if (r < 0) {
			if (reused)
				snprintf(err, errlen, "%s: %s", binds[i], strerror(-r));
			listener_set_close(to, from);
			return r;
		}
		if (!reused)
			log_info("listening on %s (new)", to->l[i].address);
	}
	return 0;
}

void listener_set_close(struct listener_set *set, const struct listener_set *keep)
{
	for (size_t i = 0; i < set->n; i++)
		listener_close(&set->l[i], !keep || !listener_set_has(keep, set->l[i].spec));
	set->n = 0;
	free(set->fdnames);
	set->fdnames = NULL;
}

void listener_set_replace(struct listener_set *cur, struct listener_set *saved,
			  struct listener_set *fresh)
{
	*saved = *cur;
	*cur = *fresh;
	fresh->n = 0;
	fresh->fdnames = NULL;
}

void listener_set_restore(struct listener_set *cur, struct listener_set *saved)
{
	listener_set_close(cur, saved);
	*cur = *saved;
	saved->n = 0;
	saved->fdnames = NULL;
}
