/* Logging: one formatted line, one write(2). See log.h for the contract. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "safefile.h"

static const char *log_ident = "sigvisor";
static enum log_format log_format_ = LOG_FORMAT_TEXT;
static enum log_level log_max = LOG_LEVEL_INFO;
static int log_file_fd = -1;

static const char *const level_names[] = {
	[LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

void log_setup(const char *ident, enum log_format format, enum log_level max_level)
{
	log_ident = ident;
	log_format_ = format;
	log_max = max_level;
}

int log_open(const char *path)
{
	int fd;

	if (!path) {
		if (log_file_fd >= 0)
			close(log_file_fd);
		log_file_fd = -1;
		return 0;
	}
	fd = safefile_open_append(path); /* never through a link: see safefile.h */
	if (fd < 0)
		return -errno;
	if (log_file_fd >= 0)
		close(log_file_fd);
	log_file_fd = fd;
	return 0;
}

int log_fd(void)
{
	return log_file_fd >= 0 ? log_file_fd : STDERR_FILENO;
}

/* Longest line written: a message is cut at 2 KiB before escaping, so the worst case
 * (every byte escaped as \u00XX) still leaves room for the fields. */
#define MSG_SIZE  2048
#define LINE_SIZE 8192

/* A line under construction. size excludes the room kept for the ending ("}\n"), so
 * whatever is cut, the line stays one well-formed JSON object. */
struct out {
	char *buf;
	size_t len, size;
};

static bool out_fits(const struct out *o, size_t n)
{
	return o->len + n <= o->size;
}

static void out_put(struct out *o, const char *s, size_t n)
{
	if (out_fits(o, n)) {
		memcpy(o->buf + o->len, s, n);
		o->len += n;
	}
}

/* s as a JSON string. Cut on a character boundary if the line is full; invalid UTF-8
 * becomes U+FFFD. Needs room for at least the two quotes, which the caller checks. */
static void out_json_str(struct out *o, const char *s)
{
	out_put(o, "\"", 1);
	while (*s) {
		char esc[8];
		const char *text;
		size_t n, adv = json_char(s, esc, &text, &n);

		if (!out_fits(o, n + 1))
			break; /* keep room for the closing quote */
		out_put(o, text, n);
		s += adv;
	}
	out_put(o, "\"", 1);
}

static void format_json(struct out *o, const char *stamp, enum log_level level, const char *msg,
			const struct log_field *fields, size_t n_fields)
{
	char head[160];
	int n = snprintf(head, sizeof(head), "{\"ts\":\"%s\",\"level\":\"%s\",\"ident\":", stamp,
			 level_names[level]);

	out_put(o, head, (size_t)n);
	out_json_str(o, log_ident);
	n = snprintf(head, sizeof(head), ",\"pid\":%d,\"msg\":", (int)getpid());
	out_put(o, head, (size_t)n);
	out_json_str(o, msg);
	for (size_t i = 0; i < n_fields; i++) {
		const struct log_field *f = &fields[i];
		char num[32];
		size_t klen = strlen(f->key);

		if (f->str) {
			/* The key, its quotes and punctuation, and at least an empty value:
			 * a field that does not fit whole is left out, never cut mid-token. */
			if (!out_fits(o, klen + 6))
				break;
			out_put(o, ",", 1);
			out_json_str(o, f->key);
			out_put(o, ":", 1);
			out_json_str(o, f->str);
		} else {
			int len = snprintf(num, sizeof(num), "%lld", f->num);

			if (!out_fits(o, klen + 4 + (size_t)len))
				break;
			out_put(o, ",", 1);
			out_json_str(o, f->key);
			out_put(o, ":", 1);
			out_put(o, num, (size_t)len);
		}
	}
	/* The room for these two bytes was kept out of o->size. */
	o->buf[o->len++] = '}';
	o->buf[o->len++] = '\n';
}

void log_vfields(enum log_level level, const struct log_field *fields, size_t n_fields,
		 const char *fmt, va_list ap)
{
	int saved_errno = errno;
	char msg[MSG_SIZE], line[LINE_SIZE], stamp[40];
	struct timespec ts;
	struct tm tm;
	size_t len;
	int n;

	if (level > log_max)
		return;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = (int)strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(stamp + n, sizeof(stamp) - (size_t)n, ".%03ldZ", ts.tv_nsec / 1000000);

	errno = saved_errno; /* strftime may touch errno; %m must see the caller's */
	vsnprintf(msg, sizeof(msg), fmt, ap);

	if (log_format_ == LOG_FORMAT_JSON) {
		struct out o = {.buf = line, .size = sizeof(line) - 2};

		format_json(&o, stamp, level, msg, fields, n_fields);
		len = o.len;
	} else {
		/* Fields are for machines; the text line says the same in words. */
		n = snprintf(line, sizeof(line), "%s %s[%d] %s: %s\n", stamp, log_ident,
			     (int)getpid(), level_names[level], msg);
		len = (size_t)n;
		if (len > sizeof(line) - 1) {
			len = sizeof(line) - 1;
			line[len - 1] = '\n';
		}
	}
	/* A log line that cannot be written has nowhere else to go. */
	if (write(log_fd(), line, len) < 0) {
	}
	errno = saved_errno;
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	log_vfields(level, NULL, 0, fmt, ap);
}

void log_fields(enum log_level level, const struct log_field *fields, size_t n_fields,
		const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vfields(level, fields, n_fields, fmt, ap);
	va_end(ap);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}
