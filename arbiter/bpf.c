/* The arbiter's side of the eBPF probes (bpf/sigvisor.bpf.c), its entry points: decide
 * whether they may load and say plainly why not, open them (kept from the image before a
 * USR2, loaded in the background, or loaded now), read their counters, and undo all of
 * it. The pieces are in bpf_pin.c, bpf_load.c, bpf_handover.c and bpf_events.c
 * (bpf_internal.h).
 *
 * Order matters in bpf_probes_open(): the capability and BTF checks come before libbpf
 * (whose own error for a missing capability talks about RLIMIT_MEMLOCK), the pin
 * directory is locked before stale pins in it are removed (another sigvisor may be
 * using it), and the arbiter registers before any worker is forked (fork copies
 * registration to the child). */
#include "bpf.h"

#include <errno.h>
#include <linux/capability.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "bpf_internal.h"
#include "log.h"
#include "options.h"
#include "sigvisor_bpf.h"
#include "sigvisor.skel.h"

static bool has_cap(const struct __user_cap_data_struct *d, unsigned cap)
{
	return d[cap / 32].effective & (1u << (cap % 32));
}

/* Without CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN) the kernel answers EPERM and libbpf
 * guesses at RLIMIT_MEMLOCK; without kernel BTF no tp_btf program can attach. Ask
 * first, and name what is missing. */
static int check_permitted(char *why, size_t whylen)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
	bool bpf, perfmon;
	char map[64] = "";
	FILE *f;

	memset(d, 0, sizeof(d));
	if (syscall(SYS_capget, &h, d) < 0) {
		set_why(why, whylen, "cannot read our capabilities: %s", strerror(errno));
		return -errno;
	}
	bpf = has_cap(d, CAP_BPF) || has_cap(d, CAP_SYS_ADMIN);
	perfmon = has_cap(d, CAP_PERFMON) || has_cap(d, CAP_SYS_ADMIN);
	if (!bpf || !perfmon) {
		set_why(why, whylen, "missing capability %s%s%s (or CAP_SYS_ADMIN)",
			bpf ? "" : "CAP_BPF", !bpf && !perfmon ? " and " : "",
			perfmon ? "" : "CAP_PERFMON");
		return -EPERM;
	}
	/* Capabilities held in a user namespace do not count for bpf(2). */
	f = fopen("/proc/self/uid_map", "re");
	if (f) {
		unsigned long inside, outside, count;

		if (fgets(map, sizeof(map), f) &&
		    sscanf(map, "%lu %lu %lu", &inside, &outside, &count) == 3 &&
		    !(inside == 0 && outside == 0 && count == 4294967295UL)) {
			fclose(f);
			set_why(why, whylen,
				"running in a user namespace: BPF needs CAP_BPF and CAP_PERFMON "
				"in the host's");
			return -EPERM;
		}
		fclose(f);
	}
	if (access("/sys/kernel/btf/vmlinux", R_OK) < 0) {
		set_why(why, whylen,
			"the kernel has no BTF (/sys/kernel/btf/vmlinux: %s; it needs "
			"CONFIG_DEBUG_INFO_BTF=y)",
			strerror(errno));
		return -ENOTSUP;
	}
	return 0;
}

/* The ring holds what the arbiter has not read yet. Events are rate-limited per
 * process and signal, so the burst to plan for is one signal to every worker at once
 * (a shutdown's TERM to all, a USR1): two events each, with room to spare. Its pages
 * are mapped twice into the arbiter (the kernel's wrap-around trick) and count in its
 * RSS: 64 KiB for a small pool rather than a fixed 256 KiB. Drops are counted. */
static uint32_t ring_bytes(unsigned workers)
{
	uint64_t want = (uint64_t)workers * 2 * (sizeof(struct sv_event) + 8) * 2;
	uint32_t size = SV_RINGBUF_BYTES;

	while (size < want && size < (4u << 20))
		size <<= 1;
	return size;
}

/* Off, or failed when --bpf on asked for them. */
static enum bpf_open_result not_on(const struct bpf_options *opt)
{
	return opt->mode == BPF_ON ? BPF_OPEN_FAILED : BPF_OPEN_OFF;
}

