/* Paths sigvisor reads whole or writes to (the config file, the pidfile, the log file),
 * as root in directories others may write: never written through a link someone else
 * could have planted there, and never a kernel interface posing as a file.
 *
 * "A directory others can write" is one with a group or other write bit, or owned by
 * a user who is neither root nor us: anyone with that right can put a symlink or a
 * hard link to /etc/shadow at the path we are about to open. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* The name of a pseudo-filesystem (procfs, sysfs, debugfs, ...) for fstatfs's f_type,
 * or NULL for one that stores files. Its "regular files" are kernel interfaces: a read
 * may block for ever (/proc/kmsg), consume what it reads, or act on the system. */
const char *safefile_pseudo_fs(long f_type);

/* Why the last failed safefile_ call of this thread failed, without the path (the
 * caller names it): "is a symbolic link; ...". Empty before any failure. */
const char *safefile_why(void);

/* open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644) for a log file, but
 * never through a final symlink, never blocking (a FIFO without a reader), and in a
 * directory others can write only a file of ours with one link. Returns the fd, or
 * -1 with errno set (ELOOP: a symlink, EPERM: not ours to write) and safefile_why(). */
int safefile_open_append(const char *path);

/* Would safefile_replace(path) be allowed: the directory only root or we can write, or
 * sticky (/tmp), and then an entry already at path ours. 0 or a negative errno with
 * safefile_why(). What sigvisor --check verifies for --pid. */
int safefile_check_replace(const char *path);

/* A name beside path nobody can guess, for a file made there and then moved to path:
 * "DIR/.BASE.XXXXXXXX" (DIR/ is path up to its last '/', kept; BASE at most 200 bytes;
 * the digits random, or from the clock, the pid and attempt where no randomness is to
 * be had). False if it does not fit in len. */
bool safefile_temp_name(char *buf, size_t len, const char *path, unsigned attempt);

/* Put data at path by creating a new file (O_EXCL | O_NOFOLLOW, a random name in the
 * same directory) and renaming it over path: a link at path is replaced, never written
 * through, and a reader never sees half a file. 0 or a negative errno with
 * safefile_why(). */
int safefile_replace(const char *path, const void *data, size_t len);
