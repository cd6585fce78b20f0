/* HTTP/1.x: the request parser and the reason phrases; see http.h. */
#include "http.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

const char *http_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Unknown";
	}
}

static bool is_tchar(unsigned char ch)
{
	if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
		return true;
	switch (ch) {
	case '!':
	case '#':
	case '$':
	case '%':
	case '&':
	case '\'':
	case '*':
	case '+':
	case '-':
	case '.':
	case '^':
	case '_':
	case '`':
	case '|':
	case '~':
		return true;
	default:
		return false;
	}
}

static bool is_ows(char ch)
{
	return ch == ' ' || ch == '\t';
}

static bool is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static bool mem_eq_nocase(const char *s, size_t n, const char *lit)
{
	return n == strlen(lit) && strncasecmp(s, lit, n) == 0;
}

static bool mem_eq(const char *s, size_t n, const char *lit)
{
	return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

static void trim_ows(const char **start, const char **end)
{
	while (*start < *end && is_ows(**start))
		(*start)++;
	while (*end > *start && is_ows((*end)[-1]))
		(*end)--;
}

/* Origin-form ("/path?query") is what clients send; absolute-form must be accepted too (RFC
 * 9112 3.2.2) and "*" is only meaningful for OPTIONS, which gets 405 anyway. */
static int parse_target(const char *t, size_t n, struct http_request *req)
{
	const char *q;
	size_t scheme = 0;

	if (n >= 7 && strncasecmp(t, "http://", 7) == 0)
		scheme = 7;
	else if (n >= 8 && strncasecmp(t, "https://", 8) == 0)
		scheme = 8;
	if (scheme) {
		const char *slash = memchr(t + scheme, '/', n - scheme);

		if (!slash) {
			req->path = "/";
			req->path_len = 1;
			return 0;
		}
		n -= (size_t)(slash - t);
		t = slash;
	} else if (!(t[0] == '/' || (n == 1 && t[0] == '*'))) {
		return -EBADMSG;
	}

	q = memchr(t, '?', n);
	req->path = t;
	req->path_len = q ? (size_t)(q - t) : n;
	if (q) {
		req->query = q + 1;
		req->query_len = n - req->path_len - 1;
	}
	return 0;
}

static int parse_request_line(const char *p, size_t n, struct http_request *req)
{
	const char *sp1, *sp2, *target, *ver;
	size_t mlen, tlen, vlen;

	sp1 = memchr(p, ' ', n);
	if (!sp1 || sp1 == p)
		return -EBADMSG;
	mlen = (size_t)(sp1 - p);
	for (size_t i = 0; i < mlen; i++)
		if (!is_tchar((unsigned char)p[i]))
			return -EBADMSG;
	if (mem_eq(p, mlen, "GET"))
		req->method = HTTP_METHOD_GET;
	else if (mem_eq(p, mlen, "HEAD"))
		req->method = HTTP_METHOD_HEAD;
	else
		req->method = HTTP_METHOD_OTHER;

	target = sp1 + 1;
	sp2 = memchr(target, ' ', (size_t)(p + n - target));
	if (!sp2 || sp2 == target)
		return -EBADMSG;
	tlen = (size_t)(sp2 - target);
	for (size_t i = 0; i < tlen; i++) {
		unsigned char ch = (unsigned char)target[i];

		if (ch <= 0x20 || ch == 0x7f)
			return -EBADMSG;
	}

	ver = sp2 + 1;
	vlen = (size_t)(p + n - ver);
	if (vlen != 8 || memcmp(ver, "HTTP/", 5) != 0 || !is_digit(ver[5]) || ver[6] != '.' ||
	    !is_digit(ver[7]))
		return -EBADMSG;
	if (ver[5] != '1')
		return -EPROTONOSUPPORT;
	req->version_minor = ver[7] - '0';

	return parse_target(target, tlen, req);
}

static int parse_content_length(const char *v, size_t n, struct http_request *req)
{
	uint64_t value = 0;

	if (n == 0)
		return -EBADMSG;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(v[i]) || value > (UINT64_MAX - 9) / 10)
			return -EBADMSG;
		value = value * 10 + (uint64_t)(v[i] - '0');
	}
	/* Two different lengths are the classic request-smuggling vector (RFC 9112 6.3). */
	if (req->has_content_length && req->content_length != value)
		return -EBADMSG;
	req->has_content_length = true;
	req->content_length = value;
	return 0;
}

struct head_state {
	unsigned int hosts;
	bool conn_close;
	bool conn_keep_alive;
};

