/* Safe paths for the files sigvisor reads whole or writes; see safefile.h. */
#include "safefile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Not in every <linux/magic.h>. */
#ifndef CONFIGFS_MAGIC
#define CONFIGFS_MAGIC 0x62656570
#endif
#ifndef FUSE_CTL_SUPER_MAGIC
#define FUSE_CTL_SUPER_MAGIC 0x65735543
#endif
#ifndef MQUEUE_MAGIC
#define MQUEUE_MAGIC 0x19800202
#endif
#ifndef PID_FS_MAGIC
#define PID_FS_MAGIC 0x50494446
#endif

static const struct {
	unsigned long magic;
	const char *name;
} pseudo_fs[] = {
	{PROC_SUPER_MAGIC, "procfs"},
	{SYSFS_MAGIC, "sysfs"},
	{DEBUGFS_MAGIC, "debugfs"},
	{TRACEFS_MAGIC, "tracefs"},
	{SECURITYFS_MAGIC, "securityfs"},
	{CGROUP_SUPER_MAGIC, "cgroupfs"},
	{CGROUP2_SUPER_MAGIC, "cgroup2fs"},
	{CONFIGFS_MAGIC, "configfs"},
	{BPF_FS_MAGIC, "bpffs"},
	{PSTOREFS_MAGIC, "pstorefs"},
	{EFIVARFS_MAGIC, "efivarfs"},
	{SELINUX_MAGIC, "selinuxfs"},
	{SMACK_MAGIC, "smackfs"},
	{AAFS_MAGIC, "apparmorfs"},
	{BINFMTFS_MAGIC, "binfmt_misc"},
	{DEVPTS_SUPER_MAGIC, "devpts"},
	{FUSE_CTL_SUPER_MAGIC, "fusectl"},
	{RDTGROUP_SUPER_MAGIC, "resctrl"},
	{MQUEUE_MAGIC, "mqueue"},
	{USBDEVICE_SUPER_MAGIC, "usbdevfs"},
	{OPENPROM_SUPER_MAGIC, "openpromfs"},
	{XENFS_SUPER_MAGIC, "xenfs"},
	{BINDERFS_SUPER_MAGIC, "binderfs"},
	{NSFS_MAGIC, "nsfs"},
	{PIPEFS_MAGIC, "pipefs"},
	{SOCKFS_MAGIC, "sockfs"},
	{ANON_INODE_FS_MAGIC, "anon_inodefs"},
	{PID_FS_MAGIC, "pidfs"},
	{DMA_BUF_MAGIC, "dmabuf"},
	{SECRETMEM_MAGIC, "secretmem"},
};

const char *safefile_pseudo_fs(long f_type)
{
	for (size_t i = 0; i < sizeof(pseudo_fs) / sizeof(pseudo_fs[0]); i++)
		if ((unsigned long)(unsigned int)f_type == pseudo_fs[i].magic)
			return pseudo_fs[i].name;
	return NULL;
}

static __thread char why_buf[320];

const char *safefile_why(void)
{
	return why_buf;
}

/* Set the reason and return -err (errno is set too, for the open()-like call). */
__attribute__((format(printf, 2, 3))) static int fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why_buf, sizeof(why_buf), fmt, ap);
	va_end(ap);
	errno = err;
	return -err;
}

/* The directory a path is in, opened O_PATH (its own symlinks followed: /var/run ->
 * /run is fine, only the last component must not be a link), and the last component. */
struct dir {
	int fd;
	struct stat st;
	char name[PATH_MAX];
	const char *base;
	bool shared; /* others can write it: see safefile.h */
};

