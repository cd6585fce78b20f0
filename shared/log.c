/* Logging: one formatted line, one write(2). See log.h for the contract. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "timeutil.h"
#include "safefile.h"

/* Longest line written: a message is cut at 2 KiB before escaping, so the worst case
 * (every byte escaped as \u00XX) still leaves room for the fields. */
#define MSG_SIZE  2048
#define LINE_SIZE 8192

static const char *log_ident = "sigvisor";
static enum log_format log_format_ = LOG_FORMAT_TEXT;
static enum log_level log_max = LOG_LEVEL_INFO;
static int log_file_fd = -1;
/* stderr is journald's stream (JOURNAL_STREAM names it): journald stamps each line
 * itself and reads a "<N>" priority prefix (sd-daemon(3)). */
static bool log_journal;

/* Non-blocking mode (the arbiter's, log_nonblocking()): lines the log cannot take now
 * wait in a bounded queue, oldest dropped first. How the fd is written without ever
 * blocking depends on what it is; see log_nonblocking(). */
enum nb_mode {
	NB_OFF,	   /* blocking writes (the worker, and the arbiter before its loop runs) */
	NB_FD,	   /* our own non-blocking open file description (log_nb_fd) */
	NB_SOCKET, /* a socket shared with others: send(MSG_DONTWAIT) */
	NB_POLL,   /* a pipe we could not reopen: write only what poll() says fits */
};

#define QUEUE_SIZE (64 * 1024)

static struct {
	enum nb_mode mode;
	int fd; /* NB_FD: ours, close-on-exec; otherwise -1 */
	char buf[QUEUE_SIZE];
	size_t len;	  /* bytes queued */
	bool mid_line;	  /* buf starts in the middle of a line partly written */
	uint64_t dropped; /* lines dropped since the last "dropped" line */
	uint64_t dropped_total;
} nb = {.fd = -1};

static const char *const level_names[] = {
	[LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

/* JOURNAL_STREAM is "DEV:INO" of the stream systemd connected stderr to; a process
 * that inherited the variable but not the stream (stderr redirected) does not match. */
static bool stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	int k = 0;

	if (!js || sscanf(js, "%llu:%llu%n", &dev, &ino, &k) != 2 || js[k] ||
	    fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_setup(const char *ident, enum log_format format, enum log_level max_level)
{
	log_ident = ident;
	log_format_ = format;
	log_max = max_level;
	log_journal = stderr_is_journal();
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
	if (nb.mode != NB_OFF)
		log_nonblocking();
	return 0;
}

int log_fd(void)
{
	return log_file_fd >= 0 ? log_file_fd : STDERR_FILENO;
}

static void nb_close(void)
{
	if (nb.fd >= 0)
		close(nb.fd);
	nb.fd = -1;
}

static void nb_setup(void);

void log_nonblocking(void)
{
	nb_setup();
}

static void nb_setup(void)
{
	int fd = log_fd(), own, flags;
	struct stat st;
	char path[64];

	nb_close();
	nb.mode = NB_FD;
	if (fd == log_file_fd) {
		/* Our own open of --log-file: nobody else shares its file description. */
		flags = fcntl(fd, F_GETFL);
		if (flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0)
			return;
	}
	if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)) {
		nb.mode = NB_SOCKET;
		return;
	}
	if (fd != log_file_fd) {
		/* stderr is shared with the workers (and whoever started us): setting
		 * O_NONBLOCK on it would make their writes fail with EAGAIN. Opening it
		 * again through /proc gives a pipe, FIFO or terminal a file description of
		 * our own, whose flags are ours to set. */
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		own = open(path, O_WRONLY | O_APPEND | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		if (own >= 0) {
			nb.fd = own;
			return;
		}
	}
	/* A regular file never blocks (a full disk fails at once); anything else is
	 * written only as far as poll() says it takes without waiting. */
	nb.mode = S_ISREG(st.st_mode) ? NB_FD : NB_POLL;
}

/* One attempt to write n bytes without blocking: bytes written, or -errno. */
static ssize_t nb_write(const char *p, size_t n)
{
	struct pollfd pfd = {.fd = log_fd(), .events = POLLOUT};
	ssize_t r;

	switch (nb.mode) {
	case NB_SOCKET:
		r = send(log_fd(), p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		break;
	case NB_POLL:
		/* POLLOUT on a pipe promises room for one page: write no more than that.
		 * Another writer may take it first; that is the limit of this fallback. */
		if (poll(&pfd, 1, 0) != 1 || !(pfd.revents & POLLOUT))
			return -EAGAIN;
		r = write(pfd.fd, p, n < PIPE_BUF ? n : PIPE_BUF);
		break;
	default:
		r = write(nb.fd >= 0 ? nb.fd : log_fd(), p, n);
		break;
	}
	return r < 0 ? -errno : r;
}

static size_t count_lines(const char *p, size_t n)
{
	size_t lines = 0;

	for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))); p++)
		lines++;
	return lines;
}

