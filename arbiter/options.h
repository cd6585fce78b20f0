/* Settings: the parsed command line, SIGVISOR_ARGS and the config file.
 *
 * One table describes every option by its long name, so the command line, the
 * environment and a config file's "key = value" lines all go through the same
 * option_set(). Precedence (doc/USAGE.md): command line > config file > SIGVISOR_ARGS >
 * defaults; it falls out of applying the sources in reverse order, except that a
 * repeatable option (--bind) from a stronger source replaces rather than extends.
 *
 * options.c is the table and the words (parse, split, settings_words, --help);
 * options_load.c puts the sources together; config_file.h reads the file. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config_file.h"
#include "log.h"

enum loop_kind {
	LOOP_AUTO,
	LOOP_EPOLL,
	LOOP_IO_URING,
};

enum bpf_mode {
	BPF_AUTO,
	BPF_ON,
	BPF_OFF,
};

enum ready_mode {
	READY_AUTO,
	READY_NOTIFY,
	READY_START,
};

/* Whose sd_notify messages count for a worker (systemd's NotifyAccess=). */
enum notify_access {
	NOTIFY_ACCESS_MAIN, /* the worker's own process only */
	NOTIFY_ACCESS_ALL,  /* any process of the worker's tree (systemd-notify, a child) */
};

enum option_source {
	SOURCE_DEFAULT,
	SOURCE_ENV,
	SOURCE_CONFIG,
	SOURCE_CMDLINE,
};

/* Where a setting's value came from (`sigvisor config`): its source, and for the config
 * file the line (0: unknown). */
struct option_origin {
	enum option_source source;
	unsigned line;
};

/* Room for one origin per option of the table (options.c checks it fits). */
#define SETTINGS_MAX_OPTIONS 32

#define MAX_BINDS 64
/* --workers's bound, and of every other way to set the pool's size (`sigvisor workers`). */
#define SETTINGS_MAX_WORKERS 4096u
/* The shortest --scale-up-after (looked at every half of it) and --scale-down-after. */
#define SETTINGS_MIN_SCALE_UP_MS   10u
#define SETTINGS_MIN_SCALE_DOWN_MS 100u

struct settings {
	char *binds[MAX_BINDS];
	size_t n_binds;
	enum option_source binds_source;
	unsigned workers;
	/* --max-workers: 0 off; else workers is the minimum (autoscale.h) */
	unsigned max_workers;
	uint64_t scale_up_after_ms;
	uint64_t scale_down_after_ms;
	char *config;
	uint64_t timeout_ms;
	uint64_t graceful_timeout_ms;
	uint64_t ready_timeout_ms;
	uint64_t shutdown_delay_ms;
	enum ready_mode ready_mode;
	enum notify_access notify_access;
	char *pidfile;
	char *log_file;
	enum log_format log_format;
	char *control;
	char *metrics;
	enum loop_kind loop;
	enum bpf_mode bpf;
	char *bpf_pin;
	bool bpf_sigaction;
	unsigned backlog;
	char *user;
	char *group;
	bool check;
	bool daemon;
	bool help;
	bool version;
	/* The worker COMMAND after "--"; NULL for the built-in worker. */
	char **command;
	size_t n_command;
	/* Each option's origin, by its place in the table, set by option_set(); and the
	 * line of the config file being applied (options_load.c), for its origins. */
	struct option_origin origin[SETTINGS_MAX_OPTIONS];
	unsigned config_line;
};

void settings_init(struct settings *s);
void settings_free(struct settings *s);

/* Apply one option by its long name ("workers", "bind", ...). value is NULL for a
 * flag given without one. On error returns -EINVAL and writes a message naming the
 * option and the problem into err. */
int option_set(struct settings *s, enum option_source src, const char *name, const char *value,
	       char *err, size_t errlen);

/* Parse argv[first..argc) as command-line words. Words after "--" become the
 * COMMAND (only allowed when allow_command). */
int options_parse_args(struct settings *s, enum option_source src, int argc, char *const *argv,
		       int first, bool allow_command, char *err, size_t errlen);

/* Split SIGVISOR_ARGS the way a shell would for simple words: whitespace separates,
 * single and double quotes group, backslash escapes. Returns a NULL-terminated
 * array (free with options_free_words) or NULL with err set. */
char **options_split_words(const char *s, int *ret_n, char *err, size_t errlen);
void options_free_words(char **words);

/* The inverse of options_parse_args(): command-line words that, parsed from index 0 as
 * SOURCE_CMDLINE with a COMMAND allowed into a fresh struct, give s back (every option
 * as --name=value, a flag as --name=on|off, the binds unless they are the default, then
 * "--" and the COMMAND); binds_source then says the command line. --check, --help and
 * --version are left out: a running arbiter has them off. NULL-terminated (free with
 * options_free_words), or NULL if out of memory. */
char **settings_words(const struct settings *s, int *ret_n);

void options_print_help(const char *prog);

/* The settings one by one for `sigvisor config`, in the table's order, the ones only
 * the command line takes (--check, --help, --version) left out: i from 0 until it
 * returns -ENOENT. The option's name, its value in words as the command line takes it
 * (malloc'd; the binds joined by ", "; NULL when unset, as --pid without one) and where
 * it came from. 0, -ENOMEM, or -EAGAIN for an index to skip. */
int settings_describe(const struct settings *s, size_t i, const char **ret_name, char **ret_value,
		      struct option_origin *ret_origin);

const char *loop_kind_name(enum loop_kind k);

/* The load (options_load.c): the sources in their order, a config file's lines through
 * inih; reading the file is config_file.c's. */

/* Apply a config file of "key = value" lines (long option names; '#' or ';' starts a
 * comment). Only a regular file is read, never one that could block or not end (a
 * FIFO, a device, a socket, a file of procfs, sysfs or another pseudo-filesystem) nor a
 * directory; one that takes longer than CONFIG_READ_TIMEOUT_MS, a file over
 * CONFIG_MAX_SIZE, a line over
 * CONFIG_MAX_LINE, a NUL byte or a read error fails it before any line is applied.
 * Every error starts with the path, names file:line where it is one line's fault, and
 * returns -EINVAL. */
int options_load_config(struct settings *s, const char *path, char *err, size_t errlen);

/* The whole parse, at startup and on HUP: defaults, SIGVISOR_ARGS (env may be NULL),
 * the config file (-c from argv or SIGVISOR_ARGS), then argv. */
int options_load(struct settings *s, int argc, char *const *argv, const char *env, char *err,
		 size_t errlen);

/* options_load() with the config file already read (a finished config_read, whose data
 * it takes), if pre is the file the load names; otherwise it reads the file itself. */
int options_load_read(struct settings *s, int argc, char *const *argv, const char *env,
		      struct config_read *pre, char *err, size_t errlen);

/* After a failed load, whether its error is to be a JSON line: the last --log-format
 * (before "--") of the command line, else of SIGVISOR_ARGS (env), else what the sources
 * applied before the failure (partial) said. Best effort: a config file's line after
 * the failing one is not read. */
bool options_json_wanted(const struct settings *partial, int argc, char *const *argv,
			 const char *env);

/* The config file options_load() would read (free it), or NULL: none, or the command
 * line or SIGVISOR_ARGS does not parse (the load says why). */
char *options_config_path(int argc, char *const *argv, const char *env);
