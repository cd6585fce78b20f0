/* Reading a config file in a child process with a deadline; see config_file.h. The
 * child gathers facts (judge, gather) and the bytes; the parent words the messages. */
#include "config_file.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "safefile.h"
#include "timeutil.h"

/* What a file that is not a regular one is, for the error message. */
static const char *file_type_name(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFDIR:
		return "a directory";
	case S_IFIFO:
		return "a FIFO";
	case S_IFCHR:
		return "a character device";
	case S_IFBLK:
		return "a block device";
	case S_IFSOCK:
		return "a socket";
	default:
		return "not a regular file";
	}
}

/* What the reader found, facts only: the child that gathers them makes system calls
 * and nothing else (it must end within its deadline whatever the C library does), and
 * the parent words the message. */
enum config_step {
	CONFIG_READ_OK,
	CONFIG_OPEN_FAILED,
	CONFIG_STAT_FAILED,
	CONFIG_NOT_REGULAR,
	CONFIG_STATFS_FAILED,
	CONFIG_PSEUDO_FS,
	CONFIG_READ_FAILED,
	CONFIG_TOO_BIG,
};

struct config_facts {
	uint32_t magic; /* CONFIG_FACTS_MAGIC: the reader got to the end and wrote them */
	int32_t step;	/* enum config_step */
	int32_t errnum;
	uint32_t mode;
	uint32_t fs_type;
	uint32_t pad;
	uint64_t bytes; /* of the file, sent before the facts */
};

#define CONFIG_FACTS_MAGIC 0x73766366u /* "svcf" */

/* A regular file on a filesystem that stores files. A pseudo-filesystem's "regular
 * files" are kernel interfaces that pass every other test: /proc/kmsg blocks in read()
 * until the kernel logs something, and takes what it reads from whoever else reads
 * it; a sysfs or debugfs file may act on the hardware when read. */
static int judge(int fd, struct config_facts *f)
{
	struct stat st;
	struct statfs sf;

	if (fstat(fd, &st) < 0) {
		f->step = CONFIG_STAT_FAILED;
		f->errnum = errno;
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		f->step = CONFIG_NOT_REGULAR;
		f->mode = (uint32_t)st.st_mode;
		return -1;
	}
	if (fstatfs(fd, &sf) < 0) {
		f->step = CONFIG_STATFS_FAILED;
		f->errnum = errno;
		return -1;
	}
	if (safefile_pseudo_fs((long)sf.f_type)) {
		f->step = CONFIG_PSEUDO_FS;
		f->fs_type = (uint32_t)sf.f_type;
		return -1;
	}
	return 0;
}

static int write_all(int out, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(out, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* In the reader child: the file's bytes to out, at most CONFIG_MAX_SIZE of them, and
 * what it found in *f. */
static void gather(const char *path, int out, struct config_facts *f)
{
	char buf[16384];
	size_t total = 0;
	int fd, flags;

	/* First a look through an O_PATH fd, which opens nothing: opening a device can
	 * have effects of its own (a tape rewinds, a watchdog is armed). */
	fd = open(path, O_PATH | O_CLOEXEC);
	if (fd < 0) {
		f->step = CONFIG_OPEN_FAILED;
		f->errnum = errno;
		return;
	}
	flags = judge(fd, f);
	close(fd);
	if (flags < 0)
		return;
	/* Then the real open. The path may have been swapped since (a symlink pointed
	 * elsewhere before a HUP): O_NONBLOCK keeps a FIFO from blocking the open,
	 * O_NOCTTY keeps a terminal from becoming ours, and what counts is the fd we
	 * read from. */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		f->step = CONFIG_OPEN_FAILED;
		f->errnum = errno;
		return;
	}
	if (judge(fd, f) < 0)
		goto out;
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
		f->step = CONFIG_READ_FAILED;
		f->errnum = errno;
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			f->step = CONFIG_READ_FAILED;
			f->errnum = errno;
			break;
		}
		if (n == 0)
			break;
		if (total + (size_t)n > CONFIG_MAX_SIZE) {
			f->step = CONFIG_TOO_BIG;
			break;
		}
		if (write_all(out, buf, (size_t)n) < 0)
			break; /* the parent gave up */
		total += (size_t)n;
	}
out:
	close(fd);
	f->bytes = total;
}

