/* The built-in HTTP worker that `sigvisor worker` runs when no COMMAND is given, and its
 * request parser.
 *
 * The parser (http_parse.c) is pure (bytes in, struct out, no I/O, no allocation) and exported
 * only so the unit tests can feed it requests without sockets. The worker itself is builtin.c
 * and the files listed in builtin_internal.h, which nothing outside them includes. */
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

/* Parse one request head at the start of buf[0..len).
 *
 * Returns the number of bytes the head takes (the body, if any, follows), 0 when buf holds
 * no complete head yet, -EMSGSIZE when the head is larger than HTTP_HEAD_MAX (answer 431),
 * -EPROTONOSUPPORT for an HTTP version other than 1.x (answer 505) or -EBADMSG for any other
 * malformed request (answer 400). ret_req is written only on success. */
int http_parse_request(const char *buf, size_t len, struct http_request *ret_req);

/* Find "ms=N" in a query string ("a=1&ms=300"). Returns 0 and sets *ret_ms, -EINVAL when the
 * parameter is missing or not a decimal number, -ERANGE when N > HTTP_SLEEP_MS_MAX. */
int http_parse_sleep_ms(const char *query, size_t len, unsigned int *ret_ms);

/* `sigvisor worker`: serve HTTP on the sockets handed over with LISTEN_FDS until told to stop.
 * Returns the process exit status: 0 after TERM, QUIT or INT, 3 when the worker cannot boot
 * (no usable sockets), 1 on a fatal error after boot. */
int builtin_worker_main(int argc, char **argv);
