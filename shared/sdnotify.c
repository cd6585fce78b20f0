/* See sdnotify.h. */
#include "sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

int sd_notifier_init(struct sd_notifier *n, const char *path)
{
	size_t len = path ? strlen(path) : 0;

	memset(n, 0, sizeof(*n));
	n->fd = -1;
	if (!len)
		return 0;
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(n->addr.sun_path))
		return -EINVAL;
	n->addr.sun_family = AF_UNIX;
	memcpy(n->addr.sun_path, path, len);
	if (path[0] == '@')
		n->addr.sun_path[0] = '\0'; /* abstract namespace, not NUL-terminated */
	n->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	return 0;
}

bool sd_notifier_enabled(const struct sd_notifier *n)
{
	return n->len != 0;
}

int sd_notifier_send(struct sd_notifier *n, const char *msg)
{
	if (!n->len)
		return 0;
	if (n->fd < 0)
		n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (n->fd < 0)
		return -errno;
	if (sendto(n->fd, msg, strlen(msg), MSG_NOSIGNAL, (const struct sockaddr *)&n->addr,
		   n->len) < 0)
		return -errno;
	return 0;
}

void sd_notifier_close(struct sd_notifier *n)
{
	if (n->fd >= 0)
		close(n->fd);
	n->fd = -1;
}
