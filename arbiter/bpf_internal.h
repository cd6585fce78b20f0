/* What the files of the arbiter's BPF side share (bpf.h is what the rest of the arbiter
 * sees). The job is cut in six, each file calling only those listed after it:
 *   bpf.c           the entry points: may they load (capabilities, BTF), open, the
 *                   counters, close;
 *   bpf_events.c    the ring buffer's records as log lines, and readiness by serving;
 *   bpf_load.c      load (in the --bpf auto loader process, or for --bpf on in the
 *                   arbiter), attach in the order of probes_progs[];
 *   bpf_handover.c  the probes across a USR2 exec: hand them over, take them over;
 *   bpf_pin.c       the pin directory: a bpf filesystem under it, its lock, stale pins;
 *   bpf_object.c    the object this binary carries: its programs in attach order, the
 *                   parts, opening it, registering the arbiter, the log.
 * Nothing here is for another module: include it only from arbiter/bpf*.c. */
#pragma once

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <bpf/libbpf.h>

#include "bpf.h"

struct sigvisor; /* the skeleton (sigvisor.skel.h, generated) */

enum loader_state {
	LOADER_IDLE,	 /* not started (bpf_probes_start_loading) */
	LOADER_RUNNING,	 /* the child loads */
	LOADER_ANSWERED, /* it answered (p->answer, or load_r and load_why), died, or
			  * could not be started */
};
struct sigvisor__bss; /* the probes' .bss, mmap'ed */

struct bpf_probes {
	struct sigvisor *skel;
	struct ring_buffer *rb;
	void (*on_event)(void *ctx, const char *line);
	void *ctx;
	/* The pin directory, held with flock() for as long as we run: a second sigvisor
	 * given the same directory sees it is in use instead of deleting our pins, and
	 * a lock left by a SIGKILLed arbiter goes with its process. -1: not pinned. */
	int pin_fd;
	char pin_dir[PATH_MAX]; /* "" when not pinned */
	char pin_why[256];	/* why not, when not */
	pid_t self_tgid;	/* the arbiter's pid in the initial PID namespace */
	uint32_t ring_bytes;	/* the event ring's size: a power of two, a page or more */
	pid_t nspid;		/* the arbiter's getpid(), which the probes recognise */
	/* --bpf auto loads in a child process of its own while the workers start (parsing
	 * the kernel's BTF and verifying take tens of ms): the arbiter stays one thread
	 * with no handler, and a shutdown or an exec kills the loader instead of waiting
	 * for the verifier. The child sends its log lines and then what it loaded (the fds
	 * by SCM_RIGHTS, named by a line in the USR2 handover's format) on loader_sock;
	 * the loop adopts them as it adopts a USR2's (probes_adopt). */
	bool loading; /* loading wanted, not finished yet */
	enum loader_state state;
	int loader_sock;    /* our end of the socketpair, -1 when not loading */
	int loader_peer;    /* the loader's end until it is started, else -1 */
	char *answer;	    /* the loader's handover line, with our fd numbers */
	bool sigaction;	    /* --bpf-sigaction */
	int load_r;	    /* the loader's result */
	char load_why[256]; /* and why it failed */
	/* Optional parts that are off, and why ("" when on). */
	char part_why[BPF_PART_MAX][BPF_WHY_LEN];
	/* Readiness by serving: sv_serving is attached while workers are watched. */
	unsigned serving_watched;
	int serving_prog_fd; /* sv_serving, -1 if its part is off */
	int serving_link_fd; /* its attachment, -1 while no worker is watched */
	/* The mmap'ed .bss (the probes' own counters): the skeleton's when we loaded the
	 * probes, our own mapping when we kept those of the image before a USR2. */
	struct sigvisor__bss *bss;
	/* Kept from the previous image (bpf_probes_handover): the programs stay attached
	 * through these link fds, ours to close (detaching them). -1: none. */
	bool adopted;
	int kept_link[16];
	/* Handed over to a new image, close-on-exec cleared (undone if the exec fails). */
	int handed[32];
	unsigned n_handed;
	void (*on_serving)(void *ctx, pid_t pid, const char *how);
	void *serving_ctx;
};

/* How a program is attached, and so what a USR2 hands over of it. */
enum prog_use {
	/* Attached for a moment at the start, to register the arbiter (sv_register):
	 * nothing stays attached, nothing is handed over. */
	PROG_REGISTER,
	/* Attached from the start to the exit through the skeleton's link; its link is
	 * handed over to a new image, which keeps it ("link.NAME=FD"). */
	PROG_KEPT,
	/* An iterator, run once when attached (sv_adopt): a new image needs no second run. */
	PROG_ITER,
	/* Loaded, attached only while workers are watched (sv_serving, whose fd is
	 * p->serving_prog_fd): its program is handed over ("prog.NAME=FD"). */
	PROG_WATCH,
};

