/* What the probes tell the arbiter through their ring buffer: a signal's fate as a
 * readable log line ("signal TTIN from pid 4242 (kill) to pid 1 (sigvisor): coalesced"),
 * and a watched worker seen serving; and readiness by serving itself (serving.h): the
 * listening sockets and the watched workers in the probe's maps, the probe attached
 * only while a worker is watched. */
#include "bpf_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "log.h"
#include "signames.h"
#include "sigvisor_bpf.h"
#include "sigvisor.skel.h"

/* Copy a comm from the kernel for a log line: NUL-terminated, printable. */
static void clean_comm(char *dst, const char *src)
{
	size_t i;

	for (i = 0; i < SV_COMM_LEN - 1 && src[i]; i++)
		dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
	dst[i] = '\0';
}

static void describe_process(char *buf, size_t len, uint32_t tgid, uint32_t nspid,
			     const char *comm_raw)
{
	char comm[SV_COMM_LEN];

	clean_comm(comm, comm_raw);
	/* A process outside our namespace has no pid we could name to a user of it: give
	 * the host's, and say so. */
	if (nspid)
		snprintf(buf, len, "pid %u (%s)", nspid, comm);
	else
		snprintf(buf, len, "host pid %u (%s)", tgid, comm);
}

static const char *result_word(uint32_t result)
{
	switch (result) {
	case delivered:
		return "queued";
	case ignored:
		return "ignored";
	case coalesced:
		return "coalesced";
	case overflow:
		return "lost (real-time queue full)";
	case lose_info:
		return "queued without its siginfo";
	default:
		return "?";
	}
}

/* The registration gap: a process that neither handles nor blocks a signal whose
 * default action terminates it (USR1 to a worker whose framework reset the handler)
 * dies of it. Not said for the signals meant to end a process. */
static bool kills_unhandled(int sig)
{
	switch (sig) {
	case SIGKILL:
	case SIGTERM:
	case SIGINT:
	case SIGQUIT:
	case SIGCHLD:
	case SIGCONT:
	case SIGSTOP:
	case SIGTSTP:
	case SIGTTIN:
	case SIGTTOU:
	case SIGURG:
	case SIGWINCH:
		return false;
	default:
		return true;
	}
}

static void format_event(const struct sv_event *e, char *line, size_t len)
{
	char from[96], to[96], held[64] = "";
	const char *harm = "";

	describe_process(to, sizeof(to), e->target_tgid, e->target_nspid, e->target_comm);
	if (e->suppressed)
		snprintf(held, sizeof(held), " (%u similar before it not logged)", e->suppressed);
	if (e->kind == SV_EV_DELIVER) {
		snprintf(line, len, "signal %s to %s: default action, no handler%s",
			 signal_name((int)e->sig), to, held);
		return;
	}
	if (e->sender_tgid)
		describe_process(from, sizeof(from), e->sender_tgid, e->sender_nspid,
				 e->sender_comm);
	else
		snprintf(from, sizeof(from), "the kernel");
	if (e->result == delivered && e->target_handler == sig_dfl && !e->target_blocked &&
	    kills_unhandled((int)e->sig))
		harm = ", and it has no handler: the default action kills it";
	snprintf(line, len, "signal %s from %s to %s: %s%s%s", signal_name((int)e->sig), from, to,
		 result_word(e->result), harm, held);
}

static const char *serving_call(long nr)
{
	static const struct {
		long nr;
		const char *name;
	} calls[] = {
#ifdef SYS_accept
		{SYS_accept, "accept"},
#endif
#ifdef SYS_poll
		{SYS_poll, "poll"},
#endif
#ifdef SYS_select
		{SYS_select, "select"},
#endif
		{SYS_accept4, "accept4"}, {SYS_epoll_ctl, "epoll_ctl(ADD)"},
		{SYS_ppoll, "ppoll"},	  {SYS_pselect6, "pselect6"},
	};

	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++)
		if (calls[i].nr == nr)
			return calls[i].name;
	return "?";
}

/* sv_serving saw a process of a watched worker's tree serve: the entry is gone from
 * the map (the probe deleted it), so it is no longer watched. */
