/* The client of the control socket: `sigvisor status [--control PATH] [--json]
 * [--events]`, finding the one running arbiter's socket and asking it; see control.h.
 * Finding, connecting, asking and the one deadline are shared with the other clients
 * (`sigvisor workers`, control_workers.c) through control_internal.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control_internal.h"
#include "exitstatus.h"
#include "timeutil.h"

/* -- the client: `sigvisor status` ---------------------------------------------------
 *
 * root's `sigvisor status` looks in other users' directories, where anything may
 * listen. So it waits on nothing it has not checked and nothing without a bound: the
 * connect does not wait (a full listen queue says EAGAIN), a socket found by the search
 * is asked only once its listener is seen to be a sigvisor of the directory's owner,
 * one deadline (--timeout) covers the whole search and the answer, and an answer
 * stops at STATUS_MAX_ANSWER. */

/* A status answer is a few hundred bytes a worker: 4 MiB is some 20,000 workers. */
#define STATUS_MAX_ANSWER (4u << 20)
/* Sockets skipped are told one line each, up to this many; then only how many. */
#define STATUS_MAX_SKIP_LINES 20

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* Linux 6.5; glibc 2.36's headers predate it */
#endif

/* How long `sigvisor status` may take in all, search and answer (--timeout): an
 * arbiter that is stopped (SIGSTOP, a debugger) or hung must not hang the probe that
 * asks. 0: no limit. */
static uint64_t client_timeout_ms = 10000;
static uint64_t client_deadline_ms; /* 0: none */
static unsigned long client_skipped;
static const char *client_name = "sigvisor status"; /* what our messages start with */

/* What is left of the deadline, for poll(): -1 without one. */
static int remaining_ms(void)
{
	uint64_t now = now_ms();

	if (!client_deadline_ms)
		return -1;
	if (now >= client_deadline_ms)
		return 0;
	return client_deadline_ms - now > INT_MAX ? INT_MAX : (int)(client_deadline_ms - now);
}

static void skipped(const char *path, const char *why)
{
	if (client_skipped++ < STATUS_MAX_SKIP_LINES)
		fprintf(stderr, "%s: skipped %s: %s\n", client_name, path, why);
}

/* The pid a pidfd stands for: -1 once that process has exited, 0 when it is in a PID
 * namespace we cannot see (fdinfo's "Pid:" line). */
