/* Unit tests for the built-in worker's HTTP request parser and /sleep query parser: bytes in,
 * struct out, no sockets. Each test checks one behaviour; the name says which. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "builtin.h"

static int parse(const char *s, struct http_request *req)
{
	return http_parse_request(s, strlen(s), 0, req);
}

static int parse_status(const char *s)
{
	struct http_request req;

	return parse(s, &req);
}

static void assert_mem_equal(const char *p, size_t n, const char *expected)
{
	assert_int_equal(n, strlen(expected));
	assert_memory_equal(p, expected, n);
}

static void test_simple_get(void **state)
{
	const char *s = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nUser-Agent: t\r\n\r\n";
	struct http_request req;

	(void)state;
	assert_int_equal(parse(s, &req), (int)strlen(s));
	assert_int_equal(req.method, HTTP_METHOD_GET);
	assert_mem_equal(req.path, req.path_len, "/healthz");
	assert_null(req.query);
	assert_int_equal(req.version_minor, 1);
	assert_true(req.keep_alive);
	assert_false(req.has_content_length);
	assert_false(req.transfer_encoding);
}

static void test_head_and_other_methods(void **state)
{
	struct http_request req;

	(void)state;
	assert_true(parse("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", &req) > 0);
	assert_int_equal(req.method, HTTP_METHOD_HEAD);
	assert_true(parse("POST / HTTP/1.1\r\nHost: x\r\n\r\n", &req) > 0);
	assert_int_equal(req.method, HTTP_METHOD_OTHER);
	/* Methods are case-sensitive: "get" is some other method, not GET. */
	assert_true(parse("get / HTTP/1.1\r\nHost: x\r\n\r\n", &req) > 0);
	assert_int_equal(req.method, HTTP_METHOD_OTHER);
	assert_true(parse("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", &req) > 0);
	assert_int_equal(req.method, HTTP_METHOD_OTHER);
	assert_mem_equal(req.path, req.path_len, "*");
}

static void test_query_is_split_from_path(void **state)
{
	struct http_request req;

	(void)state;
	assert_true(parse("GET /sleep?ms=300&x=1 HTTP/1.1\r\nHost: x\r\n\r\n", &req) > 0);
	assert_mem_equal(req.path, req.path_len, "/sleep");
	assert_mem_equal(req.query, req.query_len, "ms=300&x=1");
	assert_true(parse("GET /? HTTP/1.1\r\nHost: x\r\n\r\n", &req) > 0);
	assert_mem_equal(req.path, req.path_len, "/");
	assert_non_null(req.query);
	assert_int_equal(req.query_len, 0);
}

static void test_absolute_form_target(void **state)
{
	struct http_request req;

	(void)state;
	assert_true(parse("GET http://example.com/sleep?ms=5 HTTP/1.1\r\nHost: e\r\n\r\n", &req) >
		    0);
	assert_mem_equal(req.path, req.path_len, "/sleep");
	assert_mem_equal(req.query, req.query_len, "ms=5");
	assert_true(parse("GET HTTPS://example.com HTTP/1.1\r\nHost: e\r\n\r\n", &req) > 0);
	assert_mem_equal(req.path, req.path_len, "/");
}

static void test_every_prefix_needs_more(void **state)
{
	const char *s = "GET /sleep?ms=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	struct http_request req;

	(void)state;
	/* A head cut anywhere is incomplete, never malformed. */
	for (size_t n = 0; n < strlen(s); n++)
		assert_int_equal(http_parse_request(s, n, 0, &req), 0);
	assert_int_equal(http_parse_request(s, strlen(s), 0, &req), (int)strlen(s));
}

static void test_ret_req_untouched_on_failure(void **state)
{
	struct http_request req;

	(void)state;
	memset(&req, 0xa5, sizeof(req));
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: x\r\n", &req), 0);
	assert_int_equal(parse("BAD\r\n\r\n", &req), -EBADMSG);
	assert_int_equal(req.version_minor, (int)0xa5a5a5a5);
}

static void test_keep_alive_rules(void **state)
{
	struct http_request req;

	(void)state;
	assert_true(parse("GET / HTTP/1.0\r\n\r\n", &req) > 0);
	assert_int_equal(req.version_minor, 0);
	assert_false(req.keep_alive);
	assert_true(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &req) > 0);
	assert_true(req.keep_alive);
	assert_true(parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &req) > 0);
	assert_false(req.keep_alive);
	assert_true(parse("GET / HTTP/1.1\r\nHost: x\r\nconnection:  Upgrade , CLOSE \r\n\r\n",
			  &req) > 0);
	assert_false(req.keep_alive);
	assert_true(parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n\r\n", &req) > 0);
	assert_true(req.keep_alive);
	/* close wins over keep-alive whatever the order */
	assert_true(parse("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", &req) > 0);
	assert_false(req.keep_alive);
}

