/* Listening sockets; see listeners.h. */
#include "listeners.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "spawn_vm.h"

static int parse_port(const char *s, unsigned *ret)
{
	char *end;
	unsigned long n;

	if (!*s || *s < '0' || *s > '9')
		return -EINVAL;
	n = strtoul(s, &end, 10);
	if (*end || n > 65535)
		return -EINVAL;
	*ret = (unsigned)n;
	return 0;
}

int listener_parse(const char *spec, struct sockaddr_storage *ret_addr, socklen_t *ret_len,
		   char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res;
	char host[256];
	const char *colon, *port_s;
	unsigned port;
	int r;

	memset(ret_addr, 0, sizeof(*ret_addr));
	if (strncmp(spec, "unix:", 5) == 0) {
		struct sockaddr_un *un = (struct sockaddr_un *)ret_addr;
		const char *path = spec + 5;

		if (!*path) {
			snprintf(err, errlen, "bad address '%s': unix: needs a path", spec);
			return -EINVAL;
		}
		if (strlen(path) >= sizeof(un->sun_path)) {
			snprintf(err, errlen, "bad address '%s': unix socket path longer than %zu",
				 spec, sizeof(un->sun_path) - 1);
			return -EINVAL;
		}
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, path);
		*ret_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
		return 0;
	}
	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');

		if (!close || close[1] != ':') {
			snprintf(err, errlen, "bad address '%s': expected [V6ADDR]:PORT", spec);
			return -EINVAL;
		}
		snprintf(host, sizeof(host), "%.*s", (int)(close - spec - 1), spec + 1);
		port_s = close + 2;
		hints.ai_family = AF_INET6;
		hints.ai_flags |= AI_NUMERICHOST;
	} else {
		colon = strrchr(spec, ':');
		if (!colon || strchr(spec, ':') != colon) {
			snprintf(err, errlen,
				 "bad address '%s': expected HOST:PORT, [V6]:PORT or unix:PATH",
				 spec);
			return -EINVAL;
		}
		snprintf(host, sizeof(host), "%.*s", (int)(colon - spec), spec);
		port_s = colon + 1;
		hints.ai_family = AF_UNSPEC;
	}
	if (parse_port(port_s, &port) < 0) {
		snprintf(err, errlen, "bad address '%s': port '%s' is not a number from 0 to 65535",
			 spec, port_s);
		return -EINVAL;
	}
	if (!*host) {
		snprintf(err, errlen,
			 "bad address '%s': missing host (use 0.0.0.0 for every interface)", spec);
		return -EINVAL;
	}
	r = getaddrinfo(host, NULL, &hints, &res);
	if (r != 0) {
		snprintf(err, errlen, "bad address '%s': cannot resolve '%s': %s", spec, host,
			 gai_strerror(r));
		return -EINVAL;
	}
	memcpy(ret_addr, res->ai_addr, res->ai_addrlen);
	*ret_len = res->ai_addrlen;
	freeaddrinfo(res);
	if (ret_addr->ss_family == AF_INET)
		((struct sockaddr_in *)ret_addr)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)ret_addr)->sin6_port = htons((uint16_t)port);
	return 0;
}

/* Format the bound address back, so "127.0.0.1:0" logs the port the kernel chose. */
static char *format_bound(int fd, int family, const char *spec)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN], out[300];

	if (family == AF_UNIX || getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return strdup(spec);
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(out, sizeof(out), "%s:%u", host, ntohs(in->sin_port));
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(out, sizeof(out), "[%s]:%u", host, ntohs(in6->sin6_port));
	}
	return strdup(out);
}