static pid_t pidfd_pid(int pidfd)
{
	char p[64], line[128];
	pid_t pid = -1;
	FILE *f;

	snprintf(p, sizeof(p), "/proc/self/fdinfo/%d", pidfd);
	f = fopen(p, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Pid: %d", &pid) == 1)
			break;
	fclose(f);
	return pid;
}

/* The identity of a program, with AT_STATX_DONT_SYNC: a binary on FUSE or NFS is not
 * asked about (its server could stall us), the cached attributes say enough. */
static int exe_stat(const char *link, struct statx *stx, char *path, size_t len)
{
	ssize_t n;

	if (statx(AT_FDCWD, link, AT_STATX_DONT_SYNC,
		  STATX_TYPE | STATX_MODE | STATX_UID | STATX_INO, stx) < 0)
		return -errno;
	n = readlink(link, path, len - 1);
	if (n < 0)
		return -errno;
	path[n] = '\0';
	/* A binary replaced on disk since it started (a package upgrade) */
	if ((size_t)n > strlen(" (deleted)") &&
	    strcmp(path + n - strlen(" (deleted)"), " (deleted)") == 0)
		path[n - strlen(" (deleted)")] = '\0';
	return 0;
}

/* Whether process pid runs sigvisor: the very file we run (the same device and inode),
 * or the file now or once at the same path as ours, owned by root or us and writable by
 * nobody else: the same install, one side upgraded (a USR2 execs the new binary, and
 * an arbiter not yet upgraded still runs the old one, deleted). A copy of sigvisor
 * elsewhere does not count: anyone can make one, and patch it. */
static bool runs_sigvisor(pid_t pid, char *why, size_t len)
{
	struct statx self, peer;
	char link[64], self_path[PATH_MAX], peer_path[PATH_MAX];
	int r;

	snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
	r = exe_stat(link, &peer, peer_path, sizeof(peer_path));
	if (r < 0) {
		snprintf(why, len, "cannot see what the process listening there (pid %d) runs: %s",
			 (int)pid, strerror(-r));
		return false;
	}
	r = exe_stat("/proc/self/exe", &self, self_path, sizeof(self_path));
	if (r < 0) {
		snprintf(why, len, "cannot see what this program is (/proc/self/exe): %s",
			 strerror(-r));
		return false;
	}
	if (self.stx_dev_major == peer.stx_dev_major && self.stx_dev_minor == peer.stx_dev_minor &&
	    self.stx_ino == peer.stx_ino)
		return true;
	if (strcmp(self_path, peer_path) == 0 && (peer.stx_uid == 0 || peer.stx_uid == geteuid()) &&
	    !(peer.stx_mode & (S_IWGRP | S_IWOTH)))
		return true;
	snprintf(why, len, "the process listening there (pid %d) runs %.200s, not this sigvisor",
		 (int)pid, peer_path);
	return false;
}

/* Whether the process listening on fd is the socket file's owner (st, looked at before
 * connecting: the file may have been swapped since) and runs sigvisor; if not, why. */
static bool peer_trusted(int fd, const struct stat *st, char *why, size_t len)
{
	struct ucred cred;
	socklen_t cl = sizeof(cred), pl = sizeof(int);
	int pidfd = -1;
	pid_t pid;
	bool ok;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
		snprintf(why, len, "cannot tell who listens there: %s", strerror(errno));
		return false;
	}
	if (cred.uid != st->st_uid) {
		snprintf(why, len, "the process listening there has uid %u, the socket file uid %u",
			 (unsigned)cred.uid, (unsigned)st->st_uid);
		return false;
	}
	/* The listener's pidfd holds its pid: while that process lives, /proc/PID is it
	 * and no other. SO_PEERCRED's pid alone may have been reused (older kernels). */
	pid = cred.pid;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &pl) == 0)
		pid = pidfd_pid(pidfd);
	else if (errno != ENOPROTOOPT)
		pid = -1; /* the kernel has no process to give */
	if (pid == 0)
		snprintf(why, len,
			 "the process listening there is in another PID namespace: cannot tell "
			 "it is a sigvisor");
	else if (pid < 0)
		snprintf(why, len, "the process that made the socket listen has exited");
	ok = pid > 0 && runs_sigvisor(pid, why, len);
	if (ok && pidfd >= 0 && pidfd_pid(pidfd) != pid) {
		snprintf(why, len, "the process listening there exited as it was looked at");
		ok = false;
	}
	if (pidfd >= 0)
		close(pidfd);
	return ok;
}

/* The default directories, and when we are root every /tmp/sigvisor-UID that that uid
 * owns (anyone may make one in /tmp). */
#define MAX_SEARCH_DIRS 256

static size_t search_dirs(const char **dirs, size_t max, glob_t *g)
{
	size_t n = control_candidate_dirs(dirs, max < 3 ? max : 3);

	memset(g, 0, sizeof(*g));
	if (geteuid() != 0 || glob("/tmp/sigvisor-*", GLOB_ONLYDIR | GLOB_NOSORT, NULL, g) != 0)
		return n;
	for (size_t i = 0; i < g->gl_pathc && n < max; i++) {
		const char *uid_s = g->gl_pathv[i] + strlen("/tmp/sigvisor-");
		char *end;
		unsigned long uid = strtoul(uid_s, &end, 10);
		struct stat st;

		if (end == uid_s || *end || lstat(g->gl_pathv[i], &st) < 0 ||
		    !S_ISDIR(st.st_mode) || st.st_uid != uid)
			continue;
		dirs[n++] = g->gl_pathv[i];
	}
	return n;
}

