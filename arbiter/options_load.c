/* The load: defaults, SIGVISOR_ARGS, the config file, the command line, in that order
 * (options.h); a config file's text is checked, then parsed by inih line by line into
 * option_set(). Reading the file is config_file.c's, the table options.c's. */
#include "options.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_file.h"

/* inih needs 3 bytes more than the longest line ('\r', '\n', '\0'; ini.h). */
_Static_assert(CONFIG_MAX_LINE + 3 <= INI_MAX_LINE, "CONFIG_MAX_LINE exceeds inih's buffer");

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
	c->s->config_line = c->line;
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
	int r = config_file_read(path, &data, &len, err, errlen);

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

/* What no single option can say wrong: the autoscaling bounds and delays (autoscale.h),
 * checked once every source is applied, whichever set them. */
static int check_scaling(const struct settings *s, char *err, size_t errlen)
{
	if (s->max_workers && s->max_workers < s->workers) {
		snprintf(
			err, errlen,
			"--max-workers %u is less than --workers %u: the pool's maximum must be at "
			"least its minimum (--workers is the minimum with --max-workers)",
			s->max_workers, s->workers);
		return -EINVAL;
	}
	if (s->scale_up_after_ms < SETTINGS_MIN_SCALE_UP_MS) {
		snprintf(err, errlen,
			 "option '--scale-up-after': %llums is too short (at least %ums)",
			 (unsigned long long)s->scale_up_after_ms, SETTINGS_MIN_SCALE_UP_MS);
		return -EINVAL;
	}
	if (s->scale_down_after_ms < SETTINGS_MIN_SCALE_DOWN_MS) {
		snprintf(err, errlen,
			 "option '--scale-down-after': %llums is too short (at least %ums)",
			 (unsigned long long)s->scale_down_after_ms, SETTINGS_MIN_SCALE_DOWN_MS);
		return -EINVAL;
	}
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
	r = options_parse_args(s, SOURCE_CMDLINE, argc, argv, 1, true, err, errlen);
	return r < 0 ? r : check_scaling(s, err, errlen);
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

/* The last --log-format value of words[from..n) before "--". */
static const char *last_log_format(int from, int n, char *const *words)
{
	const char *last = NULL;

	for (int i = from; i < n && strcmp(words[i], "--") != 0; i++) {
		if (strncmp(words[i], "--log-format=", 13) == 0)
			last = words[i] + 13;
		else if (strcmp(words[i], "--log-format") == 0 && i + 1 < n)
			last = words[++i];
	}
	return last;
}

bool options_json_wanted(const struct settings *partial, int argc, char *const *argv,
			 const char *env)
{
	const char *last = last_log_format(1, argc, argv); /* argv[0]: the program */
	char err[16], **words;
	bool json;
	int n;

	if (last)
		return strcmp(last, "json") == 0;
	if (env && (words = options_split_words(env, &n, err, sizeof(err)))) {
		last = last_log_format(0, n, words);
		json = last ? strcmp(last, "json") == 0 : false;
		options_free_words(words);
		if (last)
			return json;
	}
	return partial->log_format == LOG_FORMAT_JSON;
}