int listener_unix_probe(const struct sockaddr_un *un, socklen_t len)
{
	struct stat st;
	int fd, r;

	if (lstat(un->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (const struct sockaddr *)un, len) < 0 ? errno : 0;
	close(fd);
	return r == 0 ? -EADDRINUSE : r;
}

/* A unix socket file left by a dead server may be removed; one a live server answers
 * on may not. */
static int clear_stale_unix(const struct sockaddr_un *un, socklen_t len)
{
	int r = listener_unix_probe(un, len);

	if (r <= 0)
		return r;
	/* Only a refused connection proves nobody listens; EACCES may hide a live server. */
	if (r != ECONNREFUSED)
		return -r;
	return unlink(un->sun_path) < 0 ? -errno : 0;
}

static int fill_names(struct listener *l, int family)
{
	l->address = format_bound(l->fd, family, l->spec);
	l->fdname = l->address ? strdup(l->address) : NULL;
	if (!l->spec || !l->address || !l->fdname)
		return -ENOMEM;
	/* systemd's fd names may not contain ':'. */
	for (char *c = l->fdname; *c; c++)
		if (*c == ':')
			*c = '-';
	return 0;
}

int listener_open(struct listener *l, const char *spec, unsigned backlog, char *err, size_t errlen)
{
	struct sockaddr_storage addr;
	socklen_t len;
	int fd, one = 1, r;

	memset(l, 0, sizeof(*l));
	l->fd = -1;
	r = listener_parse(spec, &addr, &len, err, errlen);
	if (r < 0)
		return r;
	if (addr.ss_family == AF_UNIX) {
		r = clear_stale_unix((struct sockaddr_un *)&addr, len);
		if (r < 0) {
			snprintf(err, errlen, "cannot bind %s: %s%s", spec, strerror(-r),
				 r == -EADDRINUSE ? " (another server answers there)"
				 : r == -EEXIST	  ? " (the path exists and is not a socket)"
						  : "");
			return r;
		}
	}
	/* Blocking sockets: the workers decide their own mode, and a listener's
	 * O_NONBLOCK lives in the shared open file description. */
	fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot create a socket for %s: %s", spec, strerror(-r));
		return r;
	}
	if (addr.ss_family != AF_UNIX)
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (addr.ss_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&addr, len) < 0 || listen(fd, (int)backlog) < 0) {
		r = -errno;
		if (r == -EADDRINUSE)
			snprintf(err, errlen,
				 "cannot bind %s: address already in use (is another server "
				 "running there?)",
				 spec);
		else if (r == -EADDRNOTAVAIL)
			snprintf(err, errlen, "cannot bind %s: no local interface has that address",
				 spec);
		else
			snprintf(err, errlen, "cannot bind %s: %s", spec, strerror(-r));
		close(fd);
		return r;
	}
	l->fd = fd;
	l->spec = strdup(spec);
	if (addr.ss_family == AF_UNIX)
		l->unix_path = strdup(((struct sockaddr_un *)&addr)->sun_path);
	if (fill_names(l, addr.ss_family) < 0 || (addr.ss_family == AF_UNIX && !l->unix_path)) {
		listener_close(l, addr.ss_family == AF_UNIX);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

int listener_adopt(struct listener *l, int fd, const char *spec)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	memset(l, 0, sizeof(*l));
	l->fd = fd;
	l->spec = strdup(spec);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	if (ss.ss_family == AF_UNIX) {
		l->unix_path = strdup(((struct sockaddr_un *)&ss)->sun_path);
		if (!l->unix_path)
			return -ENOMEM;
	}
	return fill_names(l, ss.ss_family);
}

/* A TCP socket's filter sees a segment from its TCP header on: byte 13 holds the flags.
 * A SYN without ACK asks for a new connection: drop it, and the kernel never answers
 * it. Everything else passes, above all the ACK that completes a handshake the kernel
 * had answered before, and every segment of connections already made (an accepted
 * socket inherits its listener's filter). */
static struct sock_filter drop_syn[] = {
	BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),
	BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12), /* SYN | ACK */
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x02, 0, 1),
	BPF_STMT(BPF_RET | BPF_K, 0),
	BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
};

static int socket_domain(int fd)
{
	int domain;
	socklen_t len = sizeof(domain);

	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
		return -errno;
	return domain;
}

int listener_freeze(int fd)
{
	struct sock_fprog prog = {sizeof(drop_syn) / sizeof(drop_syn[0]), drop_syn};
	int domain = socket_domain(fd);

	if (domain < 0)
		return domain;
	/* A unix listener refuses connect() once shut down for reading, and hands out
	 * what is queued; accept() on it then fails with EAGAIN (EINVAL if blocking). */
	if (domain == AF_UNIX)
		return shutdown(fd, SHUT_RD) < 0 ? -errno : 0;
	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0)
		return -errno;
	return 0;
}

int listener_freeze_allowed(void)
{
	struct sock_fprog prog = {sizeof(drop_syn) / sizeof(drop_syn[0]), drop_syn};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), r = 0;

	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0)
		r = -errno;
	close(fd);
	return r;
}

int listener_thaw(struct listener *l, unsigned backlog, char *err, size_t errlen)
{
	struct listener fresh;
	int domain = socket_domain(l->fd), r;

	if (domain < 0) {
		snprintf(err, errlen, "%s: %s", l->spec, strerror(-domain));
		return domain;
	}
	if (domain != AF_UNIX) {
		int unused = 0; /* every SOL_SOCKET option wants at least an int */

		if (setsockopt(l->fd, SOL_SOCKET, SO_DETACH_FILTER, &unused, sizeof(unused)) < 0 &&
		    errno != ENOENT) {
			r = -errno;
			snprintf(err, errlen, "%s: cannot remove its filter: %s", l->spec,
				 strerror(-r));
			return r;
		}
		l->frozen = false;
		return 0;
	}
	/* The frozen socket refuses connections, so listener_open takes its path. */
	r = listener_open(&fresh, l->spec, backlog, err, errlen);
	if (r < 0)
		return r;
	listener_close(l, false);
	*l = fresh;
	return 0;
}

void listener_close_inherited(int fd, const char *spec)
{
	struct listener l;

	/* listener_adopt keeps the fd even when it fails: closing l closes it, and
	 * removes a unix socket's path when getsockname could tell it. */
	(void)listener_adopt(&l, fd, spec);
	listener_close(&l, true);
}

void listener_close(struct listener *l, bool unlink_path)
{
	if (l->fd >= 0) {
		/* A worker just started may not have taken its copy of it yet. */
		spawn_vm_settle();
		close(l->fd);
	}
	if (unlink_path && l->unix_path)
		(void)unlink(l->unix_path);
	free(l->spec);
	free(l->address);
	free(l->fdname);
	free(l->unix_path);
	memset(l, 0, sizeof(*l));
	l->fd = -1;
}
