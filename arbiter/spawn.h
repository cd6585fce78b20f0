/* Starting a worker: argv and envp are built here, in the arbiter, before clone3();
 * the child only runs postfork.c's async-signal-safe setup and exec's.
 *
 * Low layer: knows the settings and the listening sockets it is handed, nothing of the
 * pool or the arbiter. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "options.h"
#include "spawn_vm.h"

/* Everything a spawn needs that is computed once at startup (and again on HUP). */
struct spawn_template {
	const char *path;
	char **argv;
	bool builtin; /* argv is {title, "worker"}: the title names each worker (spawn.c) */
	int image_fd; /* the built-in worker's static executable (worker_image.h), or -1 */
	/* The arbiter's signals not at SIG_DFL when the template was made (sigreset.h): it
	 * sets none after its start (signals.c), so a worker resets only these. */
	unsigned long long dispositions;
	char **base_env; /* environ minus what we set ourselves */
	size_t n_base_env;
	char *log_file_abs;
	bool drop_privileges;
	uid_t uid;
	gid_t gid;
};

/* One worker to start: its slot and generation, the sockets it inherits as fds 3..
 * (LISTEN_FDS, LISTEN_FDNAMES) and its NOTIFY_SOCKET ("" for none). */
struct spawn_request {
	const struct spawn_template *tmpl;
	const struct settings *settings;
	const int *listen_fds;
	size_t n_listen_fds;
	const char *listen_fdnames;
	pid_t arbiter_pid;
	unsigned id;
	unsigned generation;
	char *notify_env;
	/* The built-in worker's heartbeat memfd and slot (heartbeat.h); -1: none. */
	int heartbeat_fd;
	int heartbeat_slot;
};

int spawn_template_init(struct spawn_template *t, const struct settings *s, char *const *environ_,
			char *err, size_t errlen);
void spawn_template_free(struct spawn_template *t);
/* Start the worker rq describes: 0 with its pid and pidfd, or a negative errno. */
int spawn_worker(const struct spawn_request *rq, pid_t *ret_pid, int *ret_pidfd);

/* The fds each worker costs the arbiter (its pidfd, its notify socket) live at or above
 * SPAWN_FD_HIGH, out of the way of the few the arbiter holds for all of them: a new
 * worker copies the arbiter's fds below its highest listening socket
 * (CLOSE_RANGE_UNSHARE) and its exec closes them all again. The copies of the
 * listening sockets a reload makes took the lowest free fd, above every worker's, so
 * every other HUP copied and closed N fds in each of N new workers (at 4,096: 8,000 a
 * worker, half of the reload's time). fd moved there (the one given is closed), or fd
 * itself when it cannot be (a limit of open files at or below SPAWN_FD_HIGH). */
#define SPAWN_FD_HIGH 256
int spawn_fd_high(int fd);
/* Find name like execvp would (a name with a '/' as is), as an absolute path. */
int path_resolve(const char *name, char **ret_path);

/* The open-files limit (RLIMIT_NOFILE). The arbiter holds a pidfd and a notify socket
 * per worker, two generations of them during a reload: 4,096 workers need more than
 * the soft limit of 1,024 many containers start with. So the arbiter raises its soft
 * limit to the hard one at start (as Go's runtime and systemd do for themselves), and
 * each worker gets the soft limit back before its exec: a select()-based program
 * breaks on fds above 1,023, and a worker must see what it was given.
 *
 * Across an in-place upgrade (USR2) the limit given is passed on in SIGVISOR_NOFILE
 * ("soft hard"): the new image runs with the raised one, and ld.so needs fds below it
 * before main(). */
#define SPAWN_NOFILE_ENV "SIGVISOR_NOFILE"
/* Raise the soft limit; call first thing. Reads and clears SPAWN_NOFILE_ENV. */
void spawn_raise_nofile(void);
/* The limit to restore in a child, or NULL when it was never changed. */
const struct rlimit *spawn_nofile_given(void);
/* Export the limit given in SPAWN_NOFILE_ENV for an in-place exec (or clear it). */
void spawn_nofile_export(bool on);
/* The open files the arbiter needs for workers (two generations of them), or 0 when its
 * hard limit allows that many: then it is logged once. */
unsigned long spawn_nofile_short(unsigned workers, unsigned long *ret_hard);
