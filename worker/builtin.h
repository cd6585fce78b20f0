/* The built-in HTTP worker that `sigvisor worker` runs when no COMMAND is given. Its request
 * parser is shared/http.c's, which the arbiter's --metrics endpoint uses too. The worker
 * itself is builtin.c and the files listed in builtin_internal.h, which nothing outside them
 * includes. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

/* `sigvisor worker`: serve HTTP on the sockets handed over with LISTEN_FDS until told to stop.
 * Returns the process exit status: 0 after TERM, QUIT or INT, 3 when the worker cannot boot
 * (no usable sockets), 1 on a fatal error after boot. */
int builtin_worker_main(int argc, char **argv);
