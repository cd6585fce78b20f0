/* Readiness by serving: see serving.h. The /proc look is bounded (SCAN_* below) so
 * that a worker with thousands of fds or threads cannot make the arbiter's loop slow;
 * what it does not look at, the fallback time covers. */
#include "serving.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bpf.h"
#include "log.h"

#define MAX_SOCKS    64	 /* listening sockets compared */
#define SCAN_PROCS   16	 /* processes of one worker's tree looked at */
#define SCAN_FDS     256 /* fds of one process */
#define SCAN_THREADS 64	 /* threads of one process */
#define SCAN_POLLFDS 64	 /* entries of a poll set, bits of a select set: 1024 */
#define POLLIN_	     0x001

struct watch {
	pid_t pid;
	bool bpf;	      /* watched by the probe (one bpf_probes_serving_watch) */
	uint64_t started_ms;  /* for the cadence */
	uint64_t scan_ms;     /* next look at /proc */
	uint64_t fallback_ms; /* not seen by then: reported with how NULL */
};

struct serving {
	struct serving_hooks hooks;
	struct bpf_probes *bpf;
	uint64_t inodes[MAX_SOCKS];
	size_t n_inodes;
	struct watch *w;
	size_t n, cap;
	char said[160]; /* the method last logged */
};

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

/* ---- watching ------------------------------------------------------------------------ */

struct serving *serving_new(const struct serving_hooks *hooks)
{
	struct serving *s = calloc(1, sizeof(*s));

	if (s)
		s->hooks = *hooks;
	return s;
}

static struct watch *find(const struct serving *s, pid_t pid)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->w[i].pid == pid)
			return &s->w[i];
	return NULL;
}

static void drop(struct serving *s, struct watch *w)
{
	if (w->bpf)
		bpf_probes_serving_unwatch(s->bpf, w->pid);
	*w = s->w[--s->n];
}

void serving_free(struct serving *s)
{
	if (!s)
		return;
	while (s->n)
		drop(s, &s->w[0]);
	free(s->w);
	free(s);
}

static void push_sockets(struct serving *s)
{
	int r;

	if (!s->bpf || !bpf_probes_serving(s->bpf))
		return;
	r = bpf_probes_serving_sockets(s->bpf, s->inodes, s->n_inodes);
	if (r < 0)
		log_warn("BPF: cannot give the serving probe the listening sockets, looking at "
			 "/proc instead: %s",
			 strerror(-r));
}

void serving_set_sockets(struct serving *s, const int *fds, size_t n)
{
	uint64_t inodes[MAX_SOCKS];
	size_t k = 0;

	if (!s)
		return;
	for (size_t i = 0; i < n && k < MAX_SOCKS; i++) {
		struct stat st;

		if (fds[i] >= 0 && fstat(fds[i], &st) == 0)
			inodes[k++] = st.st_ino;
	}
	if (k == s->n_inodes && memcmp(inodes, s->inodes, k * sizeof(inodes[0])) == 0)
		return; /* the common case: the same sockets as for the last worker */
	memcpy(s->inodes, inodes, k * sizeof(inodes[0]));
	s->n_inodes = k;
	push_sockets(s);
}

static const char *method_line(const struct serving *s, char *buf, size_t len)
{
	const char *off = bpf_probes_part_off(s->bpf, BPF_PART_SERVING);

	if (s->bpf && !off)
		snprintf(buf, len,
			 "the eBPF probe (accept, epoll_ctl, poll, select; attached while a "
			 "worker boots)");
	else
		snprintf(buf, len,
			 "a look at /proc every %d ms (epoll interest lists, threads blocked in "
			 "accept, poll, select; eBPF: %s)",
			 SERVING_SCAN_MS, off);
	return buf;
}

static void say_method(struct serving *s)
{
	char m[sizeof(s->said)];

	method_line(s, m, sizeof(m));
	if (strcmp(m, s->said) == 0)
		return;
	snprintf(s->said, sizeof(s->said), "%s", m);
	log_info("--ready-mode auto: a COMMAND worker is ready on READY=1, or once it accepts "
		 "from or waits on a listening socket, seen by %s",
		 m);
}