static void serving_event(struct bpf_probes *p, const struct sv_event *e)
{
	char how[128], comm[SV_COMM_LEN];

	clean_comm(comm, e->sender_comm);
	if (e->sender_nspid == e->target_nspid)
		snprintf(how, sizeof(how), "%s on fd %u", serving_call(e->sig), e->result);
	else
		snprintf(how, sizeof(how), "%s on fd %u in pid %u (%s)", serving_call(e->sig),
			 e->result, e->sender_nspid, comm);
	if (p->on_serving)
		p->on_serving(p->serving_ctx, (pid_t)e->target_nspid, how);
}

int probes_on_ring_event(void *ctx, void *data, size_t size)
{
	struct bpf_probes *p = ctx;
	char line[512];

	if (size < sizeof(struct sv_event))
		return 0;
	if (((const struct sv_event *)data)->kind == SV_EV_SERVING) {
		serving_event(p, data);
		return 0;
	}
	if (!p->on_event)
		return 0;
	format_event(data, line, sizeof(line));
	p->on_event(p->ctx, line);
	return 0;
}

void bpf_probes_poll(struct bpf_probes *p)
{
	int r;

	if (!p || !p->rb)
		return;
	r = ring_buffer__consume(p->rb);
	if (r < 0)
		log_warn("reading BPF events, ignoring: %s", strerror(-r));
}

/* ---- readiness by serving ----------------------------------------------------------- */

static bool serving_usable(const struct bpf_probes *p)
{
	return p && !p->loading && p->rb && p->serving_prog_fd >= 0 &&
	       !p->part_why[BPF_PART_SERVING][0];
}

bool bpf_probes_serving(const struct bpf_probes *p)
{
	return serving_usable(p);
}

void bpf_probes_serving_callback(struct bpf_probes *p,
				 void (*cb)(void *ctx, pid_t pid, const char *how), void *ctx)
{
	if (!p)
		return;
	p->on_serving = cb;
	p->serving_ctx = ctx;
}

int bpf_probes_serving_sockets(struct bpf_probes *p, const uint64_t *inodes, size_t n)
{
	int fd;
	uint64_t key, next;
	uint32_t one = 1;
	bool more;

	if (!serving_usable(p))
		return -ENODEV;
	fd = bpf_map__fd(p->skel->maps.serving_socks);
	/* Replace the set: delete what is there, then add. A worker watched meanwhile
	 * may miss a call on a socket that stays; the look at /proc still sees it. */
	for (more = bpf_map_get_next_key(fd, NULL, &key) == 0; more; key = next) {
		more = bpf_map_get_next_key(fd, &key, &next) == 0;
		(void)bpf_map_delete_elem(fd, &key);
	}
	for (size_t i = 0; i < n && i < SV_MAX_SERVING_SOCKS; i++)
		if (bpf_map_update_elem(fd, &inodes[i], &one, BPF_ANY) < 0)
			return -errno;
	return 0;
}

int bpf_probes_serving_watch(struct bpf_probes *p, pid_t pid)
{
	uint32_t key = (uint32_t)pid, one = 1;

	if (!serving_usable(p))
		return -ENODEV;
	if (bpf_map_update_elem(bpf_map__fd(p->skel->maps.serving_wait), &key, &one, BPF_ANY) < 0)
		return -errno;
	if (p->serving_link_fd < 0) {
		/* Attached only while needed: it sits on every system call of the host. */
		p->serving_link_fd = bpf_raw_tracepoint_open(NULL, p->serving_prog_fd);
		if (p->serving_link_fd < 0) {
			int r = p->serving_link_fd;

			p->serving_link_fd = -1;

			(void)bpf_map_delete_elem(bpf_map__fd(p->skel->maps.serving_wait), &key);
			set_why(p->part_why[BPF_PART_SERVING], BPF_WHY_LEN,
				"cannot attach sv_serving: %s", strerror(-r));
			log_warn("BPF: the serving probe is off: %s",
				 p->part_why[BPF_PART_SERVING]);
			return r;
		}
	}
	p->serving_watched++;
	return 0;
}

void bpf_probes_serving_unwatch(struct bpf_probes *p, pid_t pid)
{
	uint32_t key = (uint32_t)pid;

	if (!p || !p->skel || !p->serving_watched)
		return;
	(void)bpf_map_delete_elem(bpf_map__fd(p->skel->maps.serving_wait), &key);
	if (--p->serving_watched == 0 && p->serving_link_fd >= 0) {
		close(p->serving_link_fd);
		p->serving_link_fd = -1;
	}
}
