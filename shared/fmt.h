/* Decimal numbers formatted without stdio: for the arbiter's child between clone and
 * exec (arbiter/postfork.c: async-signal-safe, nothing locked or allocated) and for
 * `status`'s rows of up to 4,096 workers (arbiter/status.c: fprintf was half of the
 * time spent on them). */
#pragma once

#include <stddef.h>

/* n in decimal, zero-padded to at least width digits (at most 20), at buf and
 * NUL-terminated: buf needs 21 bytes. Returns the number of digits. */
size_t fmt_uint(char *buf, unsigned long long n, int width);