const char *serving_method(const struct serving *s)
{
	return s->bpf && !bpf_probes_part_off(s->bpf, BPF_PART_SERVING) ? "eBPF" : "/proc";
}

static void to_probe(struct serving *s, struct watch *w)
{
	if (w->bpf || !s->bpf || !bpf_probes_serving(s->bpf))
		return;
	w->bpf = bpf_probes_serving_watch(s->bpf, w->pid) == 0;
}

static void on_probe(void *ctx, pid_t pid, const char *how)
{
	struct serving *s = ctx;
	struct watch *w = find(s, pid);

	if (!w)
		return; /* forgotten meanwhile (READY=1, exit) */
	drop(s, w);
	s->hooks.seen(s->hooks.ctx, pid, how);
}

void serving_set_probes(struct serving *s, struct bpf_probes *p)
{
	if (!s || s->bpf == p)
		return;
	for (size_t i = 0; i < s->n; i++) {
		if (s->w[i].bpf)
			bpf_probes_serving_unwatch(s->bpf, s->w[i].pid);
		s->w[i].bpf = false;
	}
	s->bpf = p;
	if (p) {
		bpf_probes_serving_callback(p, on_probe, s);
		push_sockets(s);
	}
	for (size_t i = 0; i < s->n; i++)
		to_probe(s, &s->w[i]);
	if (s->n)
		say_method(s);
}

static uint64_t next_scan(const struct watch *w, uint64_t now)
{
	if (!w->bpf && now - w->started_ms < SERVING_FAST_MS)
		return now + SERVING_SCAN_MS;
	return now + SERVING_SLOW_MS;
}

int serving_watch(struct serving *s, pid_t pid, uint64_t now_ms, uint64_t fallback_ms)
{
	struct watch *w = find(s, pid);

	if (!w) {
		if (s->n == s->cap) {
			size_t cap = s->cap ? s->cap * 2 : 8;
			struct watch *nw = realloc(s->w, cap * sizeof(*nw));

			if (!nw)
				return -ENOMEM;
			s->w = nw;
			s->cap = cap;
		}
		w = &s->w[s->n++];
		memset(w, 0, sizeof(*w));
		w->pid = pid;
	}
	w->started_ms = now_ms;
	w->fallback_ms = now_ms + fallback_ms;
	to_probe(s, w);
	w->scan_ms = next_scan(w, now_ms);
	say_method(s);
	return 0;
}

void serving_forget(struct serving *s, pid_t pid)
{
	struct watch *w = s ? find(s, pid) : NULL;

	if (w)
		drop(s, w);
}

bool serving_watching(const struct serving *s, pid_t pid)
{
	return s && find(s, pid) != NULL;
}

void serving_run(struct serving *s, uint64_t now_ms)
{
	/* One at a time: the hook may start or stop watching others. */
	for (size_t i = 0; s && i < s->n;) {
		struct watch *w = &s->w[i];
		pid_t pid = w->pid;
		char how[160];
		int r = 0;

		if (w->scan_ms <= now_ms) {
			r = serving_scan(s, pid, how, sizeof(how));
			w->scan_ms = next_scan(w, now_ms);
			if (r > 0 && w->bpf) {
				/* What /proc shows came after the system call's entry, where
				 * the probe wrote its event: let that account (which names
				 * the call) be the one used, if it is there. */
				bpf_probes_poll(s->bpf);
				w = find(s, pid); /* the poll may have dropped any of them */
				if (!w) {
					i = 0;
					continue;
				}
				i = (size_t)(w - s->w);
			}
		}
		if (r > 0 || w->fallback_ms <= now_ms) {
			drop(s, w);
			s->hooks.seen(s->hooks.ctx, pid, r > 0 ? how : NULL);
			i = 0;
			continue;
		}
		i++;
	}
}

uint64_t serving_next_deadline(const struct serving *s)
{
	uint64_t next = 0;

	for (size_t i = 0; s && i < s->n; i++) {
		uint64_t d = s->w[i].scan_ms < s->w[i].fallback_ms ? s->w[i].scan_ms
								   : s->w[i].fallback_ms;

		if (!next || d < next)
			next = d;
	}
	return next;
}
