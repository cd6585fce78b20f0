/* libFuzzer target: durations ("30", "0.5", "1.25s", "250ms"; parse_duration_ms).
 *
 * Besides the sanitizers, the result is compared with a reference computed in 128
 * bits: the grammar is DIGITS [. DIGITS] [s|ms], fractions finer than a microsecond
 * are dropped, and a result is either exact or refused with -ERANGE (only for a whole
 * part of 10^13 or more, valid or not after it), never wrapped. */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timeutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_duration: invariant failed: %s\n", what);
		abort();
	}
}

/* The reference: returns false when s is not a duration at all. *ret_whole, the
 * leading digits' value, is set either way: an overlong number is -ERANGE even when
 * garbage follows it. */
static bool reference(const char *s, unsigned __int128 *ret_ms, unsigned __int128 *ret_whole)
{
	unsigned __int128 whole = 0, frac = 0, div = 1, mult = 1000;
	const char *p = s;
	bool big = false;

	if (!isdigit((unsigned char)*p))
		return false;
	for (; isdigit((unsigned char)*p); p++) {
		if (whole > ((unsigned __int128)1 << 100))
			big = true; /* stays big: surely out of range */
		else
			whole = whole * 10 + (unsigned)(*p - '0');
	}
	*ret_whole = big ? ~(unsigned __int128)0 : whole;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return false;
		for (; isdigit((unsigned char)*p); p++) {
			if (div < 1000000) {
				frac = frac * 10 + (unsigned)(*p - '0');
				div *= 10;
			}
		}
	}
	if (strcmp(p, "ms") == 0)
		mult = 1;
	else if (strcmp(p, "s") != 0 && *p != '\0')
		return false;
	*ret_ms = big ? ~(unsigned __int128)0 : whole * mult + frac * mult / div;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	uint64_t ms = 424242;
	unsigned __int128 want = 0, whole = 0;
	bool valid;
	int r;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	r = parse_duration_ms(s, &ms);
	valid = reference(s, &want, &whole);
	check(r == 0 || r == -EINVAL || r == -ERANGE, "returns 0, -EINVAL or -ERANGE");
	if (r == 0) {
		check(valid, "only a duration is accepted");
		check(want == ms, "the value is exact");
	} else {
		check(ms == 424242, "ret_ms untouched on failure");
		if (r == -EINVAL)
			check(!valid, "a duration is not -EINVAL");
		else
			/* The limit is a little conservative: ~10^13 (seconds or ms). */
			check(whole >= 10000000000000ULL, "-ERANGE only when too large");
	}
	free(s);
	return 0;
}
