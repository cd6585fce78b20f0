/* sigvisor's entry point: the arbiter, `sigvisor status`, `sigvisor signals` and
 * `sigvisor workers`, `reload`, `upgrade`, `reopen`, `stop`, `kill-worker`, `config`, and the built-in worker
 * (`sigvisor worker`, which the arbiter exec's for each worker when there is no COMMAND). */
#include <string.h>

#include "arbiter.h"
#include "builtin.h"
#include "control.h"
#include "dispositions.h"

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "worker") == 0)
		return builtin_worker_main(argc, argv);
	if (argc > 1 && strcmp(argv[1], "status") == 0)
		return status_main(argc, argv);
	if (argc > 1 && strcmp(argv[1], "signals") == 0)
		return signals_main(argc, argv);
	if (argc > 1 && strcmp(argv[1], "workers") == 0)
		return workers_main(argc, argv);
	if (argc > 1 && (strcmp(argv[1], "reload") == 0 || strcmp(argv[1], "upgrade") == 0))
		return reload_main(argc, argv);
	if (argc > 1 && strcmp(argv[1], "reopen") == 0)
		return reopen_main(argc, argv);
	if (argc > 1 && strcmp(argv[1], "stop") == 0)
		return stop_main(argc, argv);
	if (argc > 1 && strcmp(argv[1], "kill-worker") == 0)
		return kill_worker_main(argc, argv);
	if (argc > 1 && strcmp(argv[1], "config") == 0)
		return config_main(argc, argv);
	return arbiter_main(argc, argv);
}
