/* See json.h. */
#include "json.h"

size_t json_utf8_len(const unsigned char *p)
{
	size_t n = p[0] >= 0xc2 && p[0] <= 0xdf	  ? 2
		   : p[0] >= 0xe0 && p[0] <= 0xef ? 3
		   : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4
						  : 0;
	static const unsigned min[5] = {0, 0, 0x80, 0x800, 0x10000};
	unsigned cp;

	if (!n)
		return 0;
	cp = p[0] & (0x7fu >> n);
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0; /* also stops at the terminating NUL */
		cp = cp << 6 | (p[i] & 0x3fu);
	}
	if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

size_t json_char(const char *s, char esc[8], const char **ret_text, size_t *ret_len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;

	if (*p == '"' || *p == '\\') {
		esc[0] = '\\';
		esc[1] = (char)*p;
		*ret_text = esc;
		*ret_len = 2;
		return 1;
	}
	if (*p < 0x20) {
		*ret_len = (size_t)snprintf(esc, 8, "\\u%04x", *p);
		*ret_text = esc;
		return 1;
	}
	n = *p < 0x80 ? 1 : json_utf8_len(p);
	if (n) {
		*ret_text = s;
		*ret_len = n;
		return n;
	}
	*ret_text = "\\ufffd";
	*ret_len = 6;
	return 1;
}

void json_quote(const char *s, void (*put)(void *ctx, const char *text, size_t len), void *ctx)
{
	put(ctx, "\"", 1);
	while (*s) {
		char esc[8];
		const char *text;
		size_t run = 0, len, adv;

		/* Plain ASCII is written as it is, a run at a time: a status lists a STATUS=
		 * text for each of up to 4,096 workers. */
		while (s[run] >= 0x20 && s[run] < 0x7f && s[run] != '"' && s[run] != '\\')
			run++;
		if (run) {
			put(ctx, s, run);
			s += run;
			continue;
		}
		adv = json_char(s, esc, &text, &len);
		put(ctx, text, len);
		s += adv;
	}
	put(ctx, "\"", 1);
}

static void put_file(void *f, const char *text, size_t len)
{
	fwrite(text, 1, len, f);
}

void json_fputs(FILE *f, const char *s)
{
	json_quote(s, put_file, f);
}