enum bpf_open_result bpf_probes_open(struct bpf_probes **ret, const struct bpf_options *opt,
				     char *why, size_t whylen)
{
	struct bpf_probes *p;
	int r;

	*ret = NULL;
	why[0] = '\0';
	if (opt->mode == BPF_OFF) {
		probes_drop_handover(opt->handover, NULL);
		set_why(why, whylen, "--bpf off");
		return BPF_OPEN_OFF;
	}
	r = check_permitted(why, whylen);
	if (r < 0) {
		probes_drop_handover(opt->handover, NULL);
		return not_on(opt);
	}

	libbpf_set_print(probes_print_libbpf);
	p = calloc(1, sizeof(*p));
	if (!p) {
		set_why(why, whylen, "out of memory");
		return not_on(opt);
	}
	p->pin_fd = -1;
	p->loader_sock = p->loader_peer = -1;
	p->nspid = getpid();
	p->serving_prog_fd = p->serving_link_fd = -1;
	for (size_t i = 0; i < sizeof(p->kept_link) / sizeof(p->kept_link[0]); i++)
		p->kept_link[i] = -1;
	p->ring_bytes = ring_bytes(opt->workers);
	p->sigaction = opt->sigaction;
	p->on_event = opt->on_event;
	p->ctx = opt->ctx;
	probes_prepare_pins(p, opt);
	if (opt->handover) {
		char kept_why[256];

		/* A USR2 from an image with the same probes: keep them, attached all along. */
		if (probes_adopt(p, opt, kept_why, sizeof(kept_why)) == 0) {
			*ret = p;
			return BPF_OPEN_ON;
		}
		log_info("BPF: not keeping the probes of the image before the upgrade (%s), "
			 "loading them again",
			 kept_why);
		probes_drop_handover(opt->handover, p->pin_fd >= 0 ? p->pin_dir : NULL);
	}
	if (opt->mode == BPF_AUTO) {
		/* The workers do not wait for the verifier: see struct bpf_probes. The
		 * loader starts at bpf_probes_start_loading. */
		r = probes_prepare_loader(p);
		if (r == 0) {
			*ret = p;
			return BPF_OPEN_ON;
		}
		log_debug("cannot load the BPF probes in a process of their own, loading them "
			  "now: %s",
			  strerror(-r));
	}
	r = probes_load(p, why, whylen);
	if (r == 0)
		r = probes_attach_all(p, why, whylen);
	if (r < 0) {
		bpf_probes_close(p);
		(void)malloc_trim(0);
		return not_on(opt);
	}
	/* Parsing the object and the kernel's BTF for CO-RE left the heap large and
	 * mostly free: give it back, the arbiter will not need it. */
	(void)malloc_trim(0);
	*ret = p;
	return BPF_OPEN_ON;
}

int bpf_probes_fd(const struct bpf_probes *p)
{
	if (p && p->loading)
		return p->loader_sock;
	return p && p->rb ? ring_buffer__epoll_fd(p->rb) : -1;
}

int bpf_probes_self_stats(struct bpf_probes *p, int sig, struct bpf_signal_stats *ret)
{
	const __u64 *c;

	if (!p || p->loading || !p->rb)
		return -ENODEV;
	if (sig <= 0 || sig > SV_MAX_SIG)
		return -EINVAL;
	/* .bss is mmap'ed: no system call, and the probes add atomically. */
	c = p->bss->self_counts[sig];
	ret->queued = __atomic_load_n(&c[delivered], __ATOMIC_RELAXED);
	ret->ignored = __atomic_load_n(&c[ignored], __ATOMIC_RELAXED);
	ret->coalesced = __atomic_load_n(&c[coalesced], __ATOMIC_RELAXED);
	ret->overflow = __atomic_load_n(&c[overflow], __ATOMIC_RELAXED);
	ret->lose_info = __atomic_load_n(&c[lose_info], __ATOMIC_RELAXED);
	ret->generated =
		ret->queued + ret->ignored + ret->coalesced + ret->overflow + ret->lose_info;
	ret->sent = __atomic_load_n(&p->bss->self_sent[sig], __ATOMIC_ACQUIRE);
	return 0;
}

void bpf_probes_event_stats(const struct bpf_probes *p, uint64_t *ret_suppressed,
			    uint64_t *ret_dropped)
{
	*ret_suppressed = *ret_dropped = 0;
	if (!p || p->loading || !p->bss)
		return;
	*ret_suppressed = __atomic_load_n(&p->bss->events_suppressed, __ATOMIC_RELAXED);
	*ret_dropped = __atomic_load_n(&p->bss->events_dropped, __ATOMIC_RELAXED);
}

pid_t bpf_probes_self_tgid(const struct bpf_probes *p)
{
	return p ? p->self_tgid : 0;
}

const char *bpf_probes_pin_dir(const struct bpf_probes *p)
{
	return p ? p->pin_dir : "";
}

const char *bpf_probes_pin_why(const struct bpf_probes *p)
{
	return p ? p->pin_why : "";
}

const char *bpf_probes_part_off(const struct bpf_probes *p, enum bpf_part part)
{
	if (!p || part < 0 || part >= BPF_PART_MAX)
		return "the probes are off";
	if (p->loading)
		return "the probes are loading";
	return p->part_why[part][0] ? p->part_why[part] : NULL;
}

static void close_kept(struct bpf_probes *p)
{
	for (size_t i = 0; i < sizeof(p->kept_link) / sizeof(p->kept_link[0]); i++)
		if (p->kept_link[i] >= 0) {
			close(p->kept_link[i]); /* detaches it */
			p->kept_link[i] = -1;
		}
}

void bpf_probes_close(struct bpf_probes *p)
{
	if (!p)
		return;
	probes_stop_loader(p);
	if (p->serving_link_fd >= 0)
		close(p->serving_link_fd);
	ring_buffer__free(p->rb);
	close_kept(p);
	if (p->adopted && p->serving_prog_fd >= 0)
		close(p->serving_prog_fd);
	if (p->skel) {
		if (p->bss) {
			uint64_t held = p->bss->events_suppressed;
			uint64_t lost = p->bss->events_dropped;

			if (held || lost)
				log_info("BPF events: %llu not logged (over %d a second for one "
					 "process and signal), %llu lost (ring buffer full); the "
					 "counts include them",
					 (unsigned long long)held, SV_EVENTS_PER_SEC,
					 (unsigned long long)lost);
		}
		if (p->pin_fd >= 0)
			probes_unpin_maps(p);
		if (p->adopted && p->bss)
			munmap(p->bss, probes_bss_map_bytes());
		sigvisor__destroy(p->skel); /* detaches every link, closes every fd */
	}
	probes_release_pin_dir(p);
	free(p);
}