/* Each program, what it is to a user, and whether the probes are worth running
 * without it. The tree (register, fork, exit) and the signal counts are the probes;
 * the delivery and sigaction counters are extras. */
struct prog_info {
	const char *name;  /* as in bpf/sigvisor.bpf.c */
	int part;	   /* enum bpf_part */
	unsigned refuse;   /* SV_REFUSE_* bit for the test hook, 0 if none */
	enum prog_use use; /* how it is attached */
};

/* In attach order (probes_attach_all): the registration first, then the tree (fork and
 * exit, then the adoption of what was forked before them), then the counters. */
/* What the loader child sends on its socket (SOCK_SEQPACKET: one message each), the
 * first byte saying what: a log line (then its level), the answer (the handover line,
 * the fds by SCM_RIGHTS in the order it names them), or why it failed. */
#define MSG_LOG	   'L'
#define MSG_LOADED 'D'
#define MSG_FAILED 'F'
#define MSG_MAX	   16384
#define MSG_FDS	   64

#define N_PROGS 9
extern const struct prog_info probes_progs[N_PROGS];

/* The reasons are read by people and may name a long path: truncating is fine. */
__attribute__((format(printf, 3, 4))) static inline void set_why(char *why, size_t whylen,
								 const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

/* bpf_object.c: the object. */
unsigned probes_refuse_from_env(void);
struct sigvisor *probes_open_object(const char *pin_root);
int probes_open_skeleton(struct bpf_probes *p, char *why, size_t whylen);
/* With sv_register attached (link_fd): register the arbiter, p->bss mapped. 0, or <0. */
int probes_register(struct bpf_probes *p, int link_fd, char *why, size_t whylen);
/* What the loading says, for the log: the log's in the arbiter, relayed to it from the
 * loader child once it has called probes_log_relay(its socket). */
__attribute__((format(printf, 2, 3))) void probes_log(int level, const char *fmt, ...);
void probes_log_relay(int fd);
/* The skeleton's link of the program named name: where a PROG_KEPT one stays attached. */
struct bpf_link **probes_skel_link(const struct sigvisor *s, const char *name);

/* bpf_pin.c: the pin directory. */
void probes_prepare_pins(struct bpf_probes *p, const struct bpf_options *opt);
void probes_remove_stale_pins(struct bpf_probes *p);
void probes_disable_pinning(struct bpf_probes *p);
void probes_unpin_maps(struct bpf_probes *p);
void probes_release_pin_dir(struct bpf_probes *p);
void probes_remove_pins_in(const char *dir, bool locked);

/* bpf_load.c: loading and attaching. */
__attribute__((format(printf, 2, 0))) int probes_print_libbpf(enum libbpf_print_level level,
							      const char *fmt, va_list ap);
int probes_load(struct bpf_probes *p, char *why, size_t whylen);
int probes_attach_all(struct bpf_probes *p, char *why, size_t whylen);
/* --bpf auto: the socket the loader will answer on (bpf_probes_fd). 0, or -errno. */
int probes_prepare_loader(struct bpf_probes *p);
/* Stop a loader still running (killed, not waited for; what it pinned removed) and drop
 * an answer not adopted. */
void probes_stop_loader(struct bpf_probes *p);

/* bpf_handover.c: across a USR2 exec, and from the loader child. */
size_t probes_bss_map_bytes(void);
/* The handover lines of probes loaded but not attached (the loader child's answer):
 * tgid=0 (the arbiter registers when it adopts them), every map, and "prog.NAME=FD" for
 * each program loaded. 0, or <0. */
int probes_write_loaded(const struct bpf_probes *p, FILE *f);
/* The fds a handover line names, in order (at most max). */
size_t probes_handover_fds(const char *state, int *fds, size_t max);
/* The same line with the i-th fd it names replaced by fds[i] (the loader's numbers by
 * ours, as SCM_RIGHTS gave them): malloc'ed, or NULL. */
char *probes_handover_renumber(const char *state, const int *fds, size_t n);
int probes_adopt(struct bpf_probes *p, const struct bpf_options *opt, char *why, size_t whylen);
void probes_drop_handover(const char *state, const char *pin_dir);

/* bpf_events.c: the ring buffer's records. */
int probes_on_ring_event(void *ctx, void *data, size_t size);
