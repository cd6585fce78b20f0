/* Option table and parsers; see options.h. Pure code: no I/O except --help and reading
 * the config file (read_config, in a child process with a deadline). */
#include "options.h"

#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "safefile.h"
#include "timeutil.h"

enum option_kind {
	OPT_STRING,
	OPT_BIND,
	OPT_UINT,
	OPT_DURATION,
	OPT_FLAG,
	OPT_ONOFF,
	OPT_LOG_FORMAT,
	OPT_LOOP,
	OPT_BPF,
	OPT_READY_MODE,
	OPT_NOTIFY_ACCESS,
};

struct option_def {
	const char *name;
	char short_name;
	enum option_kind kind;
	size_t offset;
	unsigned min, max; /* for OPT_UINT */
	bool cmdline_only; /* meaningless in a config file or SIGVISOR_ARGS */
	const char *arg;
	const char *help;
};

#define OFF(field) offsetof(struct settings, field)

static const struct option_def option_defs[] = {
	{"bind", 'b', OPT_BIND, OFF(binds), 0, 0, false, "ADDR",
	 "HOST:PORT, [V6]:PORT or unix:PATH; repeatable (default 127.0.0.1:8000)"},
	{"workers", 'w', OPT_UINT, OFF(workers), 1, 4096, false, "N", "pool size (default 2)"},
	{"config", 'c', OPT_STRING, OFF(config), 0, 0, false, "PATH",
	 "config file of key = value lines"},
	{"timeout", 't', OPT_DURATION, OFF(timeout_ms), 0, 0, false, "S",
	 "watchdog timeout for workers that send WATCHDOG=1; 0 off (default 30)"},
	{"graceful-timeout", 0, OPT_DURATION, OFF(graceful_timeout_ms), 0, 0, false, "S",
	 "how long stopping workers get before SIGKILL (default 30)"},
	{"ready-timeout", 0, OPT_DURATION, OFF(ready_timeout_ms), 0, 0, false, "S",
	 "how long a new worker may take to send READY=1 (default 30)"},
	{"ready-mode", 0, OPT_READY_MODE, OFF(ready_mode), 0, 0, false, "auto|notify|start",
	 "when a new worker counts as ready: on READY=1 (notify), once started (start); auto: "
	 "notify for the built-in worker, start for a COMMAND"},
	{"notify-access", 0, OPT_NOTIFY_ACCESS, OFF(notify_access), 0, 0, false, "main|all",
	 "whose sd_notify messages count for a worker: its own process (main) or any process "
	 "it started (all, for systemd-notify in a script) (default main)"},
	{"shutdown-delay", 0, OPT_DURATION, OFF(shutdown_delay_ms), 0, 0, false, "S",
	 "after TERM keep serving but report not-ready for S seconds (default 0)"},
	{"pid", 0, OPT_STRING, OFF(pidfile), 0, 0, false, "PATH", "write a pidfile"},
	{"log-file", 0, OPT_STRING, OFF(log_file), 0, 0, false, "PATH",
	 "log destination, reopened on USR1 (default stderr)"},
	{"log-format", 0, OPT_LOG_FORMAT, OFF(log_format), 0, 0, false, "text|json",
	 "log line format (default text)"},
	{"control", 0, OPT_STRING, OFF(control), 0, 0, false, "PATH",
	 "control socket (default $RUNTIME_DIRECTORY, /run/sigvisor or /tmp/sigvisor-UID, as "
	 "PID.sock)"},
	{"metrics", 0, OPT_STRING, OFF(metrics), 0, 0, false, "ADDR",
	 "serve /metrics, /healthz, /readyz"},
	{"loop", 0, OPT_LOOP, OFF(loop), 0, 0, false, "auto|epoll|io_uring",
	 "event-loop backend (default auto = epoll)"},
	{"bpf", 0, OPT_BPF, OFF(bpf), 0, 0, false, "auto|on|off",
	 "eBPF signal probes (default auto)"},
	{"bpf-pin", 0, OPT_STRING, OFF(bpf_pin), 0, 0, false, "DIR",
	 "where BPF maps are pinned (default /sys/fs/bpf/sigvisor)"},
	{"bpf-sigaction", 0, OPT_ONOFF, OFF(bpf_sigaction), 0, 0, false, "on|off",
	 "also count rt_sigaction calls (default on)"},
	{"backlog", 0, OPT_UINT, OFF(backlog), 1, 65535, false, "N",
	 "listen backlog (default 2048)"},
	{"user", 0, OPT_STRING, OFF(user), 0, 0, false, "U", "run workers as this user"},
	{"group", 0, OPT_STRING, OFF(group), 0, 0, false, "G", "run workers as this group"},
	{"check", 0, OPT_FLAG, OFF(check), 0, 0, true, NULL,
	 "parse everything, verify it could start, exit 0"},
	{"daemon", 0, OPT_FLAG, OFF(daemon), 0, 0, false, NULL,
	 "detach from the terminal (WINCH then stops workers)"},
	{"version", 'V', OPT_FLAG, OFF(version), 0, 0, true, NULL, "print the version and exit"},
	{"help", 'h', OPT_FLAG, OFF(help), 0, 0, true, NULL, "print this help and exit"},
};