/* One socket file found in a directory owned by dir_uid (root, us, or when we are root
 * the uid whose directory it is): connected, an fd, if a sigvisor of that uid listens
 * there; -ENOENT for a stale socket (nobody listens: the
 * arbiter that made it died), skipped quietly; -EPERM for one skipped with a reason. */
static int try_candidate(const char *path, uid_t dir_uid)
{
	char why[512];
	struct stat st;
	int fd;

	if (lstat(path, &st) < 0)
		return -ENOENT; /* removed as we looked */
	if (!S_ISSOCK(st.st_mode)) {
		skipped(path, "not a socket");
		return -EPERM;
	}
	if (st.st_uid != dir_uid) {
		snprintf(why, sizeof(why),
			 "the socket file is owned by uid %u, its directory by %u",
			 (unsigned)st.st_uid, (unsigned)dir_uid);
		skipped(path, why);
		return -EPERM;
	}
	fd = control_connect_to(path);
	if (fd == -ECONNREFUSED || fd == -ENOENT)
		return -ENOENT;
	if (fd < 0) {
		snprintf(why, sizeof(why), "%s",
			 fd == -EAGAIN ? "its listen queue is full (a stopped or hung process?)"
				       : strerror(-fd));
		skipped(path, why);
		return -EPERM;
	}
	if (!peer_trusted(fd, &st, why, sizeof(why))) {
		skipped(path, why);
		close(fd);
		return -EPERM;
	}
	return fd;
}

/* Find the one running arbiter's socket in the default directories: connected
 * (*ret_fd) and 0, -ENOENT for none, -EEXIST for several. A socket is known to be live
 * only by connecting: the arbiter that made PID.sock may have been PID 1 in another
 * PID namespace, so its pid proves nothing. */
