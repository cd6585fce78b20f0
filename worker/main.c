/* The built-in worker as a program of its own, linked statically: what the arbiter
 * exec's for each built-in worker (arbiter/worker_image.h). Loading no shared object
 * halves a worker's start on a machine where page faults are dear: a start of 4,096
 * built-in workers took 9.5 s exec'ing the dynamically linked sigvisor, 4.8 s this. */
#include "builtin.h"

int main(int argc, char **argv)
{
	return builtin_worker_main(argc, argv);
}