static void parse_connection(const char *v, const char *end, struct head_state *st)
{
	while (v < end) {
		const char *comma = memchr(v, ',', (size_t)(end - v));
		const char *tok = v, *tok_end = comma ? comma : end;

		trim_ows(&tok, &tok_end);
		if (mem_eq_nocase(tok, (size_t)(tok_end - tok), "close"))
			st->conn_close = true;
		else if (mem_eq_nocase(tok, (size_t)(tok_end - tok), "keep-alive"))
			st->conn_keep_alive = true;
		v = comma ? comma + 1 : end;
	}
}

static int parse_header(const char *p, size_t n, struct http_request *req, struct head_state *st)
{
	const char *colon, *v, *end = p + n;
	size_t name_len;

	/* A leading space is obs-fold and a space before the colon is forbidden (RFC 9112 5.1,
	 * 5.2); both fail the token check and get 400, as the RFC allows. */
	colon = memchr(p, ':', n);
	if (!colon || colon == p)
		return -EBADMSG;
	name_len = (size_t)(colon - p);
	for (size_t i = 0; i < name_len; i++)
		if (!is_tchar((unsigned char)p[i]))
			return -EBADMSG;

	v = colon + 1;
	trim_ows(&v, &end);
	for (const char *c = v; c < end; c++) {
		unsigned char ch = (unsigned char)*c;

		/* Rejects a bare CR too, which some proxies treat as a line end. */
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return -EBADMSG;
	}

	switch (name_len) {
	case 4:
		if (mem_eq_nocase(p, name_len, "host"))
			st->hosts++;
		break;
	case 10:
		if (mem_eq_nocase(p, name_len, "connection"))
			parse_connection(v, end, st);
		break;
	case 14:
		if (mem_eq_nocase(p, name_len, "content-length"))
			return parse_content_length(v, (size_t)(end - v), req);
		break;
	case 17:
		if (mem_eq_nocase(p, name_len, "transfer-encoding"))
			req->transfer_encoding = true;
		break;
	default:
		break;
	}
	return 0;
}

int http_parse_request(const char *buf, size_t len, unsigned flags, struct http_request *ret_req)
{
	size_t limit = len < HTTP_HEAD_MAX ? len : HTTP_HEAD_MAX;
	struct http_request req = {0};
	struct head_state st = {0};
	bool have_request_line = false;
	size_t pos = 0;
	int r;

	/* Only complete lines are looked at, so a head that is merely cut short is never
	 * reported as malformed. Lines may end in LF alone (RFC 9112 2.2). */
	for (;;) {
		const char *line = buf + pos;
		const char *nl = memchr(line, '\n', limit - pos);
		size_t n;

		if (!nl)
			return len >= HTTP_HEAD_MAX ? -EMSGSIZE : 0;
		n = (size_t)(nl - line);
		if (n > 0 && line[n - 1] == '\r')
			n--;
		pos = (size_t)(nl - buf) + 1;

		if (!have_request_line) {
			/* Empty lines before a request are to be ignored (RFC 9112 2.2): some
			 * clients send a CRLF after a POST body. */
			if (n == 0)
				continue;
			r = parse_request_line(line, n, &req);
			if (r < 0)
				return r;
			have_request_line = true;
			continue;
		}
		if (n == 0)
			break;
		r = parse_header(line, n, &req, &st);
		if (r < 0)
			return r;
	}

	/* RFC 9112 3.2: a 1.1 request without Host, or with several, MUST get 400. The
	 * metrics endpoint, which names no host of its own, lets a missing one pass. */
	if (st.hosts > 1 ||
	    (req.version_minor >= 1 && st.hosts == 0 && !(flags & HTTP_HOST_OPTIONAL)))
		return -EBADMSG;
	if (req.version_minor >= 1)
		req.keep_alive = !st.conn_close;
	else
		req.keep_alive = st.conn_keep_alive && !st.conn_close;

	*ret_req = req;
	return (int)pos;
}

int http_parse_sleep_ms(const char *query, size_t len, unsigned int *ret_ms)
{
	const char *p = query, *end = query ? query + len : NULL;

	while (p && p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *param_end = amp ? amp : end;

		if (param_end - p >= 3 && memcmp(p, "ms=", 3) == 0) {
			unsigned long value = 0;
			const char *d = p + 3;

			if (d == param_end)
				return -EINVAL;
			for (; d < param_end; d++) {
				if (!is_digit(*d))
					return -EINVAL;
				value = value * 10 + (unsigned long)(*d - '0');
				if (value > HTTP_SLEEP_MS_MAX) {
					/* Keep checking the rest, so "ms=9999x" is -EINVAL. */
					for (; d < param_end; d++)
						if (!is_digit(*d))
							return -EINVAL;
					return -ERANGE;
				}
			}
			*ret_ms = (unsigned int)value;
			return 0;
		}
		p = amp ? amp + 1 : end;
	}
	return -EINVAL;
}