static int find_socket(char *buf, size_t len, int *ret_fd)
{
	const char *dirs[MAX_SEARCH_DIRS];
	glob_t g;
	size_t n = search_dirs(dirs, MAX_SEARCH_DIRS, &g), found = 0;
	bool late = false;
	uid_t me = geteuid();

	*ret_fd = -ENOENT;
	for (size_t i = 0; i < n && !late; i++) {
		struct dirent *de;
		struct stat st;
		bool seen = false;
		DIR *d = NULL;
		int dfd;

		for (size_t k = 0; k < i; k++)
			seen = seen || strcmp(dirs[k], dirs[i]) == 0;
		dfd = seen ? -1 : open(dirs[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (dfd >= 0 && fstat(dfd, &st) == 0 && me != 0 && st.st_uid != 0 &&
		    st.st_uid != me) {
			char why[96];

			snprintf(why, sizeof(why), "the directory is owned by uid %u",
				 (unsigned)st.st_uid);
			skipped(dirs[i], why);
		} else if (dfd >= 0) {
			d = fdopendir(dfd);
		}
		if (!d) {
			if (dfd >= 0)
				close(dfd);
			continue;
		}
		while ((de = readdir(d))) {
			char *end;
			long pid = strtol(de->d_name, &end, 10);
			char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
			int fd;

			if (end == de->d_name || strcmp(end, ".sock") != 0 || pid <= 0)
				continue;
			/* A directory filled with sockets must not keep us past the deadline. */
			if (remaining_ms() == 0) {
				late = true;
				break;
			}
			if (snprintf(path, sizeof(path), "%s/%s", dirs[i], de->d_name) >=
			    (int)sizeof(path))
				continue;
			fd = try_candidate(path, st.st_uid);
			if (fd < 0)
				continue;
			if (found++ == 0) {
				snprintf(buf, len, "%s", path);
				*ret_fd = fd;
				continue;
			}
			close(fd);
			fprintf(stderr,
				"%s: several arbiters run: %s and %s; pick one with "
				"--control\n",
				client_name, buf, path);
		}
		closedir(d);
	}
	globfree(&g);
	if (client_skipped > STATUS_MAX_SKIP_LINES)
		fprintf(stderr, "%s: skipped %lu more sockets\n", client_name,
			client_skipped - STATUS_MAX_SKIP_LINES);
	if (late)
		fprintf(stderr,
			"%s: gave up the search after %.1f s (--timeout changes the "
			"wait)\n",
			client_name, (double)client_timeout_ms / 1000.0);
	if (found > 1 && *ret_fd >= 0)
		close(*ret_fd);
	return found == 1 ? 0 : found == 0 ? -ENOENT : -EEXIST;
}

/* --control PATH: the socket named, whoever listens there. A full listen queue may
 * empty: try again until the deadline. */
static int connect_named(const char *path)
{
	for (;;) {
		int fd = control_connect_to(path), wait = remaining_ms();

		if (fd != -EAGAIN || wait == 0)
			return fd;
		(void)poll(NULL, 0, wait < 0 || wait > 10 ? 10 : wait);
	}
}

/* Wait for events on fd until the deadline: 1 ready, 0 deadline, -errno. */
static int wait_fd(int fd, short events)
{
	struct pollfd p = {.fd = fd, .events = events};

	for (;;) {
		int n = poll(&p, 1, remaining_ms());

		if (n >= 0)
			return n;
		if (errno != EINTR)
			return -errno;
	}
}

static void no_answer(const char *path, const char *what)
{
	fprintf(stderr,
		"%s: %s: %s within %.1f s (is the arbiter stopped or hung? --timeout "
		"changes the wait)\n",
		client_name, path, what, (double)client_timeout_ms / 1000.0);
}

static int send_request(int fd, const char *path, const char *req)
{
	size_t off = 0, len = strlen(req);

	while (off < len) {
		ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		int r;

		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		/* Closed on us: it may have said why first (another uid) */
		if (errno == EPIPE || errno == ECONNRESET)
			return -EPIPE;
		if (errno != EAGAIN && errno != EINTR) {
			fprintf(stderr, "%s: %s: sending the request failed: %m\n", client_name,
				path);
			return -1;
		}
		r = wait_fd(fd, POLLOUT);
		if (r <= 0) {
			no_answer(path, "the request could not be sent");
			return -1;
		}
	}
	return 0;
}

/* `sigvisor status --events`: copy what comes as it comes, even into a pipe. */
static int follow(int fd, const char *path)
{
	char buf[8192];
	bool first = true;
	ssize_t n;

	/* Events come when they come: the deadline was for connecting only. */
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		if (first && n >= 6 && memcmp(buf, "error:", 6) == 0) {
			fprintf(stderr, "%s: %.*s", client_name, (int)n, buf);
			return EXIT_FATAL;
		}
		first = false;
		if (write(STDOUT_FILENO, buf, (size_t)n) != n)
			return EXIT_FATAL;
	}
	if (n < 0) {
		fprintf(stderr, "%s: %s: the connection failed: %m\n", client_name, path);
		return EXIT_FATAL;
	}
	if (first) {
		fprintf(stderr,
			"%s: %s: the arbiter closed the connection without "
			"answering\n",
			client_name, path);
		return EXIT_FATAL;
	}
	return EXIT_OK;
}

/* An answer's buffer is faulted in ahead of the reads, by one call each time it has
 * to be, rather than a page fault per 4 KB as read() fills it: a status of 4,096 workers
 * is 345 KB, and its faults took 1.3 ms of the command in a VM, 0.6 ms this way. Best
 * effort (before Linux 5.14 the faults happen as before). */
static void prefault(char *buf, size_t from, size_t to)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t a = ((uintptr_t)buf + from + page - 1) & ~(page - 1);
	uintptr_t b = ((uintptr_t)buf + to) & ~(page - 1);

	if (a < b)
		(void)madvise((void *)a, b - a, MADV_POPULATE_WRITE);
}

/* The first buffer is large enough for malloc to map it (and realloc to grow it by
 * mremap, never copying), and costs only the pages read into: the doublings of a small
 * one from the heap copied the answer each time, faulting in the new block. */
