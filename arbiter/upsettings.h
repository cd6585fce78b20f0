/* The settings an upgrade hands over, for a rollback that needs no file.
 *
 * A USR2 exec may be undone: the new image re-executes the previous one, which then
 * resumes with its workers and sockets. It resumes with its settings too, as they were
 * (what the command line, SIGVISOR_ARGS and the config file made), taken from the
 * upgrade state rather than read again: a config file broken or removed between the
 * --check and the exec must not stop it.
 *
 * In the state they are the command-line words of settings_words(), so the one option
 * parser takes them back, under a count:
 *
 *     settings 3
 *     setting --workers=2
 *     setting --
 *     setting /usr/bin/app\x0aarg with a newline
 *
 * One word a line; a backslash is written "\\", a control byte (a newline) "\xHH", and
 * every other byte as it is (UTF-8 paths stay readable). An image that does not know
 * these lines skips them.
 *
 * Low layer: plain data in and out of a FILE; upgrade.c says when. */
#pragma once

#include <stddef.h>
#include <stdio.h>

#include "options.h"

/* Write s as the lines above. Returns 0, -ENOMEM or -EIO. */
int settings_save(FILE *f, const struct settings *s);

/* Read f to its end, take the settings lines, skip every other line, and parse them into
 * s (initialized here before anything can fail: free it either way). Returns 0;
 * -ENOENT when f holds no settings (an image that did not write them); -EINVAL with err
 * saying why when they are cut short, badly escaped or do not parse; -ENOMEM. */
int settings_load(struct settings *s, FILE *f, char *err, size_t errlen);