static const struct option_def *find_long(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(option_defs) / sizeof(option_defs[0]); i++)
		if (strlen(option_defs[i].name) == len &&
		    strncmp(option_defs[i].name, name, len) == 0)
			return &option_defs[i];
	return NULL;
}

static const struct option_def *find_short(char c)
{
	for (size_t i = 0; i < sizeof(option_defs) / sizeof(option_defs[0]); i++)
		if (option_defs[i].short_name == c)
			return &option_defs[i];
	return NULL;
}

void settings_init(struct settings *s)
{
	memset(s, 0, sizeof(*s));
	s->workers = 2;
	s->timeout_ms = 30000;
	s->graceful_timeout_ms = 30000;
	s->ready_timeout_ms = 30000;
	s->shutdown_delay_ms = 0;
	s->log_format = LOG_FORMAT_TEXT;
	s->loop = LOOP_AUTO;
	s->bpf = BPF_AUTO;
	s->bpf_sigaction = true;
	s->backlog = 2048;
	s->binds_source = SOURCE_DEFAULT;
}

static void free_binds(struct settings *s)
{
	for (size_t i = 0; i < s->n_binds; i++)
		free(s->binds[i]);
	s->n_binds = 0;
}

void settings_free(struct settings *s)
{
	free_binds(s);
	for (size_t i = 0; i < sizeof(option_defs) / sizeof(option_defs[0]); i++) {
		if (option_defs[i].kind == OPT_STRING) {
			char **p = (char **)((char *)s + option_defs[i].offset);

			free(*p);
			*p = NULL;
		}
	}
	for (size_t i = 0; i < s->n_command; i++)
		free(s->command[i]);
	free(s->command);
	s->command = NULL;
	s->n_command = 0;
}

static int parse_uint(const char *v, unsigned min, unsigned max, unsigned *ret)
{
	char *end;
	unsigned long n;

	if (!v || *v < '0' || *v > '9')
		return -EINVAL;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || *end || n < min || n > max)
		return -ERANGE;
	*ret = (unsigned)n;
	return 0;
}

static int parse_bool(const char *v, bool *ret)
{
	static const char *const yes[] = {"on", "yes", "true", "1"};
	static const char *const no[] = {"off", "no", "false", "0"};

	for (size_t i = 0; i < 4; i++) {
		if (strcmp(v, yes[i]) == 0) {
			*ret = true;
			return 0;
		}
		if (strcmp(v, no[i]) == 0) {
			*ret = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* Map a word onto an enum through a list of names; index = enum value. */
static int parse_choice(const char *v, const char *const *choices, size_t n, int *ret)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v, choices[i]) == 0) {
			*ret = (int)i;
			return 0;
		}
	}
	return -EINVAL;
}

static const char *const loop_names[] = {"auto", "epoll", "io_uring"};
static const char *const bpf_names[] = {"auto", "on", "off"};
static const char *const log_format_names[] = {"text", "json"};
static const char *const ready_mode_names[] = {"auto", "notify", "start"};
static const char *const notify_access_names[] = {"main", "all"};

const char *loop_kind_name(enum loop_kind k)
{
	return loop_names[k];
}

