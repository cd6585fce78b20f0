/* Logging shared by the arbiter and the built-in worker.
 *
 * One line per call, written with a single write(2) so lines from the arbiter and its
 * workers never interleave mid-line on a shared pipe. errno is saved and restored, so
 * "%m" works and a log call never clobbers the error being reported. */
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

enum log_format {
	LOG_FORMAT_TEXT,
	LOG_FORMAT_JSON,
};

/* ident is "sigvisor" in the arbiter, "worker" in the built-in worker. */
void log_setup(const char *ident, enum log_format format, enum log_level max_level);

/* Open (or reopen, for USR1 after logrotate) path in append mode and send log lines
 * there; NULL means stderr. Returns 0 or a negative errno; on failure the old
 * destination stays in use. It may close the fd log_pending_fd() named: stop watching
 * that first. */
int log_open(const char *path);

/* The fd log lines currently go to (stderr when no file is open). */
int log_fd(void);

/* From now on never block on the log (the arbiter, once its loop runs): a line the
 * log cannot take at once waits in a 64 KiB queue; when the queue is full the oldest
 * lines are dropped and counted, and a line saying how many goes out once writing
 * works again. A shared stderr keeps its blocking flags for the other writers (the
 * workers): the arbiter writes through a file description of its own. Called again
 * by log_open() for a new file. */
void log_nonblocking(void);

/* Bytes queued, and the fd to watch for writability while there are any (-1: none
 * can be watched, as for a regular file). */
size_t log_pending(void);
int log_pending_fd(void);

/* Write what the log takes now, never waiting; log_flush_for() waits up to timeout_ms
 * for the rest (at exit). */
void log_flush(void);
void log_flush_for(unsigned timeout_ms);

/* How often a loop that cannot watch the log tries it again while lines wait, and how
 * long they may wait for a stalled reader at exit. */
#define LOG_RETRY_MS	  100
#define LOG_EXIT_FLUSH_MS 1000

/* Lines dropped since start: the queue was full, or the log failed (a full disk). */
uint64_t log_dropped(void);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

/* A structured field for the JSON format: "key":"str" when str is set, else "key":num.
 * The text format leaves them out, because its message already says the same thing
 * in words (and existing lines must not change). Keys are plain identifiers; they
 * must not be ts, level, ident, pid or msg. */
struct log_field {
	const char *key;
	const char *str; /* NULL: the value is num */
	long long num;
};

#define LOG_STR(k, v) ((struct log_field){.key = (k), .str = (v)})
#define LOG_INT(k, v) ((struct log_field){.key = (k), .num = (long long)(v)})

/* log_msg with fields: log_fields(LOG_LEVEL_INFO, LOG_FIELDS(LOG_STR("signal", "TTIN"),
 * LOG_INT("sender_pid", pid)), "received SIG%s ...", ...). LOG_FIELDS passes the array
 * and its length; its arguments are evaluated once (sizeof does not evaluate). */
#define LOG_FIELDS(...)                                                                            \
	(const struct log_field[]){__VA_ARGS__},                                                   \
		sizeof((const struct log_field[]){__VA_ARGS__}) / sizeof(struct log_field)

void log_fields(enum log_level level, const struct log_field *fields, size_t n_fields,
		const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void log_vfields(enum log_level level, const struct log_field *fields, size_t n_fields,
		 const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
