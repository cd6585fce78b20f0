/* A COMMAND worker on libsystemd, as a C service would be written: it takes its
 * socket with sd_listen_fds(), asks for more start-up time with EXTEND_TIMEOUT_USEC=,
 * says READY=1 with sd_notify() and waits on sd_notify_barrier() until the arbiter has
 * read that. Writes "barrier <r>" (0 or a negative errno) to argv[1], then serves
 * nothing and waits for TERM. argv[2]: seconds to sleep before READY=1. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

int main(int argc, char **argv)
{
	FILE *f;
	int r;

	if (argc != 3 || sd_listen_fds(0) < 1)
		return 1;
	sd_notify(0, "EXTEND_TIMEOUT_USEC=5000000");
	usleep((useconds_t)(atof(argv[2]) * 1e6));
	sd_notify(0, "READY=1\nSTATUS=libsystemd worker");
	r = sd_notify_barrier(0, 5 * 1000000ULL);
	f = fopen(argv[1], "w");
	if (!f)
		return 1;
	fprintf(f, "barrier %d\n", r);
	fclose(f);
	for (;;)
		pause();
}