/* The names of an enum option's values, index = enum value. */
static const char *const *choices_of(enum option_kind kind, size_t *ret_n)
{
	switch (kind) {
	case OPT_LOOP:
		*ret_n = sizeof(loop_names) / sizeof(loop_names[0]);
		return loop_names;
	case OPT_BPF:
		*ret_n = sizeof(bpf_names) / sizeof(bpf_names[0]);
		return bpf_names;
	case OPT_READY_MODE:
		*ret_n = sizeof(ready_mode_names) / sizeof(ready_mode_names[0]);
		return ready_mode_names;
	case OPT_NOTIFY_ACCESS:
		*ret_n = sizeof(notify_access_names) / sizeof(notify_access_names[0]);
		return notify_access_names;
	default:
		*ret_n = sizeof(log_format_names) / sizeof(log_format_names[0]);
		return log_format_names;
	}
}

int option_set(struct settings *s, enum option_source src, const char *name, const char *value,
	       char *err, size_t errlen)
{
	const struct option_def *d = find_long(name, strlen(name));
	void *field;
	int r = 0, choice;

	if (!d) {
		snprintf(err, errlen, "unknown option '%s'", name);
		return -EINVAL;
	}
	if (d->cmdline_only && src != SOURCE_CMDLINE) {
		snprintf(err, errlen, "option '%s' is only allowed on the command line", name);
		return -EINVAL;
	}
	if (d->kind == OPT_FLAG) {
		bool b = true;

		if (value && parse_bool(value, &b) < 0) {
			snprintf(err, errlen, "option '--%s' takes no value (or on/off), got '%s'",
				 name, value);
			return -EINVAL;
		}
		*(bool *)((char *)s + d->offset) = b;
		return 0;
	}
	if (!value) {
		snprintf(err, errlen, "option '--%s' needs a value (%s)", name, d->arg);
		return -EINVAL;
	}
	field = (char *)s + d->offset;
	switch (d->kind) {
	case OPT_STRING:
		if (!*value) {
			snprintf(err, errlen, "option '--%s' needs a non-empty value", name);
			return -EINVAL;
		}
		free(*(char **)field);
		*(char **)field = strdup(value);
		if (!*(char **)field)
			r = -ENOMEM;
		break;
	case OPT_BIND:
		if (!*value) {
			snprintf(err, errlen, "option '--bind' needs an address");
			return -EINVAL;
		}
		/* A stronger source's binds replace a weaker source's list. */
		if (s->binds_source != src) {
			free_binds(s);
			s->binds_source = src;
		}
		if (s->n_binds >= MAX_BINDS) {
			snprintf(err, errlen, "too many --bind addresses (at most %d)", MAX_BINDS);
			return -EINVAL;
		}
		s->binds[s->n_binds] = strdup(value);
		if (!s->binds[s->n_binds])
			return -ENOMEM;
		s->n_binds++;
		break;
	case OPT_UINT:
		r = parse_uint(value, d->min, d->max, (unsigned *)field);
		if (r < 0) {
			snprintf(err, errlen,
				 "option '--%s': '%s' is not a whole number from %u to %u", name,
				 value, d->min, d->max);
			return -EINVAL;
		}
		break;
	case OPT_DURATION:
		r = parse_duration_ms(value, (uint64_t *)field);
		if (r < 0) {
			snprintf(err, errlen,
				 "option '--%s': '%s' is not a duration (seconds like 30 or 0.5, "
				 "or 250ms)",
				 name, value);
			return -EINVAL;
		}
		break;
	case OPT_ONOFF:
		if (parse_bool(value, (bool *)field) < 0) {
			snprintf(err, errlen, "option '--%s': '%s' is not on or off", name, value);
			return -EINVAL;
		}
		break;
	case OPT_LOG_FORMAT:
	case OPT_LOOP:
	case OPT_BPF:
	case OPT_READY_MODE:
	case OPT_NOTIFY_ACCESS: {
		size_t n;
		const char *const *names = choices_of(d->kind, &n);

		if (parse_choice(value, names, n, &choice) < 0) {
			snprintf(err, errlen, "option '--%s': '%s' is not one of %s", name, value,
				 d->arg);
			return -EINVAL;
		}
		*(int *)field = choice; /* every enum here is int-sized */
		break;
	}
	case OPT_FLAG:
		break;
	}
	return r;
}