#define ANSWER_FIRST_CAP (256u << 10)

/* An answer: read all of it (up to STATUS_MAX_ANSWER, before the deadline) before
 * printing any, so a slow reader of our output (a pager) never keeps the arbiter's
 * connection open. 0 with *ret (malloc'd, NUL-terminated) and *ret_len, or -1 said. */
static int read_all(int fd, const char *path, char **ret, size_t *ret_len)
{
	size_t len = 0, cap = ANSWER_FIRST_CAP, ready = 0;
	char *buf = malloc(cap + 1);
	ssize_t n = 0;

	if (!buf) {
		fprintf(stderr, "%s: out of memory\n", client_name);
		return -1;
	}
	for (;;) {
		int w;

		if (len == cap) {
			char *nb = cap < STATUS_MAX_ANSWER ? realloc(buf, cap * 2 + 1) : NULL;

			if (cap >= STATUS_MAX_ANSWER) {
				fprintf(stderr,
					"%s: %s: the answer is larger than %u MiB: not a "
					"sigvisor's, giving up\n",
					client_name, path, STATUS_MAX_ANSWER >> 20);
				goto fail;
			}
			if (!nb) {
				fprintf(stderr, "%s: out of memory\n", client_name);
				goto fail;
			}
			buf = nb;
			cap *= 2;
		}
		if (len == ready) { /* twice what came so far, at least 16 KB */
			size_t to = len + (len > 16384 ? len : 16384);

			ready = to < cap ? to : cap;
			prefault(buf, len, ready);
		}
		n = read(fd, buf + len, ready - len);
		if (n > 0) {
			len += (size_t)n;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			break;
		w = wait_fd(fd, POLLIN);
		if (w == 0) {
			no_answer(path, "no answer");
			goto fail;
		}
		if (w < 0) {
			errno = -w;
			n = -1;
			break;
		}
	}
	/* A reset after a whole answer is its end: the arbiter refuses another uid as it
	 * accepts, before the request may have arrived, and closing with the request unread
	 * resets the connection behind what it said (Linux queues the reset after the
	 * data). */
	if (n < 0 && errno == ECONNRESET && len > 0 && buf[len - 1] == '\n')
		n = 0;
	if (n < 0) {
		fprintf(stderr, "%s: %s: the connection failed: %m\n", client_name, path);
		goto fail;
	}
	if (len == 0) {
		fprintf(stderr, "%s: %s: the arbiter closed the connection without answering\n",
			client_name, path);
		goto fail;
	}
	buf[len] = '\0';
	*ret = buf;
	*ret_len = len;
	return 0;
fail:
	free(buf);
	return -1;
}

static int read_answer(int fd, const char *path)
{
	char *buf;
	size_t len;
	int r = EXIT_FATAL;

	if (read_all(fd, path, &buf, &len) < 0)
		return EXIT_FATAL;
	if (len >= 6 && memcmp(buf, "error:", 6) == 0)
		fprintf(stderr, "%s: %.*s", client_name, (int)len, buf);
	else if (fwrite(buf, 1, len, stdout) == len && fflush(stdout) == 0)
		r = EXIT_OK;
	free(buf);
	return r;
}

void control_client_begin(const char *name, uint64_t timeout_ms)
{
	client_name = name;
	client_timeout_ms = timeout_ms;
	client_deadline_ms = timeout_ms ? now_ms() + timeout_ms : 0;
}

int control_client_remaining_ms(void)
{
	return remaining_ms();
}

int control_client_connect(const char *control, char *path, size_t len)
{
	int fd, r;

	if (control) {
		snprintf(path, len, "%s", control);
		fd = connect_named(control);
		if (fd == -EAGAIN) {
			no_answer(path, "its listen queue stayed full: no connection");
			return -1;
		}
	} else {
		r = find_socket(path, len, &fd);
		if (r == -ENOENT) {
			if (geteuid() == 0)
				fprintf(stderr,
					"%s: no running sigvisor found in $RUNTIME_DIRECTORY, "
					"/run/sigvisor or any /tmp/sigvisor-UID (pass --control "
					"PATH)\n",
					client_name);
			else
				fprintf(stderr,
					"%s: no running sigvisor found in $RUNTIME_DIRECTORY, "
					"/run/sigvisor or /tmp/sigvisor-%u (pass --control PATH)\n",
					client_name, (unsigned)geteuid());
			return -1;
		}
		if (r < 0)
			return -1;
	}
	if (fd < 0) {
		fprintf(stderr, "%s: cannot connect to %s: %s (%s)\n", client_name, path,
			strerror(-fd),
			fd == -ECONNREFUSED ? "a stale socket: the sigvisor that made it is gone"
					    : "is sigvisor running?");
		return -1;
	}
	return fd;
}

int control_client_ask(int fd, const char *path, const char *req, char **ret, size_t *ret_len)
{
	int r = send_request(fd, path, req);

	if (r < 0 && r != -EPIPE)
		return -1;
	return read_all(fd, path, ret, ret_len);
}

char *control_client_request(const char *control, char *path, size_t len, const char *req)
{
	char *ans = NULL;
	size_t n;
	int fd = control_client_connect(control, path, len);

	if (fd < 0)
		return NULL;
	if (control_client_ask(fd, path, req, &ans, &n) < 0)
		ans = NULL;
	close(fd);
	return ans;
}

int control_client_timeout(const char *name, const char *value, uint64_t *ret_ms)
{
	if (parse_duration_ms(value, ret_ms) == 0)
		return 0;
	fprintf(stderr, "%s: --timeout '%s': not a duration (5, 0.5, 250ms; 0: no limit)\n", name,
		value);
	return -EINVAL;
}

int control_client_arg(struct control_client_args *c, int argc, char **argv, int *i)
{
	const char *a = argv[*i];

	if (strcmp(a, "--json") == 0) {
		c->json = true;
	} else if (strcmp(a, "--control") == 0 && *i + 1 < argc) {
		c->control = argv[++*i];
	} else if (strncmp(a, "--control=", 10) == 0) {
		c->control = a + 10;
	} else if ((strcmp(a, "--timeout") == 0 && *i + 1 < argc) ||
		   strncmp(a, "--timeout=", 10) == 0) {
		const char *v = a[9] == '=' ? a + 10 : argv[++*i];

		if (control_client_timeout(c->name, v, &c->timeout_ms) < 0)
			return -1;
		c->timeout_given = true;
	} else {
		return 0;
	}
	return 1;
}

int control_client_usage(const struct control_client_args *c, const char *bad, const char *synopsis)
{
	fprintf(stderr,
		"%s: unknown argument '%s'\nusage: %s [--json] [--control PATH] "
		"[--timeout SECONDS]\n",
		c->name, bad, synopsis);
	return EXIT_USAGE;
}

int status_main(int argc, char **argv)
{
	struct control_client_args c = {.name = client_name, .timeout_ms = client_timeout_ms};
	bool events = false;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	const char *req;
	int fd, r;

	for (int i = 2; i < argc; i++) {
		r = control_client_arg(&c, argc, argv, &i);
		if (r < 0)
			return EXIT_USAGE;
		if (r > 0)
			continue;
		if (strcmp(argv[i], "--events") != 0)
			return control_client_usage(&c, argv[i], "sigvisor status [--events]");
		events = true;
	}
	control_client_begin(c.name, c.timeout_ms);
	fd = control_client_connect(c.control, path, sizeof(path));
	if (fd < 0)
		return EXIT_FATAL;
	req = events ? "events\n" : c.json ? "status json\n" : "status\n";
	r = send_request(fd, path, req);
	if (r < 0 && r != -EPIPE) {
		close(fd);
		return EXIT_FATAL;
	}
	r = events ? follow(fd, path) : read_answer(fd, path);
	close(fd);
	return r;
}
