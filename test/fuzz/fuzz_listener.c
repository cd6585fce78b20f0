/* libFuzzer target: --bind addresses (listener_parse).
 *
 * HOST may be a name, and listener_parse() resolves names with getaddrinfo(), which
 * may ask DNS: a fuzzer must not. So a spec is only parsed when its host, found the
 * way listener_parse() finds it, is numeric (getaddrinfo with AI_NUMERICHOST accepts
 * it) or "localhost" (/etc/hosts); [V6]:PORT and unix:PATH never resolve a name. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "listeners.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_listener: invariant failed: %s\n", what);
		abort();
	}
}

/* Would listener_parse() resolve spec without the network? */
static bool offline(const char *spec)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICHOST};
	struct addrinfo *res;
	const char *colon;
	char host[256];
	size_t len;

	if (strncmp(spec, "unix:", 5) == 0 || spec[0] == '[')
		return true;
	colon = strrchr(spec, ':');
	if (!colon || strchr(spec, ':') != colon)
		return true; /* refused before any lookup */
	len = (size_t)(colon - spec);
	if (len == 0)
		return true;
	if (len >= sizeof(host))
		return false; /* listener_parse() would cut it: not worth the doubt */
	memcpy(host, spec, len);
	host[len] = '\0';
	if (strcmp(host, "localhost") == 0)
		return true;
	if (getaddrinfo(host, NULL, &hints, &res) != 0)
		return false;
	freeaddrinfo(res);
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_storage addr;
	socklen_t len = 0;
	char err[512] = "";
	char *spec;
	int r;

	if (size > 4096)
		return 0;
	spec = malloc(size + 1);
	if (!spec)
		return 0;
	memcpy(spec, data, size);
	spec[size] = '\0';
	if (!offline(spec)) {
		free(spec);
		return 0;
	}
	r = listener_parse(spec, &addr, &len, err, sizeof(err));
	check(r == 0 || r == -EINVAL, "returns 0 or -EINVAL");
	if (r < 0) {
		check(strstr(err, "bad address") != NULL, "an error names the address");
	} else {
		check(len > 0 && len <= sizeof(addr), "address length fits");
		switch (addr.ss_family) {
		case AF_UNIX: {
			const struct sockaddr_un *un = (const struct sockaddr_un *)&addr;

			check(strncmp(spec, "unix:", 5) == 0, "unix: only from unix:");
			check(strcmp(un->sun_path, spec + 5) == 0, "the path is kept");
			check(len == offsetof(struct sockaddr_un, sun_path) + strlen(spec + 5) + 1,
			      "the length counts the path and its NUL");
			break;
		}
		case AF_INET:
			check(len == sizeof(struct sockaddr_in), "IPv4 length");
			break;
		case AF_INET6:
			check(len == sizeof(struct sockaddr_in6), "IPv6 length");
			break;
		default:
			check(false, "a known address family");
		}
	}
	free(spec);
	return 0;
}