int options_parse_args(struct settings *s, enum option_source src, int argc, char *const *argv,
		       int first, bool allow_command, char *err, size_t errlen)
{
	for (int i = first; i < argc; i++) {
		const char *a = argv[i], *value = NULL;
		const struct option_def *d;
		char longname[64];
		int r;

		if (strcmp(a, "--") == 0) {
			if (!allow_command) {
				snprintf(err, errlen,
					 "a worker COMMAND ('--') is not allowed here");
				return -EINVAL;
			}
			s->n_command = (size_t)(argc - i - 1);
			if (s->n_command == 0) {
				snprintf(err, errlen, "'--' must be followed by a worker COMMAND");
				return -EINVAL;
			}
			s->command = calloc(s->n_command + 1, sizeof(char *));
			if (!s->command)
				return -ENOMEM;
			for (size_t k = 0; k < s->n_command; k++) {
				s->command[k] = strdup(argv[i + 1 + (int)k]);
				if (!s->command[k])
					return -ENOMEM;
			}
			return 0;
		}
		if (a[0] == '-' && a[1] == '-') {
			const char *eq = strchr(a + 2, '=');
			size_t len = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);

			d = find_long(a + 2, len);
			if (!d) {
				snprintf(err, errlen, "unknown option '%.*s' (see --help)",
					 (int)len + 2, a);
				return -EINVAL;
			}
			if (eq)
				value = eq + 1;
		} else if (a[0] == '-' && a[1] != '\0') {
			d = find_short(a[1]);
			if (!d) {
				snprintf(err, errlen, "unknown option '-%c' (see --help)", a[1]);
				return -EINVAL;
			}
			if (a[2] != '\0') {
				if (d->kind == OPT_FLAG) {
					snprintf(err, errlen, "option '-%c' takes no value", a[1]);
					return -EINVAL;
				}
				value = a + 2;
			}
		} else {
			snprintf(err, errlen,
				 "unexpected argument '%s' (a worker COMMAND goes after '--')", a);
			return -EINVAL;
		}
		if (!value && d->kind != OPT_FLAG) {
			if (i + 1 >= argc) {
				snprintf(err, errlen, "option '--%s' needs a value (%s)", d->name,
					 d->arg);
				return -EINVAL;
			}
			value = argv[++i];
		}
		snprintf(longname, sizeof(longname), "%s", d->name);
		r = option_set(s, src, longname, value, err, errlen);
		if (r < 0)
			return r;
	}
	return 0;
}

/* One option's word(s) for settings_words(), appended at words[*n]. */
static int option_words(const struct settings *s, const struct option_def *d, char **words, int *n)
{
	const void *field = (const char *)s + d->offset;
	const char *const *names;
	size_t n_names;
	uint64_t ms;
	int r = 0;

	switch (d->kind) {
	case OPT_STRING:
		if (*(char *const *)field)
			r = asprintf(&words[(*n)++], "--%s=%s", d->name, *(char *const *)field);
		break;
	case OPT_BIND:
		/* The default is left to start-up and reload, which fill it in. */
		for (size_t i = 0; s->binds_source != SOURCE_DEFAULT && i < s->n_binds && r >= 0;
		     i++)
			r = asprintf(&words[(*n)++], "--%s=%s", d->name, s->binds[i]);
		break;
	case OPT_UINT:
		r = asprintf(&words[(*n)++], "--%s=%u", d->name, *(const unsigned *)field);
		break;
	case OPT_DURATION:
		/* In seconds: parse_duration_ms takes back every value it made this way, and
		 * not in ms (its whole part is limited to what fits once times 1000^2). */
		ms = *(const uint64_t *)field;
		if (ms % 1000)
			r = asprintf(&words[(*n)++], "--%s=%llu.%03u", d->name,
				     (unsigned long long)(ms / 1000), (unsigned)(ms % 1000));
		else
			r = asprintf(&words[(*n)++], "--%s=%llu", d->name,
				     (unsigned long long)(ms / 1000));
		break;
	case OPT_FLAG:
	case OPT_ONOFF:
		r = asprintf(&words[(*n)++], "--%s=%s", d->name,
			     *(const bool *)field ? "on" : "off");
		break;
	case OPT_LOG_FORMAT:
	case OPT_LOOP:
	case OPT_BPF:
	case OPT_READY_MODE:
	case OPT_NOTIFY_ACCESS:
		names = choices_of(d->kind, &n_names);
		if (*(const int *)field < 0 || (size_t) * (const int *)field >= n_names)
			return -EINVAL;
		r = asprintf(&words[(*n)++], "--%s=%s", d->name, names[*(const int *)field]);
		break;
	}
	if (r < 0) {
		words[--(*n)] = NULL; /* asprintf leaves it undefined */
		return -ENOMEM;
	}
	return 0;
}