/* Fork the reader: its pid, what it sends readable from *ret_fd. */
static pid_t start_reader(const char *path, int *ret_fd)
{
	struct config_facts f = {0};
	int p[2];
	pid_t pid;

#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
	/* The fuzz targets: in this process, into a memfd (pid 0). A fork per input
	 * would cost them a hundred times their speed. */
	p[0] = memfd_create("sigvisor-config", MFD_CLOEXEC);
	if (p[0] < 0)
		return -errno;
	gather(path, p[0], &f);
	f.magic = CONFIG_FACTS_MAGIC;
	if (write_all(p[0], (const char *)&f, sizeof(f)) < 0 || lseek(p[0], 0, SEEK_SET) < 0) {
		close(p[0]);
		return -EIO;
	}
	*ret_fd = p[0];
	(void)pid;
	(void)p[1];
	return 0;
#else
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		int r = -errno;

		close(p[0]);
		close(p[1]);
		return r;
	}
	if (pid == 0) {
		close(p[0]);
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		gather(path, p[1], &f);
		f.magic = CONFIG_FACTS_MAGIC;
		(void)write_all(p[1], (const char *)&f, sizeof(f));
		_exit(0);
	}
	close(p[1]);
	*ret_fd = p[0];
	return pid;
#endif
}

int config_read_start(struct config_read *cr, const char *path, char *err, size_t errlen)
{
	int fd = -1;
	pid_t pid;

	memset(cr, 0, sizeof(*cr));
	cr->fd = -1;
	cr->path = strdup(path);
	if (!cr->path) {
		snprintf(err, errlen, "%s: out of memory reading the config file", path);
		return -EINVAL;
	}
	pid = start_reader(path, &fd);
	if (pid < 0) {
		snprintf(err, errlen, "%s: cannot start the config file's reader: %s", path,
			 strerror((int)-pid));
		config_read_free(cr);
		return -EINVAL;
	}
	/* Non-blocking: the loop reads what is there when it is told so, never more. */
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	cr->fd = fd;
	cr->pid = pid;
	cr->deadline_ms = now_ms() + CONFIG_READ_TIMEOUT_MS;
	return 0;
}

