/* sd_notify for workers and for sigvisor itself; see notify.h. */
#include "notify.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <linux/magic.h>

#include "descendants.h"
#include "log.h"
#include "spawn.h"
#include "timeutil.h"

static void open_upstream_watchdog(struct notify *n)
{
	const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
	unsigned long long v;
	char *end;

	if (!usec || !*usec)
		return;
	/* As sd_watchdog_enabled(): a WATCHDOG_PID that is not ours means it is meant
	 * for another process (our parent's, passed down). */
	if (pid && *pid && strtol(pid, NULL, 10) != (long)getpid())
		return;
	v = strtoull(usec, &end, 10);
	if (*end || v < 2000) {
		log_warn("WATCHDOG_USEC=%s is not a usable interval, not pinging our supervisor",
			 usec);
		return;
	}
	n->upstream_watchdog_ms = v / 1000;
	n->upstream_ping_due_ms = now_ms();
	log_info("our supervisor's watchdog is %.3f s: WATCHDOG=1 every %.3f s", (double)v / 1e6,
		 (double)v / 2e6);
}

uint64_t notify_upstream_deadline(const struct notify *n)
{
	return sd_notifier_enabled(&n->upstream) && n->upstream_watchdog_ms
		       ? n->upstream_ping_due_ms
		       : 0;
}

void notify_upstream_tick(struct notify *n, uint64_t now)
{
	if (!notify_upstream_deadline(n) || now < n->upstream_ping_due_ms)
		return;
	notify_upstream(n, "WATCHDOG=1");
	n->upstream_ping_due_ms = now + n->upstream_watchdog_ms / 2;
}

static void open_upstream(struct notify *n)
{
	const char *path = getenv("NOTIFY_SOCKET");

	if (sd_notifier_init(&n->upstream, path) < 0) {
		log_warn("NOTIFY_SOCKET=%s is not a socket path, not notifying our supervisor",
			 path);
		return;
	}
	open_upstream_watchdog(n);
}

void notify_init(struct notify *n, pid_t pid)
{
	memset(n, 0, sizeof(*n));
	n->pid = pid;
	/* The random part keeps another sigvisor with the same pid (in another PID
	 * namespace sharing our network namespace) from colliding. */
	(void)!getrandom(&n->cookie, sizeof(n->cookie), GRND_NONBLOCK);
	open_upstream(n);
}

/* The directory of the workers' sockets in base, made unless only_existing (see
 * choose_dir). Mode 0711: a worker that dropped its privileges may pass through to
 * its own socket, nobody may list them. Named by our pid and cookie, so the image
 * that follows a USR2 (same pid, cookie handed over) finds and keeps it. */
static bool try_dir(struct notify *n, const char *base, const char *prefix, bool for_others,
		    bool only_existing)
{
	struct stat st;
	int len;

	if (!base || base[0] != '/')
		return false;
	if (!only_existing && strcmp(base, "/run/sigvisor") == 0 && mkdir(base, 0755) < 0 &&
	    errno != EEXIST)
		return false;
	/* Workers under --user must pass through it (the control socket's directory is
	 * 0700, for one). */
	if (for_others && (stat(base, &st) < 0 || !(st.st_mode & S_IXOTH)))
		return false;
	len = snprintf(n->dir, sizeof(n->dir), "%s/%snotify-%d-%08x", base, prefix, (int)n->pid,
		       n->cookie);
	/* Room for "/<seq>" in a sun_path. */
	if (len < 0 || (size_t)len + 12 >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		n->dir[0] = '\0';
		return false;
	}
	if (only_existing)
		errno = EEXIST;
	else if (mkdir(n->dir, 0711) == 0 && chmod(n->dir, 0711) == 0)
		return true;
	/* Ours from before an upgrade, or a trap laid in /tmp: only a real directory of
	 * ours that nobody else may write to will do. */
	if (errno == EEXIST && lstat(n->dir, &st) == 0 && S_ISDIR(st.st_mode) &&
	    st.st_uid == geteuid() && (st.st_mode & 07777) == 0711)
		return true;
	n->dir[0] = '\0';
	return false;
}

/* Whether some process still holds a socket bound in dir: connecting a datagram socket
 * sends nothing, and is refused where nobody holds the name. */