char **settings_words(const struct settings *s, int *ret_n)
{
	size_t n_defs = sizeof(option_defs) / sizeof(option_defs[0]);
	/* one word per option, the binds, "--" and the COMMAND, the NULL */
	char **words = calloc(n_defs + s->n_binds + 1 + s->n_command + 1, sizeof(char *));
	int n = 0;

	if (!words)
		return NULL;
	/* Each word is added after the last, so a failure leaves the first NULL just past
	 * every word made: options_free_words() frees them all. */
	for (size_t i = 0; i < n_defs; i++) {
		/* --check, --help, --version: never on in a running arbiter */
		if (!option_defs[i].cmdline_only && option_words(s, &option_defs[i], words, &n) < 0)
			goto fail;
	}
	if (s->n_command && !(words[n++] = strdup("--")))
		goto fail;
	for (size_t i = 0; i < s->n_command; i++)
		if (!(words[n++] = strdup(s->command[i])))
			goto fail;
	*ret_n = n;
	return words;
fail:
	options_free_words(words);
	return NULL;
}

void options_free_words(char **words)
{
	if (!words)
		return;
	for (char **w = words; *w; w++)
		free(*w);
	free(words);
}

char **options_split_words(const char *s, int *ret_n, char *err, size_t errlen)
{
	size_t len = strlen(s);
	char **words = calloc(len / 2 + 2, sizeof(char *));
	char *buf = malloc(len + 1);
	int n = 0;
	const char *p = s;

	if (!words || !buf) {
		free(words);
		free(buf);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (;;) {
		size_t k = 0;
		char quote = 0;
		bool any = false;

		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		if (!*p)
			break;
		for (; *p; p++) {
			if (quote) {
				if (*p == quote)
					quote = 0;
				else if (*p == '\\' && quote == '"' && p[1] &&
					 strchr("\"\\$`", p[1]))
					buf[k++] = *++p; /* as in sh: only these are escaped */
				else
					buf[k++] = *p;
			} else if (*p == '\'' || *p == '"') {
				quote = *p;
				any = true;
			} else if (*p == '\\' && p[1]) {
				buf[k++] = *++p;
			} else if (*p == ' ' || *p == '\t' || *p == '\n') {
				break;
			} else {
				buf[k++] = *p;
			}
		}
		if (quote) {
			snprintf(err, errlen, "unterminated %c quote", quote);
			options_free_words(words);
			free(buf);
			return NULL;
		}
		if (k || any) {
			words[n] = strndup(buf, k);
			if (!words[n]) {
				options_free_words(words);
				free(buf);
				snprintf(err, errlen, "out of memory");
				return NULL;
			}
			n++;
		}
	}
	free(buf);
	*ret_n = n;
	return words;
}

/* inih needs 3 bytes more than the longest line ('\r', '\n', '\0'; ini.h). */
_Static_assert(CONFIG_MAX_LINE + 3 <= INI_MAX_LINE, "CONFIG_MAX_LINE exceeds inih's buffer");

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

/* What the reader found, facts only: the child that gathers them may be forked from a
 * process with threads (the BPF loader), so it makes system calls and nothing else, and
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

/* The whole file, NUL-terminated, in *ret_data (free it); at most CONFIG_MAX_SIZE
 * bytes, within CONFIG_READ_TIMEOUT_MS: the reader of config_read_start, waited for
 * here (start-up, --check). The loop (a HUP) uses the same reader without waiting. */
static int read_config(const char *path, char **ret_data, size_t *ret_len, char *err, size_t errlen)
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

/* Before inih sees a byte: it would cut a line longer than its buffer and parse the
 * rest as a line of its own (a long comment ending in "workers = 7" would set it), and
 * a NUL byte would end a line early. */
static int check_lines(const char *path, const char *data, size_t len, char *err, size_t errlen)
{
	const char *p = data, *end = data + len;

	for (unsigned line = 1; p < end; line++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (memchr(p, '\0', n)) {
			snprintf(err, errlen, "%s:%u: a NUL byte; a config file is text", path,
				 line);
			return -EINVAL;
		}
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n > CONFIG_MAX_LINE) {
			snprintf(err, errlen, "%s:%u: line too long (%zu bytes, at most %d)", path,
				 line, n, CONFIG_MAX_LINE);
			return -EINVAL;
		}
		p = nl ? nl + 1 : end;
	}
	return 0;
}

