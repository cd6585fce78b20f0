/* See descendants.h. Children are listed from /proc/PID/task/TID/children (each thread
 * has its own list), or where the kernel has no such file (CONFIG_PROC_CHILDREN off)
 * by the parent pid of every process in /proc. */
#include "descendants.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

bool descendants_any(void)
{
	siginfo_t si;

	/* WNOWAIT: only look; the pool reaps (and counts) them. __WALL: a child with
	 * another exit signal than SIGCHLD counts too. */
	return waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT | __WALL) == 0 || errno != ECHILD;
}

/* State and parent pid from /proc/PID/stat: 0, or -errno (-ESRCH: gone). */
static int read_stat(pid_t pid, char *state, pid_t *ppid)
{
	char p[64], buf[512], *rp;
	int fd, parent, err;
	char st;
	ssize_t n;

	snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	err = errno;
	close(fd);
	/* Reaped between the open (which found its zombie) and the read: ESRCH. */
	if (n < 0)
		return -err;
	if (n == 0)
		return -EIO;
	buf[n] = '\0';
	/* "pid (comm) state ppid ...": comm may hold any byte, so the last ')' ends it */
	rp = strrchr(buf, ')');
	if (!rp || sscanf(rp + 1, " %c %d", &st, &parent) != 2)
		return -EIO;
	*state = st;
	*ppid = (pid_t)parent;
	return 0;
}

int descendants_parent(pid_t pid, pid_t *ret)
{
	char state;

	return read_stat(pid, &state, ret);
}

int descendants_state(pid_t pid)
{
	char state;
	pid_t ppid;
	int r = read_stat(pid, &state, &ppid);

	return r < 0 ? r : (unsigned char)state;
}

/* The parent pid, or -1 when it cannot be read (gone, or not ours to read). */
static pid_t parent_of(pid_t pid)
{
	pid_t ppid;

	return descendants_parent(pid, &ppid) == 0 ? ppid : -1;
}

struct tree {
	pid_t pid[DESCENDANTS_MAX];
	pid_t parent[DESCENDANTS_MAX];
	size_t n;
};

static void add(struct tree *t, pid_t pid, pid_t parent)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->pid[i] == pid)
			return; /* listed by two threads' files as one was exiting */
	if (t->n < DESCENDANTS_MAX) {
		t->pid[t->n] = pid;
		t->parent[t->n++] = parent;
	}
}

/* Without children files: every process whose parent is pid. */
static void scan_children(struct tree *t, pid_t pid)
{
	DIR *d = opendir("/proc");
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)) && t->n < DESCENDANTS_MAX) {
		pid_t child;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		child = (pid_t)atoi(de->d_name);
		if (parent_of(child) == pid)
			add(t, child, pid);
	}
	closedir(d);
}

/* Append pid's children to t; false when the kernel has no children files. */
static bool list_children(struct tree *t, pid_t pid)
{
	char p[96];
	struct dirent *de;
	bool any_file = false, gone = true;
	DIR *d;

	snprintf(p, sizeof(p), "/proc/%d/task", (int)pid);
	d = opendir(p);
	if (!d)
		return true; /* exited: its children come to us */
	while ((de = readdir(d))) {
		char buf[4096];
		ssize_t n;
		int fd;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		gone = false;
		snprintf(p, sizeof(p), "/proc/%d/task/%d/children", (int)pid, atoi(de->d_name));
		fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		any_file = true;
		/* Space-separated pids; a list longer than the buffer is cut at a whole
		 * pid, and the rest is found by the next call. */
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		for (char *s = buf, *end; *s;) {
			long c = strtol(s, &end, 10);

			if (end == s)
				break;
			if (*end || n < (ssize_t)sizeof(buf) - 1) /* not cut off */
				add(t, (pid_t)c, pid);
			s = end;
			while (*s == ' ' || *s == '\n')
				s++;
		}
	}
	closedir(d);
	return any_file || gone;
}

int descendants_signal(int sig)
{
	static struct tree t; /* 32 KiB: not on the stack */
	char self[32];
	ssize_t n;
	pid_t me = getpid();
	int sent = 0;

	/* A /proc of another PID namespace would give pids that are not ours. */
	n = readlink("/proc/self", self, sizeof(self) - 1);
	if (n <= 0)
		return -errno;
	self[n] = '\0';
	if (atoi(self) != (int)me)
		return -EXDEV;
	t.n = 0;
	if (!list_children(&t, me))
		scan_children(&t, me);
	/* Breadth first: t grows as it is walked. A process is signalled after its
	 * children are listed, so one killed now cannot hand them to us unseen. */
	for (size_t i = 0; i < t.n; i++) {
		int pidfd;

		if (!list_children(&t, t.pid[i]))
			scan_children(&t, t.pid[i]);
		pidfd = pidfd_open(t.pid[i], 0);
		if (pidfd < 0)
			continue; /* exited */
		/* The pidfd holds the process: if its parent is still the one it was
		 * listed under, the pid was not reused before the pidfd_open. */
		if (parent_of(t.pid[i]) == t.parent[i] &&
		    pidfd_send_signal(pidfd, sig, NULL, 0) == 0)
			sent++;
		close(pidfd);
	}
	return sent;
}