/* The next write: whole lines, at most PIPE_BUF bytes together, which a pipe takes all
 * or nothing. The workers write to the same pipe, and a partial write would let one of
 * their lines into the middle of ours. Only a line longer than that is written alone,
 * and may be split. */
static size_t nb_chunk(void)
{
	size_t n = 0;
	const char *nl;

	while (n < nb.len && (nl = memchr(nb.buf + n, '\n', nb.len - n))) {
		size_t end = (size_t)(nl - nb.buf) + 1;

		if (end > PIPE_BUF && n)
			break;
		n = end;
		if (n > PIPE_BUF)
			break;
	}
	return n ? n : nb.len;
}

/* Write out as much of the queue as the log takes now. A failure other than "full"
 * (a full disk, a reader gone) drops what is queued: it would not go later either. */
static void nb_drain(void)
{
	while (nb.len) {
		ssize_t r = nb_write(nb.buf, nb_chunk());

		if (r == -EINTR)
			continue;
		if (r == -EAGAIN)
			return;
		if (r <= 0) {
			size_t lines = count_lines(nb.buf, nb.len);

			nb.dropped += lines;
			nb.dropped_total += lines;
			nb.len = 0;
			nb.mid_line = false;
			return;
		}
		nb.mid_line = nb.buf[r - 1] != '\n';
		memmove(nb.buf, nb.buf + r, nb.len - (size_t)r);
		nb.len -= (size_t)r;
	}
}

/* Queue one line, dropping the oldest whole lines to make room (never the one partly
 * written: the reader would see half a line joined to another). */
static void nb_queue(const char *line, size_t len)
{
	size_t keep = 0; /* the partly written line, kept at the front */
	char *nl;

	if (nb.mid_line && (nl = memchr(nb.buf, '\n', nb.len)))
		keep = (size_t)(nl - nb.buf) + 1;
	while (nb.len + len > sizeof(nb.buf) && nb.len > keep) {
		nl = memchr(nb.buf + keep, '\n', nb.len - keep);
		size_t cut = nl ? (size_t)(nl - nb.buf) + 1 - keep : nb.len - keep;

		memmove(nb.buf + keep, nb.buf + keep + cut, nb.len - keep - cut);
		nb.len -= cut;
		nb.dropped++;
		nb.dropped_total++;
	}
	if (nb.len + len > sizeof(nb.buf)) {
		nb.dropped++;
		nb.dropped_total++;
		return;
	}
	memcpy(nb.buf + nb.len, line, len);
	nb.len += len;
}

static size_t format_line(char *line, size_t size, enum log_level level,
			  const struct log_field *fields, size_t n_fields, const char *msg);

