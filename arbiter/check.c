/* --check: what start-up will need, tried without side effects; see check.h. */
#include "check.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "listeners.h"
#include "loop.h"
#include "options.h"
#include "safefile.h"

/* The directory path would be created in: writable and searchable. */
static int dir_writable(const char *path, char *dir, size_t len)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		snprintf(dir, len, ".");
	else if (slash == path)
		snprintf(dir, len, "/");
	else
		snprintf(dir, len, "%.*s", (int)(slash - path), path);
	return access(dir, W_OK | X_OK) < 0 ? -errno : 0;
}

/* A live server answers at this unix socket path (a stale file is removed at start:
 * any failed connection will do here). */
static int unix_in_use(const struct sockaddr_un *un, socklen_t len)
{
	int r = listener_unix_probe(un, len);

	return r > 0 ? 0 : r;
}

/* Bind what listener_open would (same options), and let it go at once: no listen, so
 * nothing can connect and nothing lingers. */
static int try_bind(const char *what, const char *spec, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char sub[512], dir[PATH_MAX];
	int fd, one = 1, r;

	r = listener_parse(spec, &ss, &len, sub, sizeof(sub));
	if (r < 0) {
		snprintf(err, errlen, "%s%s", what, sub);
		return r;
	}
	if (ss.ss_family == AF_UNIX) {
		const struct sockaddr_un *un = (const struct sockaddr_un *)&ss;

		r = dir_writable(un->sun_path, dir, sizeof(dir));
		if (r < 0) {
			snprintf(err, errlen, "%scannot bind %s: directory %s: %s", what, spec, dir,
				 strerror(-r));
			return r;
		}
		r = unix_in_use(un, len);
		if (r < 0)
			snprintf(err, errlen, "%scannot bind %s: %s%s", what, spec, strerror(-r),
				 r == -EADDRINUSE ? " (another server answers there)"
				 : r == -EEXIST	  ? " (the path exists and is not a socket)"
						  : "");
		return r;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%scannot create a socket for %s: %s", what, spec,
			 strerror(-r));
		return r;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	r = bind(fd, (struct sockaddr *)&ss, len) < 0 ? -errno : 0;
	close(fd);
	/* the words listener_open would use */
	if (r == -EADDRINUSE)
		snprintf(err, errlen,
			 "%scannot bind %s: address already in use (is another server running "
			 "there?)",
			 what, spec);
	else if (r == -EADDRNOTAVAIL)
		snprintf(err, errlen, "%scannot bind %s: no local interface has that address", what,
			 spec);
	else if (r < 0)
		snprintf(err, errlen, "%scannot bind %s: %s", what, spec, strerror(-r));
	return r;
}

static unsigned port_of(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return 0;
}

/* Would binding both collide? Same port and the same or a wildcard address, or the
 * same unix path. Port 0 never collides. */
static bool same_address(const char *x, const char *y)
{
	struct sockaddr_storage a, b;
	socklen_t la, lb;
	char sub[512];

	if (listener_parse(x, &a, &la, sub, sizeof(sub)) < 0 ||
	    listener_parse(y, &b, &lb, sub, sizeof(sub)) < 0 || a.ss_family != b.ss_family)
		return false;
	if (a.ss_family == AF_UNIX)
		return strcmp(((struct sockaddr_un *)&a)->sun_path,
			      ((struct sockaddr_un *)&b)->sun_path) == 0;
	if (port_of(&a) == 0 || port_of(&a) != port_of(&b))
		return false;
	if (a.ss_family == AF_INET) {
		in_addr_t ia = ((struct sockaddr_in *)&a)->sin_addr.s_addr;
		in_addr_t ib = ((struct sockaddr_in *)&b)->sin_addr.s_addr;

		return ia == ib || ia == htonl(INADDR_ANY) || ib == htonl(INADDR_ANY);
	}
	return memcmp(&((struct sockaddr_in6 *)&a)->sin6_addr,
		      &((struct sockaddr_in6 *)&b)->sin6_addr, sizeof(struct in6_addr)) == 0 ||
	       IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&a)->sin6_addr) ||
	       IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&b)->sin6_addr);
}

int check_startup(const struct settings *s, bool (*held)(const char *spec), bool upgrading,
		  char *err, size_t errlen)
{
	char dir[PATH_MAX];
	int r;

	/* The loop the start would use: --loop io_uring under a seccomp filter (docker's,
	 * podman's default profiles) or kernel.io_uring_disabled must fail here, not in
	 * the start that follows (or in a USR2's new image). */
	if (!loop_backend_select((int)s->loop, err, errlen))
		return -EPERM;
	for (size_t i = 0; i < s->n_binds; i++) {
		if (held && held(s->binds[i]))
			continue; /* ours already: the new image takes it over */
		r = try_bind("", s->binds[i], err, errlen);
		if (r < 0)
			return r;
	}
	if (s->metrics) {
		for (size_t i = 0; i < s->n_binds; i++)
			if (same_address(s->metrics, s->binds[i])) {
				snprintf(err, errlen,
					 "--metrics %s: the same address as --bind %s; give it "
					 "a port of its own",
					 s->metrics, s->binds[i]);
				return -EADDRINUSE;
			}
		if (!held || !held(s->metrics)) {
			r = try_bind("--metrics: ", s->metrics, err, errlen);
			if (r < 0)
				return r;
		}
	}
	if (s->pidfile) {
		r = dir_writable(s->pidfile, dir, sizeof(dir));
		if (r < 0) {
			snprintf(err, errlen, "--pid %s: directory %s: %s", s->pidfile, dir,
				 strerror(-r));
			return r;
		}
		/* Written by a rename over the path (safefile_replace): the directory must be
		 * one nobody else can put a link in, the file itself need not be writable. */
		r = safefile_check_replace(s->pidfile);
		if (r < 0) {
			snprintf(err, errlen, "--pid %s: %s", s->pidfile, safefile_why());
			return r;
		}
	}
	/* Through an upgrade the control socket is handed over; the default path is
	 * chosen at start among directories that work. */
	if (s->control && !upgrading) {
		r = dir_writable(s->control, dir, sizeof(dir));
		if (r < 0) {
			snprintf(err, errlen, "--control %s: directory %s: %s", s->control, dir,
				 strerror(-r));
			return r;
		}
	}
	return 0;
}
