/* Duration parsing for the timeouts on the command line and in the config file. */
#include "timeutil.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

int parse_duration_ms(const char *s, uint64_t *ret_ms)
{
	uint64_t whole = 0, frac = 0, frac_div = 1, mult = 1000;
	const char *p = s;

	if (!s || !isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		if (whole > UINT64_MAX / 10 / 1000 / 1000)
			return -ERANGE;
		whole = whole * 10 + (uint64_t)(*p - '0');
	}
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		for (; isdigit((unsigned char)*p); p++) {
			if (frac_div < 1000000) { /* finer than a microsecond is noise */
				frac = frac * 10 + (uint64_t)(*p - '0');
				frac_div *= 10;
			}
		}
	}
	if (strcmp(p, "ms") == 0)
		mult = 1;
	else if (strcmp(p, "s") == 0 || *p == '\0')
		mult = 1000;
	else
		return -EINVAL;
	*ret_ms = whole * mult + frac * mult / frac_div;
	return 0;
}
