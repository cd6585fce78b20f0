/* Socket activation of sigvisor itself (activation.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "activation.h"
#include "log.h"

#define ACTIVATED_ENV "SIGVISOR_ACTIVATED"

/* fd as a --bind spec, so that reload and upgrade match it like any bind. */
static int spec_of(int fd, char *out, size_t outlen, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN];
	int type = 0, listening = 0;
	socklen_t optlen = sizeof(type);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &optlen) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
		snprintf(err, errlen, "socket activation: fd %d is not a socket: %s", fd,
			 strerror(errno));
		return -EBADF;
	}
	optlen = sizeof(listening);
	if (type != SOCK_STREAM ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen) < 0 || !listening) {
		snprintf(err, errlen,
			 "socket activation: fd %d is not a listening stream socket "
			 "(ListenStream= in the .socket unit, Accept=no)",
			 fd);
		return -EINVAL;
	}
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(out, outlen, "%s:%u", host, ntohs(in->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(out, outlen, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else if (ss.ss_family == AF_UNIX && len > offsetof(struct sockaddr_un, sun_path) + 1 &&
		   ((struct sockaddr_un *)&ss)->sun_path[0]) {
		struct sockaddr_un *un = (struct sockaddr_un *)&ss;

		snprintf(out, outlen, "unix:%.*s",
			 (int)strnlen(un->sun_path, len - offsetof(struct sockaddr_un, sun_path)),
			 un->sun_path);
	} else {
		snprintf(err, errlen,
			 "socket activation: fd %d: only TCP and unix sockets with a path are "
			 "supported",
			 fd);
		return -EAFNOSUPPORT;
	}
	return 0;
}

/* Fields of a ':'-separated LISTEN_FDNAMES, NULL where there are fewer. */
static int split_names(struct activation *act, const char *names)
{
	const char *p = names;

	for (size_t i = 0; i < act->n && p; i++) {
		const char *end = strchr(p, ':');
		size_t n = end ? (size_t)(end - p) : strlen(p);

		if (n && !(act->name[i] = strndup(p, n)))
			return -ENOMEM;
		p = end ? end + 1 : NULL;
	}
	return 0;
}

/* The new image of an upgrade: which of the sockets handed over were activated. */
static int from_upgrade(struct activation *act, const char *v, int *ret_fds)
{
	const char *p = v;

	while (*p && act->n < MAX_BINDS) {
		const char *tab = strchr(p, '\t'), *nl;

		if (!tab)
			break;
		nl = strchr(tab, '\n');
		if (!nl)
			nl = tab + strlen(tab);
		if (tab > p && !(act->name[act->n] = strndup(p, (size_t)(tab - p))))
			return -ENOMEM;
		if (!(act->spec[act->n] = strndup(tab + 1, (size_t)(nl - tab - 1))))
			return -ENOMEM;
		ret_fds[act->n++] = -1;
		p = *nl ? nl + 1 : nl;
	}
	return (int)act->n;
}

/* Kept in our own environment: a USR2 execs us with it. */
static int remember(const struct activation *act)
{
	size_t len = 1;
	char *v;

	for (size_t i = 0; i < act->n; i++)
		len += strlen(act->spec[i]) + (act->name[i] ? strlen(act->name[i]) : 0) + 2;
	v = calloc(1, len);
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < act->n; i++) {
		strcat(v, act->name[i] ? act->name[i] : "");
		strcat(v, "\t");
		strcat(v, act->spec[i]);
		if (i + 1 < act->n)
			strcat(v, "\n");
	}
	if (setenv(ACTIVATED_ENV, v, 1) < 0) {
		free(v);
		return -errno;
	}
	free(v);
	return 0;
}

int activation_take(struct activation *act, int *ret_fds, char *err, size_t errlen)
{
	const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS");
	const char *names = getenv("LISTEN_FDNAMES"), *upgraded = getenv(ACTIVATED_ENV);
	char *end;
	long pid = 0, n = 0;
	int r = 0;

	memset(act, 0, sizeof(*act));
	if (pid_s && fds_s) {
		errno = 0;
		pid = strtol(pid_s, &end, 10);
		if (errno || *end || end == pid_s)
			pid = 0;
		errno = 0;
		n = strtol(fds_s, &end, 10);
		if (errno || *end || end == fds_s)
			n = -1;
	}
	if (pid != (long)getpid() || n == 0) {
		/* Not for us (or none): ours may still come through an upgrade. */
		r = upgraded && *upgraded ? from_upgrade(act, upgraded, ret_fds) : 0;
		goto out;
	}
	if (n < 0 || n > MAX_BINDS) {
		snprintf(err, errlen, "socket activation: LISTEN_FDS=%s: at most %d sockets", fds_s,
			 MAX_BINDS);
		r = -EINVAL;
		goto out;
	}
	for (long i = 0; i < n; i++) {
		int fd = 3 + (int)i, unused = 0;
		char spec[160];

		r = spec_of(fd, spec, sizeof(spec), err, errlen);
		if (r < 0)
			goto out;
		/* Not ours to pass on at these numbers: a worker gets them from spawn. */
		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
		/* A frozen socket (listener_freeze by a sigvisor killed mid-shutdown) would
		 * drop every new connection: we never freeze activated sockets. */
		(void)setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &unused, sizeof(unused));
		act->spec[act->n] = strdup(spec);
		if (!act->spec[act->n]) {
			r = -ENOMEM;
			goto out;
		}
		ret_fds[act->n++] = fd;
	}
	r = names ? split_names(act, names) : 0;
	if (r == 0)
		r = remember(act);
	if (r < 0)
		snprintf(err, errlen, "socket activation: %s", strerror(-r));
	else
		r = (int)act->n;
out:
	/* sd_listen_fds(1): the variables are for us, never for our children. */
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return r;
}

static bool is_activated(const struct activation *act, const char *spec)
{
	for (size_t k = 0; k < act->n; k++)
		if (strcmp(act->spec[k], spec) == 0)
			return true;
	return false;
}

int activation_apply_binds(const struct activation *act, struct settings *s, const char *when)
{
	if (act->n == 0)
		return 0;
	for (size_t i = 0; i < s->n_binds; i++) {
		/* An address systemd passed is served, not ignored: the settings a rollback
		 * takes back from the upgrade state name these. */
		if (s->binds_source != SOURCE_DEFAULT && !is_activated(act, s->binds[i]))
			log_info("%sbind %s ignored: serving on the sockets systemd passed", when,
				 s->binds[i]);
		free(s->binds[i]);
	}
	s->n_binds = 0;
	for (size_t i = 0; i < act->n; i++) {
		s->binds[i] = strdup(act->spec[i]);
		if (!s->binds[i])
			return -ENOMEM;
		s->n_binds++;
	}
	return 0;
}

int activation_mark(const struct activation *act, struct listener *set, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < act->n; k++) {
			if (strcmp(set[i].spec, act->spec[k]) != 0)
				continue;
			set[i].activated = true;
			/* The .socket unit owns the path: never ours to remove. */
			free(set[i].unix_path);
			set[i].unix_path = NULL;
			if (act->name[k]) {
				char *name = strdup(act->name[k]);

				if (!name)
					return -ENOMEM;
				free(set[i].fdname);
				set[i].fdname = name;
			}
		}
	}
	return 0;
}

void activation_free(struct activation *act)
{
	for (size_t i = 0; i < act->n; i++) {
		free(act->spec[i]);
		free(act->name[i]);
	}
	act->n = 0;
}