static bool dir_in_use(int dirfd, const char *dir)
{
	DIR *d = fdopendir(dirfd);
	struct dirent *e;
	bool used = false;

	if (!d) {
		close(dirfd);
		return true;
	}
	while (!used && (e = readdir(d))) {
		struct sockaddr_un un = {.sun_family = AF_UNIX};
		int fd;

		if (e->d_name[0] == '.' || snprintf(un.sun_path, sizeof(un.sun_path), "%s/%s", dir,
						    e->d_name) >= (int)sizeof(un.sun_path))
			continue;
		fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&un, sizeof(un)) == 0 ||
		    errno != ECONNREFUSED)
			used = true;
		if (fd >= 0)
			close(fd);
	}
	closedir(d);
	return used;
}

/* Directories of arbiters that were killed (SIGKILL, OOM) before they could remove
 * theirs: nobody holds a socket in them any more. A live arbiter that has no worker
 * just then loses an empty directory, and makes it again for its next worker. */
static void sweep_stale(const char *base, const char *prefix, const char *ours)
{
	DIR *d = opendir(base);
	struct dirent *e;
	unsigned n = 0;

	if (!d)
		return;
	while ((e = readdir(d))) {
		char dir[PATH_MAX];
		struct stat st;
		int fd;

		if (strncmp(e->d_name, prefix, strlen(prefix)) != 0 ||
		    snprintf(dir, sizeof(dir), "%s/%s", base, e->d_name) >= (int)sizeof(dir) ||
		    strcmp(dir, ours) == 0)
			continue;
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (fstat(fd, &st) < 0 || st.st_uid != geteuid() || dir_in_use(dup(fd), dir)) {
			close(fd);
			continue;
		}
		{
			DIR *sub = fdopendir(fd);
			struct dirent *f;

			if (!sub) {
				close(fd);
				continue;
			}
			rewinddir(sub); /* the dup read by dir_in_use shares the offset */
			while ((f = readdir(sub)))
				if (f->d_name[0] != '.')
					(void)unlinkat(dirfd(sub), f->d_name, 0);
			closedir(sub);
		}
		if (rmdir(dir) == 0)
			n++;
	}
	closedir(d);
	if (n)
		log_info("removed %u notify socket directories of arbiters that are gone from %s",
			 n, base);
}

/* Whether path is on a file system in memory. Each worker's socket is an inode made
 * at its start and removed at its exit: on tmpfs that is a few microseconds; on ext4
 * (a /run on the root file system) it was a quarter of the arbiter's CPU for a
 * 4,096-worker start, in the inode allocator and its journal. */
static bool in_memory(const char *path)
{
	struct statfs sf;
	char parent[PATH_MAX];
	const char *slash;

	if (statfs(path, &sf) < 0) {
		/* /run/sigvisor is made on first use: then /run is where it will be. */
		slash = strrchr(path, '/');
		if (errno != ENOENT || !slash || slash == path ||
		    snprintf(parent, sizeof(parent), "%.*s", (int)(slash - path), path) < 0 ||
		    statfs(parent, &sf) < 0)
			return false;
	}
	return sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC;
}

/* $RUNTIME_DIRECTORY if set and usable (systemd's, on its /run: the service manager
 * said where). Else the first of /run/sigvisor, /dev/shm and /tmp that is usable,
 * preferring: one of ours that exists already (made by the image before a USR2, whose
 * workers we adopted), then the first in memory, then the first at all. */
static void choose_dir(struct notify *n, bool for_others)
{
	const char *rd = getenv("RUNTIME_DIRECTORY");
	char first[PATH_MAX] = "";
	const struct {
		const char *base, *prefix;
	} cand[] = {
		{"/run/sigvisor", ""},
		{"/dev/shm", "sigvisor-"},
		{"/tmp", "sigvisor-"},
	};
	enum { EXISTING, IN_MEMORY, ANY } pass;

	if (n->dir_chosen)
		return;
	n->dir_chosen = true;
	if (rd) /* systemd may list several, separated by ':' */
		snprintf(first, sizeof(first), "%.*s", (int)strcspn(rd, ":"), rd);
	if (try_dir(n, first, "", for_others, false)) {
		sweep_stale(first, "notify-", n->dir);
		return;
	}
	for (pass = EXISTING; pass <= ANY; pass++)
		for (size_t i = 0; i < sizeof(cand) / sizeof(cand[0]); i++) {
			char prefix[32];

			if (pass == IN_MEMORY && !in_memory(cand[i].base))
				continue;
			if (!try_dir(n, cand[i].base, cand[i].prefix, for_others, pass == EXISTING))
				continue;
			snprintf(prefix, sizeof(prefix), "%snotify-", cand[i].prefix);
			sweep_stale(cand[i].base, prefix, n->dir);
			return;
		}
	log_warn("no writable directory for the workers' notify sockets ($RUNTIME_DIRECTORY, "
		 "/run/sigvisor, /dev/shm, /tmp): they are abstract sockets, which any local "
		 "process can reach");
}

