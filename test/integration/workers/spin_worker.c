/* A COMMAND worker whose start is all CPU, as an application importing its code is:
 * it spins for argv[1] seconds of its own CPU time, says READY=1 with libsystemd's
 * sd_notify(), spins argv[2] seconds more (so it is still running when the arbiter
 * reads that), then waits for TERM without using a CPU. */
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

static double cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void spin(double s)
{
	double until = cpu_s() + s;

	while (cpu_s() < until)
		;
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 1;
	spin(atof(argv[1]));
	sd_notify(0, "READY=1");
	spin(atof(argv[2]));
	for (;;)
		pause();
}
