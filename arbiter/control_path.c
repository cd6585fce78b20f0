/* Where a control socket lives when --control is not given, and connecting to one
 * without waiting: what the server (control.c: the default path, a stale socket) and
 * the client (control_client.c: the search) both need; see control.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control_internal.h"

static int ensure_private_dir(const char *dir)
{
	struct stat st;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	if (lstat(dir, &st) < 0)
		return -errno;
	/* In a shared /tmp, refuse a directory someone else planted for us. */
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid())
		return -EPERM;
	/* There already, on a read-only file system (a read-only root): try the next. */
	return access(dir, W_OK) < 0 ? -errno : 0;
}

/* The directories searched, in order; the caller frees nothing (static buffers). */
size_t control_candidate_dirs(const char **dirs, size_t max)
{
	static char runtime[1024], tmp[64];
	const char *rd = getenv("RUNTIME_DIRECTORY");
	size_t n = 0;

	if (rd && *rd && n < max) {
		/* systemd may pass several, colon-separated: ours is the first. */
		snprintf(runtime, sizeof(runtime), "%.*s", (int)strcspn(rd, ":"), rd);
		dirs[n++] = runtime;
	}
	if (n < max)
		dirs[n++] = "/run/sigvisor";
	snprintf(tmp, sizeof(tmp), "/tmp/sigvisor-%u", (unsigned)geteuid());
	if (n < max)
		dirs[n++] = tmp;
	return n;
}

const char *control_default_dirs(void)
{
	static char out[1200];
	const char *dirs[3];
	size_t n = control_candidate_dirs(dirs, 3);

	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%s", i ? ", " : "",
			 dirs[i]);
	return out;
}

int control_default_path(char *buf, size_t len, int pid)
{
	const char *dirs[3];
	size_t n = control_candidate_dirs(dirs, 3);
	bool has_runtime = n == 3;
	int r = -ENOENT;

	for (size_t i = 0; i < n; i++) {
		/* $RUNTIME_DIRECTORY is made for us by systemd; the others are ours. */
		if (has_runtime && i == 0)
			r = access(dirs[0], W_OK) < 0 ? -errno : 0;
		else
			r = ensure_private_dir(dirs[i]);
		if (r == 0) {
			snprintf(buf, len, "%s/%d.sock", dirs[i], pid);
			return 0;
		}
	}
	return r;
}

/* Connect to the socket at path without waiting: an fd (non-blocking) when something
 * listens there, else -errno. ECONNREFUSED is a socket file nobody listens on: the
 * arbiter that made it died. EAGAIN is a listener whose queue is full: a blocking
 * connect() would wait for it to accept, for as long as it likes. Only a connection
 * tells: its pid says nothing when it was PID 1 in another PID namespace, or when that
 * pid has been reused. */
int control_connect_to(const char *path)
{
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	int fd, r;

	if (strlen(path) >= sizeof(un.sun_path))
		return -ENAMETOOLONG;
	strcpy(un.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&un, sizeof(un)) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}
