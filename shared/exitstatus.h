/* sigvisor's exit statuses (doc/RUNBOOK.md), for the arbiter, `sigvisor status` and the
 * built-in worker. 3 and 4 are gunicorn's: a worker that exits with them stops the
 * whole server. */
#pragma once

#define EXIT_OK		 0
#define EXIT_FATAL	 1
#define EXIT_USAGE	 2
#define EXIT_WORKER_BOOT 3
#define EXIT_WORKER_APP	 4
