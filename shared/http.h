/* HTTP/1.x for the built-in worker and the arbiter's --metrics endpoint: one request
 * parser, pure (bytes in, struct out, no I/O, no allocation; unit-tested and fuzzed), and
 * the reason phrases. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest request head (request line, headers and the blank line) accepted; more is 431. */
#define HTTP_HEAD_MAX 8192

/* Largest N accepted by /sleep?ms=N. */
#define HTTP_SLEEP_MS_MAX 600000

enum http_method {
	HTTP_METHOD_OTHER, /* anything but GET and HEAD, answered with 405 */
	HTTP_METHOD_GET,
	HTTP_METHOD_HEAD,
};

/* A parsed request head. path and query point into the buffer that was parsed. */
struct http_request {
	enum http_method method;
	const char *path; /* never NULL after a successful parse */
	size_t path_len;
	const char *query; /* the part after '?', NULL when there is none */
	size_t query_len;
	int version_minor; /* HTTP/1.<version_minor> */
	bool keep_alive;   /* after the version's default and any Connection header */
	bool has_content_length;
	uint64_t content_length;
	bool transfer_encoding; /* any Transfer-Encoding: the worker answers 501 and closes */
};

/* http_parse_request's flags. */
#define HTTP_HOST_OPTIONAL 0x1u /* a 1.1 request without Host is accepted (--metrics) */

/* Parse one request head at the start of buf[0..len).
 *
 * Returns the number of bytes the head takes (the body, if any, follows), 0 when buf holds
 * no complete head yet, -EMSGSIZE when the head is larger than HTTP_HEAD_MAX (answer 431),
 * -EPROTONOSUPPORT for an HTTP version other than 1.x (answer 505) or -EBADMSG for any other
 * malformed request (answer 400). ret_req is written only on success. */
int http_parse_request(const char *buf, size_t len, unsigned flags, struct http_request *ret_req);

/* Find "ms=N" in a query string ("a=1&ms=300"). Returns 0 and sets *ret_ms, -EINVAL when the
 * parameter is missing or not a decimal number, -ERANGE when N > HTTP_SLEEP_MS_MAX. */
int http_parse_sleep_ms(const char *query, size_t len, unsigned int *ret_ms);

/* The reason phrase for a status code sigvisor sends ("Unknown" for others). */
const char *http_reason(int status);
