/* Reading a config file: its bytes, never its meaning (options_load.c applies them).
 *
 * A child process reads the file, so a stalled filesystem (NFS, FUSE) can hang only the
 * child, never start-up or the loop; only a regular file on a real filesystem is read,
 * within a deadline and a size limit. Nothing here knows the settings: options.h
 * includes this header, not the other way round. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A config file is at most this big, and its lines this long (without the line end):
 * inih would cut a longer line and parse the rest as a line of its own. */
#define CONFIG_MAX_SIZE (1024 * 1024)
#define CONFIG_MAX_LINE 197
/* ...and read within this long, open and stat included (a stalled NFS or FUSE server
 * would otherwise hold start-up, or the loop on HUP, for ever). */
#define CONFIG_READ_TIMEOUT_MS 3000

/* Reading a config file without waiting for it (a HUP): a child process reads it, so
 * a stalled filesystem can hang only the child, and the loop feeds on what it sends.
 *   config_read_start()  forks the reader; watch fd for reading, until deadline_ms
 *   config_read_feed()   takes what is there; true once all of it is (or it failed)
 *   config_read_finish() says what the reader found (timed_out: deadline_ms passed
 *                        first); 0: data and len hold the file, NUL-terminated
 *   config_read_reap()   true if pid is the reader's, now reaped (our SIGCHLD)
 *   config_read_free()   frees it all; a reader still running gets SIGKILL
 * The messages are options_load_config()'s. */
struct config_read {
	char *path;
	pid_t pid; /* the reader, until reaped */
	int fd;	   /* what it sends; -1 once finished */
	char *data;
	size_t len, size;
	uint64_t deadline_ms;
	bool failed, timed_out;
};

int config_read_start(struct config_read *cr, const char *path, char *err, size_t errlen);
bool config_read_feed(struct config_read *cr);
int config_read_finish(struct config_read *cr, bool timed_out, char *err, size_t errlen);
bool config_read_reap(struct config_read *cr, pid_t pid);
void config_read_free(struct config_read *cr);

/* The whole file, NUL-terminated, in *ret_data (free it); at most CONFIG_MAX_SIZE
 * bytes, within CONFIG_READ_TIMEOUT_MS: the reader of config_read_start, waited for
 * here (start-up, --check). The loop (a HUP) uses the same reader without waiting.
 * On error, -EINVAL with options_load_config()'s message in err. */
int config_file_read(const char *path, char **ret_data, size_t *ret_len, char *err, size_t errlen);
