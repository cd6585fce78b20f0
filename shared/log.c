/* Logging: one formatted line, one write(2). See log.h for the contract. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
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

/* Escape msg into a JSON string body; truncates rather than overflow. */
static size_t json_escape(char *out, size_t size, const char *msg)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)msg; *p && n + 7 < size; p++) {
		if (*p == '"' || *p == '\\') {
			out[n++] = '\\';
			out[n++] = (char)*p;
		} else if (*p < 0x20) {
			n += (size_t)snprintf(out + n, size - n, "\\u%04x", *p);
		} else {
			out[n++] = (char)*p;
		}
	}
	out[n] = '\0';
	return n;
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	int saved_errno = errno;
	char msg[2048], line[4608], stamp[40];
	struct timespec ts;
	struct tm tm;
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
		char esc[4096];

		json_escape(esc, sizeof(esc), msg);
		n = snprintf(line, sizeof(line),
			     "{\"ts\":\"%s\",\"level\":\"%s\",\"ident\":\"%s\",\"pid\":%d,\"msg\":"
			     "\"%s\"}\n",
			     stamp, level_names[level], log_ident, (int)getpid(), esc);
	} else {
		n = snprintf(line, sizeof(line), "%s %s[%d] %s: %s\n", stamp, log_ident,
			     (int)getpid(), level_names[level], msg);
	}
	if (n > (int)sizeof(line) - 1) {
		n = (int)sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	/* A log line that cannot be written has nowhere else to go. */
	if (write(log_fd(), line, (size_t)n) < 0) {
	}
	errno = saved_errno;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}