struct config_ctx {
	struct settings *s;
	const char *data;
	size_t len, pos;
	const char *path;
	unsigned line;
	char *err;
	size_t errlen;
	bool failed;
};

/* inih's reader: one whole line at a time from memory, counted, since its handler does
 * not get the line number. */
static char *config_read_line(char *str, int num, void *stream)
{
	struct config_ctx *c = stream;
	const char *p = c->data + c->pos, *nl;
	size_t n;

	if (c->failed || c->pos >= c->len)
		return NULL;
	nl = memchr(p, '\n', c->len - c->pos);
	n = nl ? (size_t)(nl - p) + 1 : c->len - c->pos;
	c->line++;
	/* Never part of a line. check_lines() makes this unreachable unless inih's buffer
	 * is smaller than its header says (Debian lets a program change ini_max_line). */
	if (num < 1 || n > (size_t)num - 1) {
		snprintf(c->err, c->errlen, "%s:%u: line too long for the parser (%d bytes)",
			 c->path, c->line, num);
		c->failed = true;
		return NULL;
	}
	memcpy(str, p, n);
	str[n] = '\0';
	c->pos += n;
	return str;
}

static int config_entry(void *user, const char *section, const char *name, const char *value)
{
	struct config_ctx *c = user;
	char sub[512];

	if (c->failed)
		return 0;
	if (section && *section) {
		snprintf(c->err, c->errlen,
			 "%s:%u: sections ([%s]) are not used; write key = value lines", c->path,
			 c->line, section);
		c->failed = true;
		return 0;
	}
	if (strcmp(name, "config") == 0) {
		snprintf(c->err, c->errlen, "%s:%u: 'config' cannot be set from a config file",
			 c->path, c->line);
		c->failed = true;
		return 0;
	}
	if (option_set(c->s, SOURCE_CONFIG, name, value, sub, sizeof(sub)) < 0) {
		snprintf(c->err, c->errlen, "%s:%u: %s", c->path, c->line, sub);
		c->failed = true;
		return 0;
	}
	return 1;
}

/* A config file's text, already read: data is NUL-terminated, and freed here. */
static int apply_config(struct settings *s, const char *path, char *data, size_t len, char *err,
			size_t errlen)
{
	struct config_ctx c = {.s = s, .path = path, .err = err, .errlen = errlen, .len = len};
	int r;

	r = check_lines(path, data, c.len, err, errlen);
	if (r < 0) {
		free(data);
		return r;
	}
	c.data = data;
	r = ini_parse_stream(config_read_line, &c, config_entry, &c);
	free(data);
	if (c.failed)
		return -EINVAL;
	if (r < 0) {
		snprintf(err, errlen, "%s: out of memory parsing the config file", path);
		return -EINVAL;
	}
	if (r > 0) {
		snprintf(err, errlen, "%s:%d: expected 'key = value'", path, r);
		return -EINVAL;
	}
	return 0;
}

int options_load_config(struct settings *s, const char *path, char *err, size_t errlen)
{
	char *data;
	size_t len;
	int r = read_config(path, &data, &len, err, errlen);

	return r < 0 ? r : apply_config(s, path, data, len, err, errlen);
}

