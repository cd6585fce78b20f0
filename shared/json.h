/* The one JSON string writer, for the log's JSON lines (shared/log.c) and the
 * control socket's `status --json` (arbiter/status.c): the same escapes, and invalid
 * UTF-8 (a worker's STATUS= cut mid-character, a file name in a message) always
 * becomes U+FFFD, so every output is valid JSON. */
#pragma once

#include <stddef.h>
#include <stdio.h>

/* Length of the valid UTF-8 sequence at p, or 0: overlong forms, surrogates, stray
 * continuation bytes and a sequence cut by the terminating NUL are invalid. */
size_t json_utf8_len(const unsigned char *p);

/* The JSON text for the character at s (not at its NUL): *ret_text and *ret_len say
 * what to write (s itself, or an escape kept in esc); returns how many bytes of s it
 * stands for. */
size_t json_char(const char *s, char esc[8], const char **ret_text, size_t *ret_len);

/* s as a quoted JSON string, given to put a piece at a time (a quote, a run of plain
 * ASCII, an escape): at most 6 bytes for each byte of s, and the 2 quotes. */
void json_quote(const char *s, void (*put)(void *ctx, const char *text, size_t len), void *ctx);

/* s as a quoted JSON string. */
void json_fputs(FILE *f, const char *s);