/* Queue a line (len 0: none) and write what the log takes. */
static void nb_emit(const char *line, size_t len)
{
	nb_drain();
	if (!nb.len && nb.dropped) {
		/* Writing works again: say what was lost before the next line. */
		uint64_t n = nb.dropped;
		const struct log_field field = LOG_INT("lines", n);
		char msg[160], notice[LINE_SIZE];
		size_t notice_len;

		nb.dropped = 0;
		snprintf(msg, sizeof(msg),
			 "the log did not take %llu lines (not writable, or full); they are lost",
			 (unsigned long long)n);
		notice_len = format_line(notice, sizeof(notice), LOG_LEVEL_WARN, &field, 1, msg);
		nb_queue(notice, notice_len);
	}
	if (len)
		nb_queue(line, len);
	nb_drain();
}

size_t log_pending(void)
{
	return nb.len;
}

int log_pending_fd(void)
{
	if (nb.mode == NB_OFF)
		return -1;
	return nb.fd >= 0 ? nb.fd : log_fd();
}

void log_flush(void)
{
	if (nb.mode != NB_OFF)
		nb_emit("", 0);
}

void log_flush_for(unsigned timeout_ms)
{
	uint64_t deadline = now_ms() + timeout_ms, now;

	if (nb.mode == NB_OFF)
		return;
	for (;;) {
		struct pollfd pfd = {.fd = log_pending_fd(), .events = POLLOUT};

		log_flush();
		if (!log_pending() || (now = now_ms()) >= deadline)
			return;
		(void)poll(&pfd, 1, (int)(deadline - now));
	}
}

uint64_t log_dropped(void)
{
	return nb.dropped_total;
}

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

/* One whole line, its message already formatted: its length. */
static size_t format_line(char *line, size_t size, enum log_level level,
			  const struct log_field *fields, size_t n_fields, const char *msg)
{
	static const char prio[] = {[LOG_LEVEL_ERROR] = '3',
				    [LOG_LEVEL_WARN] = '4',
				    [LOG_LEVEL_INFO] = '6',
				    [LOG_LEVEL_DEBUG] = '7'};
	bool journal = log_journal && log_file_fd < 0;
	char stamp[40];
	struct timespec ts;
	struct tm tm;
	size_t len;
	int n;

	if (journal && size > 3) {
		/* "<N>" first; the rest of the line as usual, without our timestamp. */
		line[0] = '<';
		line[1] = prio[level];
		line[2] = '>';
		if (log_format_ != LOG_FORMAT_JSON) {
			n = snprintf(line + 3, size - 3, "%s[%d] %s: %s\n", log_ident,
				     (int)getpid(), level_names[level], msg);
			len = 3 + (size_t)n;
			if (len > size - 1) {
				len = size - 1;
				line[len - 1] = '\n';
			}
			return len;
		}
		line += 3;
		size -= 3;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = (int)strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(stamp + n, sizeof(stamp) - (size_t)n, ".%03ldZ", ts.tv_nsec / 1000000);

	if (log_format_ == LOG_FORMAT_JSON) {
		struct out o = {.buf = line, .size = size - 2};

		format_json(&o, stamp, level, msg, fields, n_fields);
		len = o.len + (journal ? 3 : 0);
	} else {
		/* Fields are for machines; the text line says the same in words. */
		n = snprintf(line, size, "%s %s[%d] %s: %s\n", stamp, log_ident, (int)getpid(),
			     level_names[level], msg);
		len = (size_t)n;
		if (len > size - 1) {
			len = size - 1;
			line[len - 1] = '\n';
		}
	}
	return len;
}

static void emit_line(enum log_level level, const struct log_field *fields, size_t n_fields,
		      const char *msg)
{
	char line[LINE_SIZE];
	size_t len = format_line(line, sizeof(line), level, fields, n_fields, msg);

	if (nb.mode != NB_OFF) {
		nb_emit(line, len);
		return;
	}
	/* A log line that cannot be written has nowhere else to go. */
	if (write(log_fd(), line, len) < 0) {
	}
}

void log_vfields(enum log_level level, const struct log_field *fields, size_t n_fields,
		 const char *fmt, va_list ap)
{
	int saved_errno = errno;
	char msg[MSG_SIZE];

	if (level > log_max)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	emit_line(level, fields, n_fields, msg);
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
