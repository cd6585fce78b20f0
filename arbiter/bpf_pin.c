/* The pin directory of the probes' maps (--bpf-pin): a bpf filesystem for it (mounted
 * when there is none at /sys/fs/bpf), the directory made ours and locked, the stale pins
 * of an arbiter that did not exit cleanly removed, and at the end our pins and the
 * directory removed. Not pinning is never a reason to go without the probes. */
#include "bpf_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "log.h"
#include "sigvisor.skel.h"

#define BPFFS_ROOT "/sys/fs/bpf"

static bool on_bpffs(const char *path)
{
	struct statfs sf;

	return statfs(path, &sf) == 0 && sf.f_type == BPF_FS_MAGIC;
}

/* The pin directory's parent must be a bpf filesystem. A fresh machine has none at
 * /sys/fs/bpf (systemd mounts it, containers usually do not): mount one there, mode
 * 0700 like systemd's, when the directory asked for is under it. */
static int ensure_bpffs(const char *dir, char *why, size_t whylen)
{
	char parent[PATH_MAX];
	char *slash;

	if (on_bpffs(dir))
		return 0;
	snprintf(parent, sizeof(parent), "%s", dir);
	slash = strrchr(parent, '/');
	if (!slash || slash == parent) {
		set_why(why, whylen, "%s is not in a bpf filesystem", dir);
		return -EINVAL;
	}
	*slash = '\0';
	if (on_bpffs(parent))
		return 0;
	if (strcmp(parent, BPFFS_ROOT) != 0) {
		set_why(why, whylen,
			"%s is not a bpf filesystem (mount one: mount -t bpf bpf %s, or use "
			"--bpf-pin " BPFFS_ROOT "/NAME)",
			parent, parent);
		return -ENOTSUP;
	}
	if (mount("bpf", BPFFS_ROOT, "bpf", 0, "mode=0700") < 0) {
		set_why(why, whylen, "no bpf filesystem at " BPFFS_ROOT " and cannot mount one: %s",
			strerror(errno));
		return -errno;
	}
	log_info("mounted a bpf filesystem on " BPFFS_ROOT " (mode 0700)");
	return 0;
}

/* Create (mode 0700) and lock the pin directory. The lock is taken on the directory
 * that is at the path afterwards: an exiting arbiter removes its directory between
 * our open and our flock, and pins into a removed directory would fail.
 *
 * Only a directory of our own: we remove stale pins in it and chmod it 0700, and the
 * pins of one owned by another user are theirs to replace or read (a reader of the
 * maps sees what every worker does with its signals); nor through a final symlink. */
static int lock_pin_dir(struct bpf_probes *p, const char *dir, char *why, size_t whylen)
{
	for (int attempt = 0; attempt < 3; attempt++) {
		struct stat a, b;
		int fd;

		if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
			set_why(why, whylen, "cannot create %s: %s", dir, strerror(errno));
			return -errno;
		}
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			int r = -errno;

			if (r == -ELOOP)
				set_why(why, whylen,
					"%s is a symbolic link; give --bpf-pin the directory "
					"itself",
					dir);
			else
				set_why(why, whylen, "cannot open %s: %s", dir, strerror(-r));
			return r;
		}
		if (fstat(fd, &a) < 0) {
			int r = -errno;

			close(fd);
			set_why(why, whylen, "cannot stat %s: %s", dir, strerror(-r));
			return r;
		}
		if (a.st_uid != geteuid()) {
			close(fd);
			set_why(why, whylen,
				"%s belongs to uid %u, not to us (uid %u): its pins are not ours "
				"to replace (remove it, or give --bpf-pin a directory of our own)",
				dir, (unsigned)a.st_uid, (unsigned)geteuid());
			return -EPERM;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			int r = -errno;

			close(fd);
			if (r == -EWOULDBLOCK)
				set_why(why, whylen,
					"%s is in use by another running sigvisor (give this one "
					"its own --bpf-pin DIR)",
					dir);
			else
				set_why(why, whylen, "cannot lock %s: %s", dir, strerror(-r));
			return r;
		}
		if (lstat(dir, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
			/* Ours now: whatever mode it was left with, only root may look. */
			if (fchmod(fd, 0700) < 0)
				log_debug("cannot chmod 0700 %s, ignoring: %m", dir);
			p->pin_fd = fd;
			snprintf(p->pin_dir, sizeof(p->pin_dir), "%s", dir);
			return 0;
		}
		close(fd);
	}
	set_why(why, whylen, "%s keeps being replaced", dir);
	return -EBUSY;
}

