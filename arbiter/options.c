/* The option table and the words it reads and writes: option_set() and the command-line
 * parser, SIGVISOR_ARGS split into words, settings_words() (the settings back to words,
 * for the upgrade state) and --help; see options.h. Pure code: no I/O except --help.
 * Putting the sources together, config file included, is options_load.c's. */
#include "options.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	{"workers", 'w', OPT_UINT, OFF(workers), 1, SETTINGS_MAX_WORKERS, false, "N",
	 "pool size (default 2); with --max-workers, the smallest the pool gets and its start"},
	{"max-workers", 0, OPT_UINT, OFF(max_workers), 0, SETTINGS_MAX_WORKERS, false, "M",
	 "grow the pool up to M workers while connections wait in a listen queue, back to "
	 "--workers when idle; 0 off (default 0)"},
	{"scale-up-after", 0, OPT_DURATION, OFF(scale_up_after_ms), 0, 0, false, "S",
	 "with --max-workers: add a worker once connections waited this long (default 0.1)"},
	{"scale-down-after", 0, OPT_DURATION, OFF(scale_down_after_ms), 0, 0, false, "S",
	 "with --max-workers: retire a worker once the queues were empty this long (default 30)"},
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
	 "notify for the built-in worker; for a COMMAND, READY=1 or once seen serving a "
	 "listening socket, at the latest after --ready-timeout"},
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

_Static_assert(sizeof(option_defs) / sizeof(option_defs[0]) <= SETTINGS_MAX_OPTIONS,
	       "struct settings has no room for every option's origin");

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
	s->scale_up_after_ms = 100;
	s->scale_down_after_ms = 30000;
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
	/* Recorded before the value is checked: a value that fails fails the whole load. */
	s->origin[d - option_defs] = (struct option_origin){
		.source = src,
		.line = src == SOURCE_CONFIG ? s->config_line : 0,
	};
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

int settings_describe(const struct settings *s, size_t i, const char **ret_name, char **ret_value,
		      struct option_origin *ret_origin)
{
	size_t n_defs = sizeof(option_defs) / sizeof(option_defs[0]);
	const struct option_def *d = i < n_defs ? &option_defs[i] : NULL;
	char *words[MAX_BINDS + 1] = {0}, *value = NULL;
	size_t len = 0, prefix;
	int n = 0, r = 0;

	if (!d)
		return -ENOENT;
	prefix = strlen(d->name) + 3; /* "--name=" */
	if (d->cmdline_only)
		return -EAGAIN;
	/* The binds start-up filled in for the default too, which option_words leaves out. */
	if (d->kind != OPT_BIND)
		r = option_words(s, d, words, &n);
	for (size_t k = 0; d->kind == OPT_BIND && k < s->n_binds && r == 0; k++) {
		if (asprintf(&words[n++], "--%s=%s", d->name, s->binds[k]) < 0) {
			words[--n] = NULL; /* asprintf leaves it undefined */
			r = -ENOMEM;
		}
	}
	for (int k = 0; r == 0 && k < n; k++) {
		size_t add = strlen(words[k]) - prefix;
		char *nv = realloc(value, len + add + (k ? 2 : 0) + 1);

		if (!nv) {
			r = -ENOMEM;
			break;
		}
		value = nv;
		if (k) {
			memcpy(value + len, ", ", 2);
			len += 2;
		}
		memcpy(value + len, words[k] + prefix, add + 1);
		len += add;
	}
	for (int k = 0; k < n; k++)
		free(words[k]);
	if (r < 0) {
		free(value);
		return r;
	}
	*ret_name = d->name;
	*ret_value = value;
	*ret_origin = s->origin[i];
	return 0;
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

void options_print_help(const char *prog)
{
	printf("Usage: %s [OPTIONS] [-- COMMAND [ARG...]]\n"
	       "       %s status [--json | --events]\n"
	       "       %s workers [N|+K|-K] | reload | upgrade | reopen | stop [--quick]\n"
	       "       %s kill-worker ID|pid:PID [--signal SIG] [--force]\n"
	       "       %s signals | config\n"
	       "  (each command: [--json] [--control PATH] [--timeout SECONDS])\n\n"
	       "A pre-fork process supervisor driven by signals (HUP, TERM, INT, QUIT, TTIN, "
	       "TTOU,\n"
	       "USR1, USR2, WINCH). Without COMMAND every worker is the built-in HTTP worker.\n\n"
	       "Options:\n",
	       prog, prog, prog, prog, prog);
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
