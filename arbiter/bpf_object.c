/* The probes' object as this binary carries it: its programs in attach order and the
 * part each belongs to, opening the embedded object, the registration of the arbiter,
 * and the log every BPF file writes through (the loader child's goes to the arbiter).
 * The other BPF files build on this one and never the other way: bpf.c opens and
 * closes, bpf_load.c loads and attaches, bpf_handover.c hands over and takes over,
 * bpf_pin.c pins. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "bpf_internal.h"
#include "log.h"
#include "sigvisor_bpf.h"
#include "sigvisor.skel.h"

const struct prog_info probes_progs[] = {
	{"sv_register", BPF_PART_SIGNALS, 0, PROG_REGISTER},
	{"sv_fork", BPF_PART_SIGNALS, 0, PROG_KEPT},
	{"sv_exit", BPF_PART_SIGNALS, 0, PROG_KEPT},
	{"sv_adopt", BPF_PART_ADOPT, 0, PROG_ITER},
	{"sv_generate", BPF_PART_SIGNALS, SV_REFUSE_GENERATE, PROG_KEPT},
	{"sv_deliver", BPF_PART_DELIVERIES, SV_REFUSE_DELIVER, PROG_KEPT},
	{"sv_sys_enter", BPF_PART_SIGACTION, SV_REFUSE_SYS_ENTER, PROG_KEPT},
	{"sv_exec", BPF_PART_SIGACTION, 0, PROG_KEPT},
	{"sv_serving", BPF_PART_SERVING, SV_REFUSE_SERVING, PROG_WATCH},
};

static const char *const part_names[BPF_PART_MAX] = {
	[BPF_PART_SIGNALS] = "signals",	    [BPF_PART_DELIVERIES] = "deliveries",
	[BPF_PART_SIGACTION] = "sigaction", [BPF_PART_ADOPT] = "adopt",
	[BPF_PART_SERVING] = "serving",
};

const char *bpf_part_name(enum bpf_part part)
{
	return part >= 0 && part < BPF_PART_MAX ? part_names[part] : "?";
}

/* In the loader child: the socket its log lines go to (-1 in the arbiter). */
static int relay_fd = -1;

void probes_log_relay(int fd)
{
	relay_fd = fd;
}

void probes_log(int level, const char *fmt, ...)
{
	char msg[1 + 1 + 1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	if (relay_fd < 0) {
		log_vmsg((enum log_level)level, fmt, ap);
		va_end(ap);
		return;
	}
	/* The arbiter logs at info and above (log_setup): libbpf's chatter would wake it
	 * for nothing, a few hundred times, while its first workers start. */
	if (level >= LOG_LEVEL_DEBUG) {
		va_end(ap);
		return;
	}
	msg[0] = MSG_LOG;
	msg[1] = (char)level;
	n = vsnprintf(msg + 2, sizeof(msg) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(msg) - 3)
		n = (int)sizeof(msg) - 3;
	/* Blocking: the arbiter reads as lines come, and this is not its loop. */
	(void)!send(relay_fd, msg, (size_t)n + 2, MSG_NOSIGNAL);
}

/* See sv_register in bpf/sigvisor.bpf.c: renaming ourselves to our own name fires
 * task_rename synchronously, so the answer is there when prctl returns. */
int probes_register(struct bpf_probes *p, int link_fd, char *why, size_t whylen)
{
	char comm[SV_COMM_LEN + 1] = "";

	(void)link_fd; /* attached: that is all it is for */
	if (prctl(PR_GET_NAME, comm) < 0 || prctl(PR_SET_NAME, comm) < 0) {
		int r = -errno;

		set_why(why, whylen, "cannot register with the probes (prctl): %s", strerror(-r));
		return r;
	}
	p->self_tgid = (pid_t)__atomic_load_n(&p->bss->self_tgid, __ATOMIC_ACQUIRE);
	if (!p->self_tgid) {
		set_why(why, whylen, "the registration probe did not see us (task_rename)");
		return -ESRCH;
	}
	if (p->self_tgid != getpid())
		log_info("BPF: our pid on the host is %d", (int)p->self_tgid);
	return 0;
}

/* SIGVISOR_TEST_BPF_REFUSE=sv_deliver,...: the test suite's way to make the verifier
 * refuse a program on a kernel that accepts them all. */
unsigned probes_refuse_from_env(void)
{
	const char *v = getenv("SIGVISOR_TEST_BPF_REFUSE");
	unsigned bits = 0;

	for (size_t i = 0; v && i < N_PROGS; i++) {
		const char *m = strstr(v, probes_progs[i].name);
		size_t n = strlen(probes_progs[i].name);

		if (m && (m[n] == '\0' || m[n] == ','))
			bits |= probes_progs[i].refuse;
	}
	return bits;
}

struct bpf_link **probes_skel_link(const struct sigvisor *s, const char *name)
{
	const struct bpf_object_skeleton *sk = s->skeleton;

	for (int j = 0; j < sk->prog_cnt; j++)
		if (strcmp(sk->progs[j].name, name) == 0)
			return sk->progs[j].link;
	return NULL;
}

/* The embedded object, opened to pin under pin_root (NULL: pins as libbpf's default,
 * which probes_disable_pinning() turns off). NULL with errno. */
struct sigvisor *probes_open_object(const char *pin_root)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo);

	oo.pin_root_path = pin_root;
	return sigvisor__open_opts(&oo);
}

/* Open the embedded object into p->skel, pinning under p->pin_dir when we hold it.
 * 0, or <0 with why. */
int probes_open_skeleton(struct bpf_probes *p, char *why, size_t whylen)
{
	p->skel = probes_open_object(p->pin_fd >= 0 ? p->pin_dir : NULL);
	if (!p->skel) {
		int r = -errno;

		set_why(why, whylen, "cannot open the BPF object: %s", strerror(-r));
		return r;
	}
	return 0;
}
