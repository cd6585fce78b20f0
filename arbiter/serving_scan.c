/* Readiness by serving, the look itself: what a worker's /proc says of it (its epoll
 * set, the syscall it sleeps in, its poll or select set), bounded (SCAN_* in
 * serving_internal.h) so that a worker with thousands of fds or threads cannot make a
 * look slow. It runs only in a look child (serving_look_child), never in the arbiter:
 * reading a worker's memory or its epoll's fdinfo can sleep for as long as the worker
 * wants (serving.c kills a look at its deadline). */
#include "serving_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bpf.h"
#include "log.h"
#include "loop.h"
#include "timeutil.h"

/* ---- the look at /proc --------------------------------------------------------------- */

static bool is_listener_ino(const struct serving *s, uint64_t ino)
{
	for (size_t i = 0; i < s->n_inodes; i++)
		if (s->inodes[i] == ino)
			return true;
	return false;
}

/* fds of one process that are listening sockets, as a bitmap of fd numbers < SCAN_FDS
 * (higher ones are found through epoll only). */
struct proc_fds {
	uint64_t listen[SCAN_FDS / 64];
	int epoll[16];
	size_t n_epoll;
};

static bool fd_listens(const struct proc_fds *f, long fd)
{
	return fd >= 0 && fd < SCAN_FDS && (f->listen[fd / 64] >> (fd % 64)) & 1;
}