/* Pins left by an arbiter that could not remove them (killed, or replaced by exec for
 * an upgrade): libbpf would reuse them (counts from the last run) or fail on a map
 * whose layout changed (EINVAL). We hold the directory's lock, so they are nobody's:
 * remove the ones our object would pin. */
void probes_remove_stale_pins(struct bpf_probes *p)
{
	struct bpf_map *map;
	unsigned n = 0;

	bpf_object__for_each_map(map, p->skel->obj)
	{
		const char *path = bpf_map__pin_path(map);

		if (!path)
			continue;
		if (unlink(path) == 0)
			n++;
		else if (errno != ENOENT)
			probes_log(LOG_LEVEL_WARN,
				   "cannot remove the stale BPF pin %s, ignoring: %s", path,
				   strerror(errno));
	}
	/* In the loader process too: probes_log() goes to the arbiter's log. */
	if (n)
		probes_log(LOG_LEVEL_INFO,
			   "removed %u stale BPF pins from %s (an earlier arbiter did not exit "
			   "cleanly)",
			   n, p->pin_dir);
}

/* What we pinned, and only that (bpf_object__unpin_maps() stops at the first map
 * that is not pinned, e.g. after a failed load, which libbpf unpins itself). */
void probes_unpin_maps(struct bpf_probes *p)
{
	struct bpf_map *map;

	bpf_object__for_each_map(map, p->skel->obj)
	{
		const char *path = bpf_map__pin_path(map);

		/* Kept maps were pinned by the image before: libbpf does not know. */
		if (p->adopted && path && unlink(path) < 0 && errno != ENOENT)
			log_warn("cannot unpin %s, ignoring: %m", path);
		else if (!p->adopted && bpf_map__is_pinned(map) && bpf_map__unpin(map, NULL) < 0)
			log_warn("cannot unpin %s, ignoring: %m", path);
	}
}

void probes_release_pin_dir(struct bpf_probes *p)
{
	if (p->pin_fd < 0)
		return;
	/* Only an empty directory goes: anything else in it is not ours. */
	if (rmdir(p->pin_dir) < 0 && errno != ENOTEMPTY && errno != EEXIST && errno != ENOENT)
		log_warn("cannot remove %s, ignoring: %m", p->pin_dir);
	close(p->pin_fd);
	p->pin_fd = -1;
	p->pin_dir[0] = '\0';
}

/* Not pinning is not a reason to go without the probes: status still gets its
 * counts. Without a pin root libbpf would pin under /sys/fs/bpf itself, so clear the
 * pin paths it derived at open. */
void probes_disable_pinning(struct bpf_probes *p)
{
	struct bpf_map *map;

	bpf_object__for_each_map(map, p->skel->obj)(void) bpf_map__set_pin_path(map, NULL);
}

void probes_prepare_pins(struct bpf_probes *p, const struct bpf_options *opt)
{
	char pin_why[256] = "";
	int r;

	if (!opt->pin_dir || !opt->pin_dir[0])
		return;
	r = ensure_bpffs(opt->pin_dir, pin_why, sizeof(pin_why));
	if (r == 0)
		r = lock_pin_dir(p, opt->pin_dir, pin_why, sizeof(pin_why));
	if (r < 0) {
		log_warn("BPF maps not pinned, counting for status only: %s", pin_why);
		snprintf(p->pin_why, sizeof(p->pin_why), "%s", pin_why);
	}
}

/* Unlink what the probes pin in dir (not ours to keep: the handed-over probes are being
 * let go), if no other sigvisor holds it. */
void probes_remove_pins_in(const char *dir, bool locked)
{
	struct sigvisor *s;
	struct bpf_map *map;
	int fd = -1;

	if (!dir[0])
		return;
	if (!locked) {
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
			if (fd >= 0)
				close(fd);
			return;
		}
	}
	s = probes_open_object(dir);
	if (s) {
		bpf_object__for_each_map(map, s->obj)
		{
			const char *path = bpf_map__pin_path(map);

			if (path)
				(void)unlink(path);
		}
		sigvisor__destroy(s);
	}
	if (fd >= 0) {
		(void)rmdir(dir);
		close(fd);
	}
}
