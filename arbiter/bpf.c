/* The BPF probes are not built yet: this stub keeps the interface (see bpf.h). */
#include "bpf.h"

#include <errno.h>
#include <stdio.h>

int bpf_probes_open(struct bpf_probes **ret, const struct bpf_options *opt, char *why,
		    size_t whylen)
{
	*ret = NULL;
	snprintf(why, whylen, "not built into this version yet");
	return opt->mode == 1 ? -ENOTSUP : 1;
}

int bpf_probes_fd(const struct bpf_probes *p)
{
	(void)p;
	return -1;
}

void bpf_probes_poll(struct bpf_probes *p)
{
	(void)p;
}

int bpf_probes_self_stats(struct bpf_probes *p, int sig, struct bpf_signal_stats *ret)
{
	(void)p;
	(void)sig;
	(void)ret;
	return -ENODEV;
}

const char *bpf_probes_pin_dir(const struct bpf_probes *p)
{
	(void)p;
	return "";
}

void bpf_probes_close(struct bpf_probes *p)
{
	(void)p;
}