static int read_fds(const struct serving *s, int procfd, struct proc_fds *f)
{
	int dfd = openat(procfd, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	unsigned seen = 0;
	DIR *d;

	memset(f, 0, sizeof(*f));
	if (dfd < 0)
		return -errno;
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return -ENOMEM;
	}
	while ((de = readdir(d)) && seen < SCAN_FDS) {
		char link[64];
		unsigned long long ino;
		char *end;
		long fd = strtol(de->d_name, &end, 10);
		ssize_t n;

		if (*end || end == de->d_name)
			continue;
		seen++;
		n = readlinkat(dfd, de->d_name, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (sscanf(link, "socket:[%llu]", &ino) == 1) {
			if (is_listener_ino(s, ino) && fd < SCAN_FDS)
				f->listen[fd / 64] |= 1ULL << (fd % 64);
		} else if (strcmp(link, "anon_inode:[eventpoll]") == 0 &&
			   f->n_epoll < sizeof(f->epoll) / sizeof(f->epoll[0])) {
			f->epoll[f->n_epoll++] = (int)fd;
		}
	}
	closedir(d);
	return 0;
}

/* An epoll fd's interest list, from its fdinfo: "tfd:        7 events:       19 data:
 * 7  pos:0 ino:2a4f sdev:8". */
static bool epoll_watches(const struct serving *s, int procfd, int epfd, char *how, size_t howlen)
{
	char path[48], line[256];
	bool found = false;
	FILE *fp;
	int fd;

	snprintf(path, sizeof(path), "fdinfo/%d", epfd);
	fd = openat(procfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	fp = fdopen(fd, "re");
	if (!fp) {
		close(fd);
		return false;
	}
	for (unsigned lines = 0; !found && lines < SCAN_FDS + 8 && fgets(line, sizeof(line), fp);
	     lines++) {
		const char *ino = strstr(line, " ino:");
		int tfd;

		if (sscanf(line, "tfd: %d", &tfd) != 1 || !ino)
			continue;
		if (is_listener_ino(s, strtoull(ino + 5, NULL, 16))) {
			snprintf(how, howlen, "epoll fd %d watches fd %d", epfd, tfd);
			found = true;
		}
	}
	fclose(fp);
	return found;
}

static bool read_mem(pid_t pid, uint64_t addr, void *buf, size_t len)
{
	struct iovec local = {.iov_base = buf, .iov_len = len};
	struct iovec remote = {.iov_base = (void *)(uintptr_t)addr, .iov_len = len};

	return addr && process_vm_readv(pid, &local, 1, &remote, 1, 0) == (ssize_t)len;
}

/* A thread in a system call that waits on a listening socket: its number and arguments
 * from task/TID/syscall ("43 0x3 0x7ffd… …"; "running" or "-1 …" otherwise). */
static bool thread_waits(pid_t pid, int taskfd, const struct proc_fds *f, char *how, size_t howlen)
{
	unsigned long long a[6] = {0};
	char buf[256];
	long nr;
	ssize_t n;
	int fd = openat(taskfd, "syscall", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	if (sscanf(buf, "%ld %llx %llx %llx %llx %llx %llx", &nr, &a[0], &a[1], &a[2], &a[3], &a[4],
		   &a[5]) < 2)
		return false;
	switch (nr) {
#ifdef SYS_accept
	case SYS_accept:
#endif
	case SYS_accept4:
		if (!fd_listens(f, (long)a[0]))
			return false;
		snprintf(how, howlen, "blocked in accept on fd %lld", (long long)a[0]);
		return true;
#ifdef SYS_poll
	case SYS_poll:
#endif
	case SYS_ppoll: {
		struct {
			int fd;
			short events, revents;
		} p[SCAN_POLLFDS];
		size_t k = a[1] < SCAN_POLLFDS ? a[1] : SCAN_POLLFDS;

		if (!k || !read_mem(pid, a[0], p, k * sizeof(p[0])))
			return false;
		for (size_t i = 0; i < k; i++)
			if ((p[i].events & POLLIN_) && fd_listens(f, p[i].fd)) {
				snprintf(how, howlen, "blocked in poll on fd %d", p[i].fd);
				return true;
			}
		return false;
	}
#ifdef SYS_select
	case SYS_select:
#endif
	case SYS_pselect6: {
		uint64_t bits[SCAN_POLLFDS / 4] = {0};
		size_t nfds = a[0] < SCAN_FDS ? a[0] : SCAN_FDS;

		if (!nfds || !read_mem(pid, a[1], bits, (nfds + 63) / 64 * 8))
			return false;
		for (size_t i = 0; i < nfds; i++)
			if ((bits[i / 64] >> (i % 64)) & 1 && fd_listens(f, (long)i)) {
				snprintf(how, howlen, "blocked in select on fd %zu", i);
				return true;
			}
		return false;
	}
	default:
		return false;
	}
}

static int scan_process(const struct serving *s, pid_t pid, pid_t *kids, size_t *n_kids,
			size_t max_kids, char *how, size_t howlen)
{
	char path[32], tail[96] = "";
	struct proc_fds f;
	struct dirent *de;
	bool found = false;
	unsigned threads = 0;
	int procfd, tdfd, r;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	procfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (procfd < 0)
		return -errno;
	r = read_fds(s, procfd, &f);
	for (size_t i = 0; r == 0 && !found && i < f.n_epoll; i++)
		found = epoll_watches(s, procfd, f.epoll[i], tail, sizeof(tail));
	tdfd = openat(procfd, "task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	d = tdfd >= 0 ? fdopendir(tdfd) : NULL;
	if (!d && tdfd >= 0)
		close(tdfd);
	while (d && (de = readdir(d)) && threads < SCAN_THREADS) {
		int taskfd;
		FILE *fp;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		threads++;
		taskfd = openat(tdfd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (taskfd < 0)
			continue;
		if (!found && r == 0)
			found = thread_waits(pid, taskfd, &f, tail, sizeof(tail));
		/* children of every thread: the tree to look at next */
		int cfd = openat(taskfd, "children", O_RDONLY | O_CLOEXEC);

		fp = cfd >= 0 ? fdopen(cfd, "re") : NULL;
		if (!fp && cfd >= 0)
			close(cfd);
		for (int kid; fp && *n_kids < max_kids && fscanf(fp, "%d", &kid) == 1;)
			kids[(*n_kids)++] = kid;
		if (fp)
			fclose(fp);
		close(taskfd);
	}
	if (d)
		closedir(d);
	close(procfd);
	if (r < 0)
		return r;
	if (!found)
		return 0;
	snprintf(how, howlen, "%s (pid %d)", tail, (int)pid);
	return 1;
}

int serving_scan(const struct serving *s, pid_t pid, char *how, size_t howlen)
{
	pid_t tree[SCAN_PROCS];
	size_t n = 1;

	tree[0] = pid;
	for (size_t i = 0; i < n; i++) {
		int r = scan_process(s, tree[i], tree, &n, SCAN_PROCS, how, howlen);

		if (r > 0)
			return 1;
		if (r < 0 && i == 0)
			return r;
	}
	return 0;
}

/* ---- the look child --------------------------------------------------------------- */

/* In the child: one scan per pid, each record written as soon as it is known (so a
 * look killed on one worker still tells about the others), then _exit. fork() (not a
 * raw clone3) runs the C library's at-fork handlers, so malloc and stdio are safe. */
_Noreturn void serving_look_child(const struct serving *s, const pid_t *pids, size_t n, int out,
				  pid_t parent)
{
	/* Keep nothing of the arbiter's open: a child stuck in the kernel must not hold
	 * the listening sockets (a restarted sigvisor could not bind), pidfds or links. */
	if (out != 3) {
		if (dup2(out, 3) < 0)
			_exit(1);
		out = 3;
	}
	(void)close_range(4, ~0U, 0);
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	for (size_t i = 0; i < n; i++) {
		struct look_record rec;

		memset(&rec, 0, sizeof(rec));
		rec.pid = pids[i];
		rec.r = serving_scan(s, pids[i], rec.how, sizeof(rec.how));
		if (write(out, &rec, sizeof(rec)) != (ssize_t)sizeof(rec))
			_exit(1);
	}
	_exit(0);
}