int notify_open_worker(struct notify *n, uid_t uid, gid_t gid, int *ret_fd, char *env,
		       size_t envlen)
{
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	socklen_t addrlen;
	int fd, one = 1, len, r;

	choose_dir(n, uid != (uid_t)-1);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* SO_PASSCRED: the sender's pid on each datagram. SO_TIMESTAMPNS: a ping read
	 * late still counts from when it arrived. */
	if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	if (n->dir[0]) {
		mode_t old;

		/* A file only the worker's uid (and root) may write to: a stranger cannot
		 * fill its queue and starve its watchdog pings. Bound under umask 0177 so
		 * the file is never open to others, even for a moment. */
		len = snprintf(un.sun_path, sizeof(un.sun_path), "%s/%u", n->dir, n->seq++);
		addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)len + 1);
		(void)unlink(un.sun_path); /* a leftover of a worker of a killed image */
		old = umask(0177);
		r = bind(fd, (struct sockaddr *)&un, addrlen);
		if (r < 0 && errno == ENOENT && mkdir(n->dir, 0711) == 0 &&
		    chmod(n->dir, 0711) == 0)
			r = bind(fd, (struct sockaddr *)&un,
				 addrlen); /* swept as stale: made again */
		umask(old);
		if (r == 0 && uid != (uid_t)-1 && chown(un.sun_path, uid, gid) < 0) {
			r = -1;
			(void)unlink(un.sun_path);
		}
		if (r < 0) {
			r = -errno;
			close(fd);
			return r;
		}
		snprintf(env, envlen, "NOTIFY_SOCKET=%s", un.sun_path);
	} else {
		/* Abstract: no place to put a file (a read-only root). A sequence number
		 * makes each worker's name its own. */
		len = snprintf(un.sun_path + 1, sizeof(un.sun_path) - 1, "sigvisor/%d/%08x/%u",
			       (int)n->pid, n->cookie, n->seq++);
		addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len);
		if (bind(fd, (struct sockaddr *)&un, addrlen) < 0) {
			r = -errno;
			close(fd);
			return r;
		}
		snprintf(env, envlen, "NOTIFY_SOCKET=@%s", un.sun_path + 1);
	}
	*ret_fd = spawn_fd_high(fd);
	return 0;
}

void notify_close_worker(struct notify *n, int fd)
{
	struct sockaddr_un un;
	socklen_t len = sizeof(un);
	size_t dirlen = strlen(n->dir);

	if (fd < 0)
		return;
	/* The path from the socket itself: it may have been handed over by an upgrade. */
	memset(&un, 0, sizeof(un));
	if (dirlen && getsockname(fd, (struct sockaddr *)&un, &len) == 0 && un.sun_path[0] == '/' &&
	    strncmp(un.sun_path, n->dir, dirlen) == 0 && un.sun_path[dirlen] == '/' &&
	    unlink(un.sun_path) < 0 && errno != ENOENT)
		log_warn("cannot remove %s, ignoring: %m", un.sun_path);
	close(fd);
}

void notify_adopt(struct notify *n, unsigned cookie, unsigned seq)
{
	n->cookie = cookie;
	n->seq = seq;
}

void notify_close(struct notify *n)
{
	sd_notifier_close(&n->upstream);
	/* Empty by now: each worker's socket went with it. */
	if (n->dir[0] && rmdir(n->dir) < 0 && errno != ENOENT)
		log_warn("cannot remove %s, ignoring: %m", n->dir);
	n->dir[0] = '\0';
}

static bool line_is(const char *line, size_t len, const char *what)
{
	return len == strlen(what) && memcmp(line, what, len) == 0;
}