/* The first half of a load: defaults and SIGVISOR_ARGS in s, the command line in *cmd
 * (applied again last, for its precedence); the config file to read, or NULL. */
static int load_first(struct settings *s, struct settings *cmd, int argc, char *const *argv,
		      const char *env, const char **ret_config, char *err, size_t errlen)
{
	int r;

	/* Initialized before anything can fail: the caller frees them either way. */
	settings_init(s);
	/* The config file is named on the command line or in SIGVISOR_ARGS, but sits
	 * between them in precedence: find it first, then apply everything in order. */
	settings_init(cmd);
	r = options_parse_args(cmd, SOURCE_CMDLINE, argc, argv, 1, true, err, errlen);
	if (r < 0)
		return r;

	if (env && *env) {
		char sub[768];
		int n;
		char **words = options_split_words(env, &n, sub, sizeof(sub));

		if (!words) {
			snprintf(err, errlen, "SIGVISOR_ARGS: %s", sub);
			return -EINVAL;
		}
		r = options_parse_args(s, SOURCE_ENV, n, words, 0, false, sub, sizeof(sub));
		options_free_words(words);
		if (r < 0) {
			snprintf(err, errlen, "SIGVISOR_ARGS: %s", sub);
			return r;
		}
	}
	*ret_config = cmd->config ? cmd->config : s->config;
	if (cmd->help || cmd->version)
		*ret_config = NULL;
	return 0;
}

int options_load_read(struct settings *s, int argc, char *const *argv, const char *env,
		      struct config_read *pre, char *err, size_t errlen)
{
	struct settings cmd;
	const char *config;
	int r = load_first(s, &cmd, argc, argv, env, &config, err, errlen);

	if (r == 0 && config) {
		if (pre && pre->path && pre->data && strcmp(pre->path, config) == 0) {
			r = apply_config(s, config, pre->data, pre->len, err, errlen);
			pre->data = NULL; /* apply_config freed it */
		} else {
			r = options_load_config(s, config, err, errlen);
		}
	}
	settings_free(&cmd);
	if (r < 0)
		return r;
	return options_parse_args(s, SOURCE_CMDLINE, argc, argv, 1, true, err, errlen);
}

int options_load(struct settings *s, int argc, char *const *argv, const char *env, char *err,
		 size_t errlen)
{
	return options_load_read(s, argc, argv, env, NULL, err, errlen);
}

char *options_config_path(int argc, char *const *argv, const char *env)
{
	struct settings s, cmd;
	const char *config = NULL;
	char err[256], *path = NULL;

	if (load_first(&s, &cmd, argc, argv, env, &config, err, sizeof(err)) == 0 && config)
		path = strdup(config);
	settings_free(&cmd);
	settings_free(&s);
	return path;
}

void options_print_help(const char *prog)
{
	printf("Usage: %s [OPTIONS] [-- COMMAND [ARG...]]\n"
	       "       %s status [--control PATH] [--json | --events]\n\n"
	       "A pre-fork process supervisor driven by signals (HUP, TERM, INT, QUIT, TTIN, "
	       "TTOU,\n"
	       "USR1, USR2, WINCH). Without COMMAND every worker is the built-in HTTP worker.\n\n"
	       "Options:\n",
	       prog, prog);
	for (size_t i = 0; i < sizeof(option_defs) / sizeof(option_defs[0]); i++) {
		const struct option_def *d = &option_defs[i];
		char left[64];

		if (d->short_name)
			snprintf(left, sizeof(left), "-%c, --%s%s%s", d->short_name, d->name,
				 d->arg ? " " : "", d->arg ? d->arg : "");
		else
			snprintf(left, sizeof(left), "    --%s%s%s", d->name, d->arg ? " " : "",
				 d->arg ? d->arg : "");
		printf("  %-34s %s\n", left, d->help);
	}
	printf("\nEnvironment: SIGVISOR_ARGS is parsed like extra command-line words.\n"
	       "Precedence: command line > config file > SIGVISOR_ARGS > defaults.\n"
	       "Durations are seconds (30, 0.5) or milliseconds (250ms).\n");
}
