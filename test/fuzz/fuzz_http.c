/* libFuzzer target: the HTTP parser of the built-in worker and --metrics (http_parse_request and
 * http_parse_sleep_ms).
 *
 * The input is what a client writes on one connection. Like the worker, the target
 * parses a head, skips its Content-Length body and goes on with the next request, so
 * pipelined requests are covered; each query also goes through http_parse_sleep_ms.
 * libFuzzer's buffer is exactly as long as the input, so ASan catches any read past
 * len. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_http: invariant failed: %s\n", what);
		abort();
	}
}

static bool inside(const char *p, size_t n, const char *buf, size_t len)
{
	return p >= buf && p <= buf + len && n <= (size_t)(buf + len - p);
}

static void fuzz_sleep(const char *query, size_t len)
{
	unsigned int ms = 12345;
	int r = http_parse_sleep_ms(query, len, &ms);

	check(r == 0 || r == -EINVAL || r == -ERANGE, "sleep: 0, -EINVAL or -ERANGE");
	if (r == 0)
		check(ms <= HTTP_SLEEP_MS_MAX, "sleep: ms <= HTTP_SLEEP_MS_MAX");
	else
		check(ms == 12345, "sleep: ret_ms untouched on failure");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	size_t off = 0;

	fuzz_sleep(size ? buf : NULL, size);

	/* A bound on the loop: a request is at least "GET / HTTP/1.0\n\n". */
	for (unsigned i = 0; off < size && i < 1024; i++) {
		struct http_request req;
		const char *head = buf + off;
		size_t avail = size - off;
		int r;

		memset(&req, 0xa5, sizeof(req));
		/* the worker's strict parse, or (odd sizes) --metrics' with Host optional */
		r = http_parse_request(head, avail, size & 1 ? HTTP_HOST_OPTIONAL : 0, &req);
		if (r <= 0) {
			check(r == 0 || r == -EMSGSIZE || r == -EPROTONOSUPPORT || r == -EBADMSG,
			      "0, -EMSGSIZE, -EPROTONOSUPPORT or -EBADMSG");
			if (r == -EMSGSIZE)
				check(avail >= HTTP_HEAD_MAX, "-EMSGSIZE only for a long head");
			break;
		}
		check((size_t)r <= avail && r <= HTTP_HEAD_MAX, "a head fits the buffer");
		check(head[r - 1] == '\n', "a head ends with a line end");
		check(req.method <= HTTP_METHOD_HEAD, "a known method");
		check(req.version_minor >= 0 && req.version_minor <= 9, "HTTP/1.0 to 1.9");
		check(req.path != NULL && req.path_len > 0, "a path");
		/* absolute-form without a path gets the literal "/" */
		check(inside(req.path, req.path_len, head, (size_t)r) ||
			      (req.path_len == 1 && req.path[0] == '/'),
		      "the path points into the head");
		if (req.query) {
			check(inside(req.query, req.query_len, head, (size_t)r),
			      "the query points into the head");
			check(req.query[-1] == '?', "the query follows '?'");
			fuzz_sleep(req.query, req.query_len);
		}
		if (!req.has_content_length)
			check(req.content_length == 0, "no Content-Length, no length");
		off += (size_t)r;
		if (req.transfer_encoding)
			break; /* the worker answers 501 and closes */
		if (req.has_content_length) {
			if (req.content_length > size - off)
				break;
			off += req.content_length;
		}
		if (!req.keep_alive)
			break;
	}
	return 0;
}