void notify_parse(const char *msg, size_t len, struct notify_msg *ret)
{
	memset(ret, 0, sizeof(*ret));
	for (size_t i = 0; i < len;) {
		const char *line = msg + i, *nl = memchr(line, '\n', len - i);
		size_t n = nl ? (size_t)(nl - line) : len - i;

		if (line_is(line, n, "READY=1"))
			ret->ready = true;
		else if (line_is(line, n, "WATCHDOG=1"))
			ret->watchdog = true;
		else if (line_is(line, n, "STOPPING=1"))
			ret->stopping = true;
		else if (n > 20 && n < 40 && memcmp(line, "EXTEND_TIMEOUT_USEC=", 20) == 0) {
			char digits[24];
			char *end;
			unsigned long long v;

			memcpy(digits, line + 20, n - 20);
			digits[n - 20] = '\0';
			v = strtoull(digits, &end, 10);
			if (*end == '\0' && digits[0] >= '0' && digits[0] <= '9')
				ret->extend_usec = v;
		} else if (n >= 7 && memcmp(line, "STATUS=", 7) == 0) {
			ret->status = line + 7;
			ret->status_len = n - 7;
			/* a status is for a terminal: no control bytes (NUL, escapes) */
			for (size_t k = 0; k < ret->status_len; k++)
				if ((unsigned char)ret->status[k] < 0x20) {
					ret->status_len = k;
					break;
				}
		}
		i += n + 1;
	}
}

/* The kernel stamps a datagram with CLOCK_REALTIME; deadlines are CLOCK_MONOTONIC. */
static uint64_t arrival_ms(const struct timespec *real)
{
	struct timespec now;
	int64_t age_ms;
	uint64_t mono = now_ms();

	clock_gettime(CLOCK_REALTIME, &now);
	age_ms = (int64_t)(now.tv_sec - real->tv_sec) * 1000 +
		 (now.tv_nsec - real->tv_nsec) / 1000000;
	if (age_ms < 0)
		age_ms = 0; /* the wall clock stepped back: call it now */
	return (uint64_t)age_ms < mono ? mono - (uint64_t)age_ms : mono;
}

/* Whether pid is a descendant of ancestor, by the parent links in /proc: for
 * --notify-access all, where systemd-notify or any child of a worker may speak for it.
 * The sender is alive while we read: sd_notify_barrier() waits for our answer, and a
 * plain sd_notify() that exited first is simply not believed. */
enum lineage { LINEAGE_NO, LINEAGE_YES, LINEAGE_GONE };

/* Whether pid descends from ancestor, by the parent pids in /proc; LINEAGE_GONE when
 * pid itself has exited and been reaped before we could look. */
static enum lineage descends_from(pid_t pid, pid_t ancestor)
{
	for (int depth = 0; depth < 64 && pid > 1; depth++) {
		pid_t ppid;
		int r = descendants_parent(pid, &ppid);

		if (r < 0)
			return depth == 0 && r == -ESRCH ? LINEAGE_GONE : LINEAGE_NO;
		if (ppid == ancestor)
			return LINEAGE_YES;
		pid = ppid;
	}
	return LINEAGE_NO;
}

/* --notify-access all: a process of the worker's tree may speak for it. One that sent
 * and exited at once (systemd-notify --no-block; any sender whose parent reaped it
 * before we read) has no /proc left to trace: the kernel's word at receipt is its uid
 * (SCM_CREDENTIALS), and the worker's own socket is reachable only by the worker's
 * uid and root (its directory is theirs). A sender of the worker's uid is then one
 * that could trace the worker anyway: believed. */
static bool tree_member(const struct ucred *cred, const struct notify_sender *from)
{
	switch (descends_from(cred->pid, from->pid)) {
	case LINEAGE_YES:
		return true;
	case LINEAGE_GONE:
		return cred->uid == from->uid;
	case LINEAGE_NO:
	default:
		return false;
	}
}

/* Close the fds an SCM_RIGHTS message carried. */
static void close_rights(struct cmsghdr *rights)
{
	for (int *passed = (int *)CMSG_DATA(rights);
	     (char *)(passed + 1) <= (char *)rights + rights->cmsg_len; passed++)
		close(*passed);
}

/* A datagram received but not handed on (the reader stopped): its fds, closed. */
static void close_passed(struct msghdr *msg)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			close_rights(c);
}

/* Datagrams read per recvmmsg: one call answers "anything waiting?" for a worker's
 * socket and reads its usual backlog (a ping or two, a STATUS=) with it, where a
 * recvmsg loop needs a last call for EAGAIN. At 4,096 workers a status reads every
 * socket: half the calls (issue 29). */
#define NOTIFY_BATCH 4