bool config_read_feed(struct config_read *cr)
{
	const size_t cap = CONFIG_MAX_SIZE + sizeof(struct config_facts);

	for (;;) {
		ssize_t n;

		if (cr->len == cr->size) {
			size_t size = cr->size ? cr->size * 2 : 4096;
			char *bigger;

			if (size > cap + 1)
				size = cap + 1;
			if (cr->len > cap || !(bigger = realloc(cr->data, size))) {
				cr->failed = true; /* more than the reader sends, or no memory */
				return true;
			}
			cr->data = bigger;
			cr->size = size;
		}
		n = read(cr->fd, cr->data + cr->len, cr->size - cr->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return false;
		if (n <= 0)
			return true; /* the end, or an error: finish tells which */
		cr->len += (size_t)n;
	}
}

/* The reader is done with or given up on: never wait for it. If it is still there (a
 * read that took too long, stuck in the kernel), SIGKILL; whoever reaps our children
 * (config_read_reap on the loop, reap_now at start-up) takes its exit. */
static void stop_reader(struct config_read *cr)
{
	if (cr->fd >= 0)
		close(cr->fd);
	cr->fd = -1;
	if (cr->pid > 0 && (cr->failed || cr->timed_out))
		(void)kill(cr->pid, SIGKILL); /* never kill(0): pid 0 is the fuzz build's */
}

int config_read_finish(struct config_read *cr, bool timed_out, char *err, size_t errlen)
{
	const char *path = cr->path;
	struct config_facts f = {0};
	size_t len = cr->len;

	cr->timed_out = timed_out;
	stop_reader(cr);
	if (timed_out) {
		snprintf(err, errlen,
			 "%s: reading the config file took longer than %d s (is its filesystem "
			 "a network or FUSE one that does not answer?); gave up",
			 path, CONFIG_READ_TIMEOUT_MS / 1000);
		return -EINVAL;
	}
	if (!cr->failed && len >= sizeof(f))
		memcpy(&f, cr->data + len - sizeof(f), sizeof(f));
	/* The facts come last and count the bytes before them: a reader that died on the
	 * way (killed, out of memory) cannot have sent them. */
	if (cr->failed || f.magic != CONFIG_FACTS_MAGIC || f.bytes != len - sizeof(f)) {
		snprintf(err, errlen, "%s: the config file's reader died without an answer", path);
		return -EINVAL;
	}
	len -= sizeof(f);
	switch ((enum config_step)f.step) {
	case CONFIG_READ_OK:
		cr->data[len] = '\0'; /* where the facts were: room for the NUL */
		cr->len = len;
		return 0;
	case CONFIG_OPEN_FAILED:
		snprintf(err, errlen, "%s: cannot open the config file: %s", path,
			 strerror(f.errnum));
		break;
	case CONFIG_STAT_FAILED:
		snprintf(err, errlen, "%s: cannot stat the config file: %s", path,
			 strerror(f.errnum));
		break;
	case CONFIG_NOT_REGULAR:
		snprintf(err, errlen, "%s: is %s; a config file must be a regular file", path,
			 file_type_name((mode_t)f.mode));
		break;
	case CONFIG_STATFS_FAILED:
		snprintf(err, errlen, "%s: cannot stat the config file's filesystem: %s", path,
			 strerror(f.errnum));
		break;
	case CONFIG_PSEUDO_FS:
		snprintf(err, errlen,
			 "%s: on %s, a pseudo-filesystem; a config file must be on a real "
			 "filesystem",
			 path, safefile_pseudo_fs((long)f.fs_type));
		break;
	case CONFIG_READ_FAILED:
		snprintf(err, errlen, "%s: cannot read the config file: %s", path,
			 strerror(f.errnum));
		break;
	case CONFIG_TOO_BIG:
		snprintf(err, errlen,
			 "%s: larger than 1 MiB (%d bytes), the most a config file may have", path,
			 CONFIG_MAX_SIZE);
		break;
	default:
		snprintf(err, errlen, "%s: the config file's reader gave a garbled answer", path);
		break;
	}
	return -EINVAL;
}

bool config_read_reap(struct config_read *cr, pid_t pid)
{
	siginfo_t si;

	if (cr->pid <= 0 || pid != cr->pid)
		return false;
	(void)waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG);
	cr->pid = 0;
	return true;
}

void config_read_free(struct config_read *cr)
{
	stop_reader(cr);
	free(cr->path);
	free(cr->data);
	cr->path = cr->data = NULL;
	cr->len = cr->size = 0;
}

/* At start-up, before the loop reaps anything: the reader's exit, now or within a
 * moment of the SIGKILL that ended a read that took too long. One stuck in the kernel
 * beyond that is left to the loop, which reaps every child (pool_reap_children). */
static void reap_now(struct config_read *cr)
{
	int pidfd;

	if (cr->pid <= 0)
		return;
	pidfd = pidfd_open(cr->pid, 0);
	if (pidfd >= 0) {
		struct pollfd p = {.fd = pidfd, .events = POLLIN};

		(void)poll(&p, 1, cr->failed || cr->timed_out ? 100 : CONFIG_READ_TIMEOUT_MS);
		close(pidfd);
	}
	if (waitpid(cr->pid, NULL, WNOHANG) != 0)
		cr->pid = 0;
}

/* See config_file.h: config_read_start's reader, waited for here (start-up, --check). */
int config_file_read(const char *path, char **ret_data, size_t *ret_len, char *err, size_t errlen)
{
	struct config_read cr;
	bool timed_out = false;
	int r;

	r = config_read_start(&cr, path, err, errlen);
	if (r < 0)
		return r;
	for (;;) {
		uint64_t now = now_ms();
		struct pollfd pfd = {.fd = cr.fd, .events = POLLIN};

		if (now >= cr.deadline_ms) {
			timed_out = true;
			break;
		}
		r = poll(&pfd, 1, (int)(cr.deadline_ms - now));
		if (r < 0 && errno != EINTR)
			break;
		if (r > 0 && config_read_feed(&cr))
			break;
	}
	r = config_read_finish(&cr, timed_out, err, errlen);
	reap_now(&cr);
	if (r == 0) {
		*ret_data = cr.data;
		*ret_len = cr.len;
		cr.data = NULL;
	}
	config_read_free(&cr);
	return r;
}
