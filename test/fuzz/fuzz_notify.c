/* libFuzzer target: sd_notify datagrams as the arbiter reads them (notify_parse).
 *
 * The input is one datagram. libFuzzer's buffer is exactly as long as the input, so
 * ASan catches a read past len. The status is then used the way pool_notify() does,
 * with "%.*s" into a fixed buffer. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_notify: invariant failed: %s\n", what);
		abort();
	}
}

/* Does the datagram hold this exact line? */
static bool has_line(const char *msg, size_t len, const char *want)
{
	size_t wlen = strlen(want);

	for (size_t i = 0; i < len;) {
		const char *nl = memchr(msg + i, '\n', len - i);
		size_t n = nl ? (size_t)(nl - (msg + i)) : len - i;

		if (n == wlen && memcmp(msg + i, want, n) == 0)
			return true;
		i += n + 1;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *msg = (const char *)data;
	struct notify_msg m;
	char status[128];

	/* The real socket reads at most 4095 bytes. */
	if (size > 4095)
		return 0;
	memset(&m, 0xa5, sizeof(m));
	notify_parse(msg, size, &m);

	check(m.ready == has_line(msg, size, "READY=1"), "READY=1 seen iff sent");
	check(m.watchdog == has_line(msg, size, "WATCHDOG=1"), "WATCHDOG=1 seen iff sent");
	check(m.stopping == has_line(msg, size, "STOPPING=1"), "STOPPING=1 seen iff sent");
	if (m.status) {
		check(m.status >= msg + 7 && m.status <= msg + size, "status inside the datagram");
		check(m.status_len <= (size_t)(msg + size - m.status), "status ends inside");
		check(memcmp(m.status - 7, "STATUS=", 7) == 0, "status follows STATUS=");
		for (size_t i = 0; i < m.status_len; i++)
			check((unsigned char)m.status[i] >= 0x20, "no control bytes in a status");
		snprintf(status, sizeof(status), "%.*s", (int)m.status_len, m.status);
	} else {
		check(m.status_len == 0, "no status, no length");
	}
	return 0;
}