/* One datagram as received; true to go on reading. */
static bool notify_one(struct notify *n, char *buf, struct msghdr *msg, size_t len,
		       const struct notify_sender *from, notify_fn on_msg, void *ctx)
{
	uint64_t arrived = 0;
	struct ucred *cred = NULL;
	struct cmsghdr *rights = NULL;
	struct notify_msg m;
	bool believed;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
		    c->cmsg_len == CMSG_LEN(sizeof(struct ucred)))
			cred = (struct ucred *)CMSG_DATA(c);
		else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS &&
			 c->cmsg_len == CMSG_LEN(sizeof(struct timespec)))
			arrived = arrival_ms((struct timespec *)CMSG_DATA(c));
		else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			rights = c;
	}
	n->received++;
	/* Judged before the passed fds are closed: closing a BARRIER=1's fd releases its
	 * sender (systemd-notify), which may then exit before its process tree could be
	 * looked at. */
	believed = cred && !(msg->msg_flags & MSG_TRUNC) &&
		   (cred->pid == from->pid ||
		    (from->access == NOTIFY_ACCESS_ALL && tree_member(cred, from)));
	/* fd passing (FDSTORE) is not supported: close what came, which is also what
	 * answers a BARRIER=1. */
	if (rights)
		close_rights(rights);
	notify_parse(buf, len, &m);
	/* Only the worker itself is believed (systemd's NotifyAccess=main), or with
	 * --notify-access all any process of its tree: never another process that found
	 * the address. */
	if (!believed) {
		uint64_t held;

		n->rejected++;
		/* A flood (from root or the worker's own uid: nobody else can reach the
		 * socket) is counted in full and logged once a second. */
		if (!ratelimit_pass(&n->rejected_log, now_ms(), &held))
			return true;
		if (held)
			log_warn("notify socket of worker %u: dropped a message from pid %d: not "
				 "that worker (and %llu more since the last such line)",
				 from->id, cred ? (int)cred->pid : 0, (unsigned long long)held);
		else
			log_warn("notify socket of worker %u: dropped a message from pid %d: not "
				 "that worker",
				 from->id, cred ? (int)cred->pid : 0);
		on_msg(ctx, &m, false, 0);
		return true;
	}
	return on_msg(ctx, &m, true, arrived ? arrived : now_ms());
}

void notify_read(struct notify *n, int fd, const struct notify_sender *from, notify_fn on_msg,
		 void *ctx)
{
	/* Static: 16 KiB of datagrams; the arbiter has one thread and this does not
	 * recurse (on_msg reads no socket). */
	static char bufs[NOTIFY_BATCH][4096];
	static union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(struct timespec)) +
			 CMSG_SPACE(16 * sizeof(int))];
	} controls[NOTIFY_BATCH];
	struct iovec iov[NOTIFY_BATCH];
	struct mmsghdr mm[NOTIFY_BATCH];
	bool go_on = true;
	int got;

	while (fd >= 0 && go_on) {
		for (int i = 0; i < NOTIFY_BATCH; i++) {
			iov[i] =
				(struct iovec){.iov_base = bufs[i], .iov_len = sizeof(bufs[i]) - 1};
			mm[i] = (struct mmsghdr){.msg_hdr = {
							 .msg_iov = &iov[i],
							 .msg_iovlen = 1,
							 .msg_control = &controls[i],
							 .msg_controllen = sizeof(controls[i]),
						 }};
		}
		got = recvmmsg(fd, mm, NOTIFY_BATCH, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, NULL);
		if (got < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_warn("worker %u's notify socket, ignoring: %m", from->id);
			return;
		}
		for (int i = 0; i < got; i++) {
			if (go_on)
				go_on = notify_one(n, bufs[i], &mm[i].msg_hdr, mm[i].msg_len, from,
						   on_msg, ctx);
			else
				close_passed(&mm[i].msg_hdr);
		}
		/* Fewer than asked for: the socket is empty (as of the call). */
		if (got < NOTIFY_BATCH)
			return;
	}
}

uint64_t notify_rejected_deadline(const struct notify *n)
{
	return ratelimit_deadline(&n->rejected_log);
}

void notify_rejected_flush(struct notify *n, uint64_t now)
{
	uint64_t held = ratelimit_flush(&n->rejected_log, now);

	if (held)
		log_warn("notify sockets: dropped %llu more messages not from their worker "
			 "since the last such line",
			 (unsigned long long)held);
}

void notify_upstream(struct notify *n, const char *msg)
{
	int r = sd_notifier_send(&n->upstream, msg);

	if (r < 0)
		log_warn("sd_notify to our supervisor failed, ignoring: %s", strerror(-r));
}
