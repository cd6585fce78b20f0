/* Logging shared by the arbiter and the built-in worker.
 *
 * One line per call, written with a single write(2) so lines from the arbiter and its
 * workers never interleave mid-line on a shared pipe. errno is saved and restored, so
 * "%m" works and a log call never clobbers the error being reported. */
#pragma once

#include <stdarg.h>
#include <stddef.h>

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
 * destination stays in use. */
int log_open(const char *path);

/* The fd log lines currently go to (stderr when no file is open). */
int log_fd(void);

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
