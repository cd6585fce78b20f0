/* The settings of the upgrade state; see upsettings.h. */
#include "upsettings.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define COUNT "settings "
#define WORD  "setting "

int settings_save(FILE *f, const struct settings *s)
{
	int n;
	char **words = settings_words(s, &n);

	if (!words)
		return -ENOMEM;
	fprintf(f, COUNT "%d\n", n);
	for (int i = 0; i < n; i++) {
		fputs(WORD, f);
		for (const unsigned char *p = (const unsigned char *)words[i]; *p; p++) {
			if (*p == '\\')
				fputs("\\\\", f);
			else if (*p < 0x20 || *p == 0x7f)
				fprintf(f, "\\x%02x", *p);
			else
				fputc(*p, f);
		}
		fputc('\n', f);
	}
	options_free_words(words);
	return ferror(f) ? -EIO : 0;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* One word as settings_save() wrote it, in place (it only gets shorter). False if it is
 * not: a raw control byte, an escape other than \\ and \xHH, or \x00. */
static bool unescape(char *w)
{
	char *out = w;

	for (const char *p = w; *p; p++) {
		int hi, lo;

		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
		if (*p != '\\') {
			*out++ = *p;
			continue;
		}
		if (p[1] == '\\') {
			*out++ = '\\';
			p++;
			continue;
		}
		if (p[1] != 'x' || (hi = hex_digit(p[2])) < 0 || (lo = hex_digit(p[3])) < 0 ||
		    (hi == 0 && lo == 0))
			return false;
		*out++ = (char)(hi << 4 | lo);
		p += 3;
	}
	*out = '\0';
	return true;
}

/* The words in order, growing; words[n] stays NULL. */
struct word_list {
	char **words;
	size_t n, cap;
};

static int add_word(struct word_list *l, const char *w)
{
	if (l->n + 1 >= l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 32;
		char **more = realloc(l->words, cap * sizeof(char *));

		if (!more)
			return -ENOMEM;
		l->words = more;
		l->cap = cap;
	}
	l->words[l->n] = strdup(w);
	if (!l->words[l->n])
		return -ENOMEM;
	l->words[++l->n] = NULL;
	return 0;
}

/* The count line's number, or -1 if it is not one. */
static long parse_count(const char *v)
{
	char *end;
	long n;

	if (*v < '0' || *v > '9')
		return -1;
	errno = 0;
	n = strtol(v, &end, 10);
	return errno || *end || n > INT_MAX ? -1 : n;
}

static int read_words(FILE *f, struct word_list *l, long *ret_count, char *err, size_t errlen)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	long count = -1;
	int r = 0;

	while (r == 0 && (len = getline(&line, &cap, f)) > 0) {
		if (line[len - 1] == '\n')
			line[--len] = '\0';
		if (strncmp(line, WORD, strlen(WORD)) == 0) {
			if (strlen(line) != (size_t)len || !unescape(line + strlen(WORD))) {
				snprintf(err, errlen, "word %zu is not escaped as written",
					 l->n + 1);
				r = -EINVAL;
			} else {
				r = add_word(l, line + strlen(WORD));
			}
		} else if (strncmp(line, COUNT, strlen(COUNT)) == 0) {
			if (count >= 0 || (count = parse_count(line + strlen(COUNT))) < 0) {
				snprintf(err, errlen, "a bad or second count line");
				r = -EINVAL;
			}
		}
	}
	free(line);
	if (r == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	*ret_count = count;
	return r;
}

int settings_load(struct settings *s, FILE *f, char *err, size_t errlen)
{
	struct word_list l = {0};
	long count;
	char sub[768];
	int r;

	settings_init(s);
	r = read_words(f, &l, &count, sub, sizeof(sub));
	if (r == 0 && count < 0 && l.n == 0) {
		snprintf(sub, sizeof(sub), "none in the upgrade state");
		r = -ENOENT;
	} else if (r == 0 && (count < 0 || (size_t)count != l.n)) {
		snprintf(sub, sizeof(sub), "%zu words where the count says %ld", l.n, count);
		r = -EINVAL;
	}
	if (r == 0)
		r = options_parse_args(s, SOURCE_CMDLINE, (int)l.n, l.words, 0, true, sub,
				       sizeof(sub));
	/* What a running arbiter never has on: an image given these would check, print
	 * and exit instead of serving. */
	if (r == 0 && (s->check || s->help || s->version)) {
		snprintf(sub, sizeof(sub), "--check, --help or --version is on");
		r = -EINVAL;
	}
	if (r < 0)
		snprintf(err, errlen, "the settings handed over: %s", sub);
	options_free_words(l.words);
	return r;
}