static void test_pipelined_requests_consume_one_head(void **state)
{
	const char *first = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
	const char *s = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
	struct http_request req;
	int n;

	(void)state;
	n = parse(s, &req);
	assert_int_equal(n, (int)strlen(first));
	assert_mem_equal(req.path, req.path_len, "/a");
	assert_int_equal(parse(s + n, &req), (int)strlen(s + n));
	assert_mem_equal(req.path, req.path_len, "/b");
}

static void test_content_length(void **state)
{
	const char *s = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
	struct http_request req;

	(void)state;
	/* The body is not part of what the parser consumes. */
	assert_int_equal(parse(s, &req), (int)strlen(s) - 5);
	assert_true(req.has_content_length);
	assert_int_equal(req.content_length, 5);
	assert_true(
		parse("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n",
		      &req) > 0);
	assert_int_equal(req.content_length, 7);
	assert_true(parse("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", &req) > 0);
	assert_true(req.has_content_length);
	assert_int_equal(req.content_length, 0);
}

static void test_bad_content_length(void **state)
{
	(void)state;
	assert_int_equal(parse_status("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
				      "Content-Length: 6\r\n\r\n"),
			 -EBADMSG);
	assert_int_equal(parse_status("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
			 -EBADMSG);
	assert_int_equal(parse_status("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 2\r\n\r\n"),
			 -EBADMSG);
	assert_int_equal(parse_status("GET / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n"),
			 -EBADMSG);
	assert_int_equal(parse_status("GET / HTTP/1.1\r\nHost: x\r\n"
				      "Content-Length: 99999999999999999999999\r\n\r\n"),
			 -EBADMSG);
}

static void test_transfer_encoding_is_flagged(void **state)
{
	struct http_request req;

	(void)state;
	assert_true(parse("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
			  &req) > 0);
	assert_true(req.transfer_encoding);
}

static void test_host_rules(void **state)
{
	(void)state;
	/* RFC 9112 3.2: HTTP/1.1 needs exactly one Host; 1.0 needs none. */
	assert_int_equal(parse_status("GET / HTTP/1.1\r\n\r\n"), -EBADMSG);
	assert_int_equal(parse_status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), -EBADMSG);
	assert_true(parse_status("GET / HTTP/1.0\r\n\r\n") > 0);
	assert_true(parse_status("GET / HTTP/1.1\r\nHost:\r\n\r\n") > 0);
}

/* --metrics parses with Host optional: a missing one passes, two still do not. */
static void test_host_optional(void **state)
{
	struct http_request req;
	const char *none = "POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\n";
	const char *two = "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";

	(void)state;
	assert_int_equal(http_parse_request(none, strlen(none), HTTP_HOST_OPTIONAL, &req),
			 (int)strlen(none));
	assert_int_equal(req.method, HTTP_METHOD_OTHER);
	assert_int_equal(req.content_length, 3);
	assert_int_equal(http_parse_request(none, strlen(none), 0, &req), -EBADMSG);
	assert_int_equal(http_parse_request(two, strlen(two), HTTP_HOST_OPTIONAL, &req), -EBADMSG);
}

static void test_malformed_request_line(void **state)
{
	static const char *const bad[] = {
		"GARBAGE\r\n\r\n",
		" GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1 \r\nHost: x\r\n\r\n",
		"GET /\r\nHost: x\r\n\r\n",
		"GET / http/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.10\r\nHost: x\r\n\r\n",
		"GET / HTTP/1\r\nHost: x\r\n\r\n",
		"GET foo HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
		"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /\r HTTP/1.1\r\nHost: x\r\n\r\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("case %zu\n", i);
		assert_int_equal(parse_status(bad[i]), -EBADMSG);
	}
}

static void test_malformed_headers(void **state)
{
	static const char *const bad[] = {
		"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n: empty-name\r\n\r\n",
		"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01"
		"b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX(A): 1\r\n\r\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("case %zu\n", i);
		assert_int_equal(parse_status(bad[i]), -EBADMSG);
	}
}

static void test_header_values_allowed(void **state)
{
	struct http_request req;

	(void)state;
	assert_true(parse("GET / HTTP/1.1\r\nHost: x\r\nX-A:\tv\xc3\xa9 t\t\r\nX-Empty:\r\n\r\n",
			  &req) > 0);
}