static int open_dir(const char *path, struct dir *d)
{
	const char *slash = strrchr(path, '/');

	d->fd = -1;
	if (!slash)
		snprintf(d->name, sizeof(d->name), ".");
	else if (slash == path)
		snprintf(d->name, sizeof(d->name), "/");
	else
		snprintf(d->name, sizeof(d->name), "%.*s", (int)(slash - path), path);
	d->base = slash ? slash + 1 : path;
	if (!*d->base)
		return fail(EISDIR, "names a directory, not a file");
	d->fd = open(d->name, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (d->fd < 0)
		return fail(errno, "%s", strerror(errno));
	if (fstat(d->fd, &d->st) < 0) {
		int r = fail(errno, "%s", strerror(errno));

		close(d->fd);
		d->fd = -1;
		return r;
	}
	d->shared = (d->st.st_mode & (S_IWGRP | S_IWOTH)) ||
		    (d->st.st_uid != 0 && d->st.st_uid != geteuid());
	return 0;
}

static void close_dir(struct dir *d)
{
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
}

/* In a directory others can write, a file of theirs, or one with a second name that
 * may be a hard link to a file of root's elsewhere, is not ours to write. */
static int check_ours(const struct dir *d, const struct stat *st)
{
	if (!d->shared)
		return 0;
	if (st->st_uid != geteuid())
		return fail(EPERM,
			    "belongs to uid %u, not to us (uid %u), in %s, a directory others "
			    "can write: not ours to write",
			    (unsigned)st->st_uid, (unsigned)geteuid(), d->name);
	if (!S_ISDIR(st->st_mode) && st->st_nlink > 1)
		return fail(EPERM,
			    "has %u names (hard links), in %s, a directory others can write: "
			    "it may be another file of ours under a second name",
			    (unsigned)st->st_nlink, d->name);
	return 0;
}

int safefile_open_append(const char *path)
{
	struct dir d;
	struct stat st;
	int fd, flags, r;

	r = open_dir(path, &d);
	if (r < 0)
		return -1;
	/* O_NOFOLLOW: in a directory others can write, a link at the path (planted, or
	 * left by a careless rotation) is refused, never followed. A link in a directory
	 * only root or we can write was put there by one of us: /dev/stdout, or an
	 * admin's /var/log/app.log -> /data/app.log, is followed. O_NONBLOCK: a FIFO
	 * without a reader cannot hold the open, where every signal of PID 1 is blocked. */
	fd = openat(d.fd, d.base,
		    O_WRONLY | O_APPEND | O_CREAT | (d.shared ? O_NOFOLLOW : 0) | O_NONBLOCK |
			    O_NOCTTY | O_CLOEXEC,
		    0644);
	if (fd < 0) {
		int err = errno;

		/* ELOOP, or EACCES where the kernel refuses O_CREAT on a link in a sticky
		 * directory before O_NOFOLLOW is looked at. */
		if (fstatat(d.fd, d.base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
			err = ELOOP;
		if (err == ELOOP)
			fail(ELOOP,
			     "is a symbolic link; sigvisor never writes through one (name the "
			     "file itself)");
		else if (err == ENXIO)
			fail(ENXIO, "is a FIFO that nothing reads");
		else
			fail(err, "%s", strerror(err));
		close_dir(&d);
		return -1;
	}
	r = fstat(fd, &st) < 0 ? fail(errno, "%s", strerror(errno)) : check_ours(&d, &st);
	close_dir(&d);
	/* Writes keep blocking as they always did: only the open had to be bounded. */
	if (r == 0 &&
	    ((flags = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0))
		r = fail(errno, "%s", strerror(errno));
	if (r < 0) {
		close(fd);
		errno = -r;
		return -1;
	}
	return fd;
}

/* The rules of safefile_check_replace on an open directory. */
static int check_replace(const struct dir *d)
{
	struct stat st;

	if (!d->shared)
		return 0;
	if (d->st.st_uid != 0 && d->st.st_uid != geteuid())
		return fail(EPERM,
			    "directory %s belongs to uid %u, who could put a link at the path "
			    "(use a directory of root's or ours, such as /run)",
			    d->name, (unsigned)d->st.st_uid);
	if (!(d->st.st_mode & S_ISVTX))
		return fail(EPERM,
			    "directory %s is writable by others (mode %04o) and not sticky: "
			    "anyone could put a link at the path (use a directory only we can "
			    "write, such as /run)",
			    d->name, (unsigned)(d->st.st_mode & 07777));
	/* Sticky (/tmp): others cannot remove or rename what is ours, but what is there
	 * already may be theirs. */
	if (fstatat(d->fd, d->base, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : fail(errno, "%s", strerror(errno));
	if (S_ISLNK(st.st_mode) && st.st_uid != geteuid())
		return fail(EPERM,
			    "is a symbolic link of uid %u's, in %s, a directory others can "
			    "write: not ours to replace",
			    (unsigned)st.st_uid, d->name);
	return check_ours(d, &st);
}

int safefile_check_replace(const char *path)
{
	struct dir d;
	int r = open_dir(path, &d);

	if (r < 0)
		return r;
	r = check_replace(&d);
	close_dir(&d);
	return r;
}

bool safefile_temp_name(char *buf, size_t len, const char *path, unsigned attempt)
{
	const char *slash = strrchr(path, '/');
	int dirlen = slash ? (int)(slash - path + 1) : 0;
	unsigned rnd;

	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
		rnd = (unsigned)time(NULL) ^ (unsigned)getpid() ^ (attempt << 16);
	return snprintf(buf, len, "%.*s.%.200s.%08x", dirlen, path, path + dirlen, rnd) < (int)len;
}

int safefile_replace(const char *path, const void *data, size_t len)
{
	char tmp[NAME_MAX + 1];
	struct dir d;
	int fd = -1, r;

	r = open_dir(path, &d);
	if (r < 0)
		return r;
	r = check_replace(&d);
	if (r < 0)
		goto out;
	/* A name nobody can guess: one planted beforehand would only make O_EXCL fail. */
	for (unsigned attempt = 0; fd < 0 && attempt < 16; attempt++) {
		(void)safefile_temp_name(tmp, sizeof(tmp), d.base, attempt); /* fits: %.200s */
		fd = openat(d.fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (fd < 0 && errno != EEXIST) {
			r = fail(errno, "cannot create %s/%s: %s", d.name, tmp, strerror(errno));
			goto out;
		}
	}
	if (fd < 0) {
		r = fail(EEXIST, "cannot create a temporary file in %s", d.name);
		goto out;
	}
	errno = 0;
	if (write(fd, data, len) != (ssize_t)len) {
		r = fail(errno ? errno : EIO, "cannot write %s/%s: %s", d.name, tmp,
			 strerror(errno ? errno : EIO));
	} else if (close(fd) < 0) {
		fd = -1;
		r = fail(errno, "cannot write %s/%s: %s", d.name, tmp, strerror(errno));
	} else {
		fd = -1;
		if (renameat(d.fd, tmp, d.fd, d.base) < 0)
			r = fail(errno, "cannot rename %s/%s over it: %s", d.name, tmp,
				 strerror(errno));
	}
	if (fd >= 0)
		close(fd);
	if (r < 0)
		(void)unlinkat(d.fd, tmp, 0);
out:
	close_dir(&d);
	return r;
}
