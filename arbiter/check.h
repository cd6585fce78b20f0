/* --check: what start-up will need, tried without side effects. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct settings;

/* The pidfile's directory is writable and nobody else's to put a link in
 * (safefile_check_replace), every bind address (and --metrics, which must
 * differ from them) can be bound now, unix socket and control socket directories are
 * writable. Under an upgrade's check (upgrading), addresses the running arbiter holds
 * (held(spec) is true) are skipped (it hands them over) and so is the control socket
 * (inherited). Returns 0, or a negative errno with err naming what is wrong. */
int check_startup(const struct settings *s, bool (*held)(const char *spec), bool upgrading,
		  char *err, size_t errlen);