static void test_unsupported_version(void **state)
{
	(void)state;
	assert_int_equal(parse_status("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), -EPROTONOSUPPORT);
	assert_int_equal(parse_status("GET / HTTP/0.9\r\n\r\n"), -EPROTONOSUPPORT);
}

static void test_newer_minor_version_is_1_1(void **state)
{
	struct http_request req;

	(void)state;
	assert_true(parse("GET / HTTP/1.2\r\nHost: x\r\n\r\n", &req) > 0);
	assert_true(req.keep_alive);
}

static void test_leading_empty_lines_and_bare_lf(void **state)
{
	const char *s = "\r\n\nGET / HTTP/1.1\nHost: x\n\n";
	struct http_request req;

	(void)state;
	assert_int_equal(parse(s, &req), (int)strlen(s));
	assert_mem_equal(req.path, req.path_len, "/");
	assert_int_equal(parse_status("\r\n"), 0);
}

/* A request head of exactly head_len bytes, padded with one long header, terminated by the
 * blank line or not. Valid until the next call. */
static const char *big_request(size_t head_len, bool terminated)
{
	static const char start[] = "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ";
	static char s[2 * HTTP_HEAD_MAX + 1];
	size_t tail = terminated ? 4 : 2;

	assert_true(head_len < sizeof(s) && head_len > sizeof(start) + tail);
	memcpy(s, start, sizeof(start) - 1);
	memset(s + sizeof(start) - 1, 'a', head_len - (sizeof(start) - 1) - tail);
	memcpy(s + head_len - tail, terminated ? "\r\n\r\n" : "\r\n", tail);
	s[head_len] = '\0';
	return s;
}

static void test_head_limit(void **state)
{
	static char line[2 * HTTP_HEAD_MAX + 1];

	(void)state;
	/* exactly HTTP_HEAD_MAX bytes is still fine */
	assert_int_equal(parse_status(big_request(HTTP_HEAD_MAX, true)), HTTP_HEAD_MAX);
	/* one byte more is too large */
	assert_int_equal(parse_status(big_request(HTTP_HEAD_MAX + 1, true)), -EMSGSIZE);
	/* an unfinished head below the limit waits for more, at the limit it is too large */
	assert_int_equal(parse_status(big_request(HTTP_HEAD_MAX - 1, false)), 0);
	assert_int_equal(parse_status(big_request(HTTP_HEAD_MAX, false)), -EMSGSIZE);
	/* one endless line, no newline at all */
	memset(line, 'A', sizeof(line) - 1);
	assert_int_equal(parse_status(line), -EMSGSIZE);
}

static void test_sleep_ms(void **state)
{
	unsigned int ms = 12345;

	(void)state;
	assert_int_equal(http_parse_sleep_ms("ms=300", 6, &ms), 0);
	assert_int_equal(ms, 300);
	assert_int_equal(http_parse_sleep_ms("ms=0", 4, &ms), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(http_parse_sleep_ms("a=1&ms=600000&b", 15, &ms), 0);
	assert_int_equal(ms, 600000);
	/* only the given length counts */
	assert_int_equal(http_parse_sleep_ms("ms=12345", 5, &ms), 0);
	assert_int_equal(ms, 12);
}

static void test_sleep_ms_invalid(void **state)
{
	static const char *const invalid[] = {
		"", "ms", "ms=", "ms=abc", "ms=-1", "ms=1x", "xms=5", "ms =5", "ms=9999999x",
	};
	unsigned int ms = 777;

	(void)state;
	assert_int_equal(http_parse_sleep_ms(NULL, 0, &ms), -EINVAL);
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		print_message("case %s\n", invalid[i]);
		assert_int_equal(http_parse_sleep_ms(invalid[i], strlen(invalid[i]), &ms), -EINVAL);
	}
	assert_int_equal(http_parse_sleep_ms("ms=600001", 9, &ms), -ERANGE);
	assert_int_equal(http_parse_sleep_ms("ms=99999999999999999999999", 26, &ms), -ERANGE);
	assert_int_equal(ms, 777);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_get),
		cmocka_unit_test(test_head_and_other_methods),
		cmocka_unit_test(test_query_is_split_from_path),
		cmocka_unit_test(test_absolute_form_target),
		cmocka_unit_test(test_every_prefix_needs_more),
		cmocka_unit_test(test_ret_req_untouched_on_failure),
		cmocka_unit_test(test_keep_alive_rules),
		cmocka_unit_test(test_pipelined_requests_consume_one_head),
		cmocka_unit_test(test_content_length),
		cmocka_unit_test(test_bad_content_length),
		cmocka_unit_test(test_transfer_encoding_is_flagged),
		cmocka_unit_test(test_host_rules),
		cmocka_unit_test(test_malformed_request_line),
		cmocka_unit_test(test_malformed_headers),
		cmocka_unit_test(test_header_values_allowed),
		cmocka_unit_test(test_unsupported_version),
		cmocka_unit_test(test_newer_minor_version_is_1_1),
		cmocka_unit_test(test_leading_empty_lines_and_bare_lf),
		cmocka_unit_test(test_host_optional),
		cmocka_unit_test(test_head_limit),
		cmocka_unit_test(test_sleep_ms),
		cmocka_unit_test(test_sleep_ms_invalid),
	};

	return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
