/* Keeping the probes across a USR2's exec (bpf.h): the image before writes the fds of
 * its maps, links and on-demand programs into the upgrade state and clears their
 * close-on-exec; the new image, if it carries the same probes, takes them as they are
 * (probes_adopt: nothing loaded, nothing detached), else closes them and removes their
 * pins (probes_drop_handover). What is handed over of each program is in
 * probes_progs[]. */
#include "bpf_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "log.h"
#include "sigvisor_bpf.h"
#include "sigvisor.skel.h"

/* ---- keeping the probes across a USR2 exec ------------------------------------------- */

/* The handover's format, in the upgrade state: one line with every fd,
 *   bpf 1 IDENTITY tgid=N sigaction=0|1 map.NAME=FD ... link.PROG=FD ... prog.sv_serving=FD
 *       pin=DIR
 * (pin last: the rest of the line) and a line for each part that is off,
 *   bpfwhy PART REASON */
#define HANDOVER_VERSION 1

size_t probes_bss_map_bytes(void)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return (sizeof(struct sigvisor__bss) + page - 1) / page * page;
}

uint64_t bpf_probes_identity(void)
{
	size_t n = 0;
	const unsigned char *b = sigvisor__elf_bytes(&n);
	/* What the loader bakes into .rodata that may differ between two binaries of the
	 * same object (the rest is our pid and namespace, which an exec keeps). */
	const uint64_t extra[] = {HANDOVER_VERSION, probes_refuse_from_env(),
				  sizeof(struct sigvisor__bss), SYS_rt_sigaction, SV_RINGBUF_BYTES};
	uint64_t h = 14695981039346656037ULL; /* FNV-1a */

	for (size_t i = 0; b && i < n; i++)
		h = (h ^ b[i]) * 1099511628211ULL;
	for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++)
		for (unsigned k = 0; k < 8; k++)
			h = (h ^ ((extra[i] >> (8 * k)) & 0xff)) * 1099511628211ULL;
	return h ? h : 1;
}

/* The "bpf " line of a handover, or NULL. */
static const char *handover_line(const char *state)
{
	for (const char *l = state; l && *l;) {
		if (strncmp(l, "bpf ", 4) == 0)
			return l;
		l = strchr(l, '\n');
		l = l ? l + 1 : NULL;
	}
	return NULL;
}

static bool names_fd(const char *tok)
{
	return strncmp(tok, "map.", 4) == 0 || strncmp(tok, "link.", 5) == 0 ||
	       strncmp(tok, "prog.", 5) == 0;
}

/* Each fd of the line, in turn: *pos starts at 0. -1 at the end. */
static int next_handed_fd(const char *line, size_t *pos, char *name, size_t namelen)
{
	const char *l = line + *pos;

	while (*l && *l != '\n') {
		const char *tok = l, *eq;
		size_t len = strcspn(tok, " \n");

		l = tok + len;
		while (*l == ' ')
			l++;
		if (strncmp(tok, "pin=", 4) == 0)
			break;
		eq = memchr(tok, '=', len);
		if (!eq || !names_fd(tok))
			continue;
		*pos = (size_t)(l - line);
		snprintf(name, namelen, "%.*s", (int)(eq - tok), tok);
		return atoi(eq + 1);
	}
	*pos = (size_t)(l - line);
	return -1;
}

/* The fd the line gives for key ("map.signals"), or -1. */
static int handed_fd(const char *line, const char *key)
{
	char name[64];
	size_t pos = 0;
	int fd;

	while ((fd = next_handed_fd(line, &pos, name, sizeof(name))) >= 0)
		if (strcmp(name, key) == 0)
			return fd;
	return -1;
}

size_t probes_handover_fds(const char *state, int *fds, size_t max)
{
	const char *line = handover_line(state);
	char name[64];
	size_t pos = 0, n = 0;
	int fd;

	while (line && (fd = next_handed_fd(line, &pos, name, sizeof(name))) >= 0 && n < max)
		fds[n++] = fd;
	return n;
}

char *probes_handover_renumber(const char *state, const int *fds, size_t n)
{
	const char *l = handover_line(state);
	char *out = NULL;
	size_t len = 0, i = 0;
	FILE *f;

	if (!l || !(f = open_memstream(&out, &len)))
		return NULL;
	while (*l && *l != '\n' && strncmp(l, "pin=", 4) != 0) {
		size_t tlen = strcspn(l, " \n");
		const char *eq = memchr(l, '=', tlen);

		if (eq && names_fd(l))
			fprintf(f, "%.*s=%d", (int)(eq - l), l, i < n ? fds[i] : -1);
		else
			fwrite(l, 1, tlen, f);
		i += eq && names_fd(l);
		l += tlen;
		while (*l == ' ')
			fputc(*l++, f);
	}
	fputs(l, f);
	/* As many fds as the line names, or the line is not the one they came with. */
	if (fclose(f) != 0 || i != n) {
		free(out);
		return NULL;
	}
	return out;
}

void bpf_handover_cloexec(const char *state, bool on)
{
	const char *line = handover_line(state);
	char name[64];
	size_t pos = 0;
	int fd;

	while (line && (fd = next_handed_fd(line, &pos, name, sizeof(name))) >= 0)
		(void)fcntl(fd, F_SETFD, on ? FD_CLOEXEC : 0);
}

/* The handed-over probes are not kept: detach them (closing the links does), close the
 * maps, remove their pins. pin_dir: the directory we hold, if any. */
void probes_drop_handover(const char *state, const char *pin_dir)
{
	const char *line = handover_line(state), *pin;
	char name[64];
	size_t pos = 0;
	int fd;

	if (!line)
		return;
	while ((fd = next_handed_fd(line, &pos, name, sizeof(name))) >= 0)
		(void)close(fd);
	pin = strstr(line, " pin=");
	if (pin) {
		char dir[PATH_MAX];

		pin += 5;
		snprintf(dir, sizeof(dir), "%.*s", (int)strcspn(pin, "\n"), pin);
		probes_remove_pins_in(dir, pin_dir && strcmp(pin_dir, dir) == 0);
	}
}

/* ours: links this image attached (from the loader's programs), closed; else the
 * state's, which probes_drop_handover() closes. */
static void unadopt(struct bpf_probes *p, bool ours)
{
	ring_buffer__free(p->rb);
	p->rb = NULL;
	if (p->bss)
		munmap(p->bss, probes_bss_map_bytes());
	p->bss = NULL;
	sigvisor__destroy(p->skel); /* closes its duplicates of the maps */
	p->skel = NULL;
	for (size_t i = 0; i < sizeof(p->kept_link) / sizeof(p->kept_link[0]); i++) {
		if (ours && p->kept_link[i] >= 0)
			close(p->kept_link[i]); /* detaches it */
		p->kept_link[i] = -1;
	}
	p->serving_prog_fd = -1;
	p->adopted = false;
	memset(p->part_why, 0, sizeof(p->part_why));
}

static bool is_link(int fd)
{
	struct bpf_link_info info;
	__u32 len = sizeof(info);

	memset(&info, 0, sizeof(info));
	return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && info.prog_id;
}

static bool is_prog(int fd, const char *name)
{
	struct bpf_prog_info info;
	__u32 len = sizeof(info);

	memset(&info, 0, sizeof(info));
	return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && strcmp(info.name, name) == 0;
}

/* The loader child's program fd of key ("prog.sv_fork") attached: a link fd, or -errno. */
static int attach_loaded(const char *line, const char *name)
{
	char key[64];
	int fd;

	snprintf(key, sizeof(key), "prog.%s", name);
	fd = handed_fd(line, key);
	if (fd < 0)
		return -ENOENT;
	/* tp_btf: the tracepoint is in the program (its attach BTF id) */
	fd = bpf_raw_tracepoint_open(NULL, fd);
	return fd < 0 ? -errno : fd;
}

/* The loader's sv_adopt run once: reading the iterator is running it. */
static void run_loaded_iter(const char *line, const char *name)
{
	char key[64], buf[64];
	int prog, link, fd;

	snprintf(key, sizeof(key), "prog.%s", name);
	prog = handed_fd(line, key);
	link = prog >= 0 ? bpf_link_create(prog, 0, BPF_TRACE_ITER, NULL) : -ENOENT;
	fd = link >= 0 ? bpf_iter_create(link) : link;
	if (fd < 0) {
		probes_log(LOG_LEVEL_WARN, "BPF: cannot run the adoption iterator, ignoring: %s",
			   strerror(-fd));
	} else {
		while (read(fd, buf, sizeof(buf)) > 0)
			;
		close(fd);
	}
	if (link >= 0)
		close(link);
}

/* Take over probes loaded elsewhere: those of the image before this USR2
 * (bpf_probes_handover: the same maps, the programs still attached), or those the
 * --bpf auto loader child loaded (probes_write_loaded: tgid=0, programs not attached
 * yet: we register, attach in the order of probes_progs[] and run the iterator).
 * Nothing is loaded or verified here. 0, or <0 with why. */
int probes_adopt(struct bpf_probes *p, const struct bpf_options *opt, char *why, size_t whylen)
{
	const char *line = handover_line(opt->handover), *pin, *l;
	unsigned version = 0;
	unsigned long long identity = 0;
	int tgid = 0, sigaction = -1, n = 0, r;
	struct sigvisor *s;
	char key[64];
	uint32_t wkey, wnext;
	bool more, loaded = false;

	if (!line ||
	    sscanf(line, "bpf %u %llx tgid=%d sigaction=%d%n", &version, &identity, &tgid,
		   &sigaction, &n) < 4 ||
	    !n) {
		set_why(why, whylen, "the handover is not one this image reads");
		return -EINVAL;
	}
	if (version != HANDOVER_VERSION || identity != bpf_probes_identity()) {
		set_why(why, whylen, "this binary carries other probes");
		return -ESTALE;
	}
	if ((sigaction != 0) != opt->sigaction) {
		set_why(why, whylen, "--bpf-sigaction changed");
		return -EINVAL;
	}
	pin = strstr(line, " pin=");
	if (!pin || strncmp(pin + 5, p->pin_dir, strlen(p->pin_dir)) != 0 ||
	    (pin[5 + strlen(p->pin_dir)] != '\n' && pin[5 + strlen(p->pin_dir)] != '\0')) {
		set_why(why, whylen, "the pin directory changed");
		return -EINVAL;
	}
	r = probes_open_skeleton(p, why, whylen);
	if (r < 0)
		return r;
	s = p->skel;
	if (p->pin_fd < 0)
		probes_disable_pinning(p);
	for (int i = 0; i < s->skeleton->map_cnt; i++) {
		struct bpf_map *map = *s->skeleton->maps[i].map;
		unsigned type = bpf_map__type(map), ksz = bpf_map__key_size(map),
			 vsz = bpf_map__value_size(map);
		int fd;

		snprintf(key, sizeof(key), "map.%s", s->skeleton->maps[i].name);
		fd = handed_fd(line, key);
		if (fd < 0) {
			set_why(why, whylen, "no map %s in the handover",
				s->skeleton->maps[i].name);
			goto fail_inval;
		}
		r = bpf_map__reuse_fd(map, fd);
		if (r < 0 || bpf_map__type(map) != type || bpf_map__key_size(map) != ksz ||
		    bpf_map__value_size(map) != vsz) {
			set_why(why, whylen, "the handed-over map %s does not fit: %s",
				s->skeleton->maps[i].name, r < 0 ? strerror(-r) : "another shape");
			goto fail_inval;
		}
	}
	p->bss = mmap(NULL, probes_bss_map_bytes(), PROT_READ | PROT_WRITE, MAP_SHARED,
		      bpf_map__fd(s->maps.bss), 0);
	if (p->bss == MAP_FAILED) {
		p->bss = NULL;
		set_why(why, whylen, "cannot map the probes' counters: %s", strerror(errno));
		goto fail_inval;
	}
	/* tgid=0: the loader child's, to register with; otherwise registered already. */
	loaded = tgid == 0;
	p->self_tgid = (pid_t)__atomic_load_n(&p->bss->self_tgid, __ATOMIC_ACQUIRE);
	if (!loaded && (!p->self_tgid || p->self_tgid != tgid)) {
		set_why(why, whylen, "the handed-over probes do not know us");
		goto fail_inval;
	}
	for (l = opt->handover; l && *l;) {
		char part[32];
		int k = 0;

		if (sscanf(l, "bpfwhy %31s %n", part, &k) == 1 && k)
			for (int i = 0; i < BPF_PART_MAX; i++)
				if (strcmp(part, bpf_part_name(i)) == 0)
					snprintf(p->part_why[i], BPF_WHY_LEN, "%.*s",
						 (int)strcspn(l + k, "\n"), l + k);
		l = strchr(l, '\n');
		l = l ? l + 1 : NULL;
	}
	for (size_t i = 0; i < N_PROGS; i++) {
		const struct prog_info *pi = &probes_progs[i];
		int fd;

		/* Loaded by the loader child: its part off means not loaded. */
		if (loaded && p->part_why[pi->part][0])
			continue;
		switch (pi->use) {
		case PROG_REGISTER:
			if (!loaded)
				break; /* done once by the image before: nothing is attached */
			fd = attach_loaded(line, pi->name);
			if (fd < 0) {
				r = fd;
				set_why(why, whylen, "cannot attach the registration probe: %s",
					strerror(-r));
				goto fail;
			}
			r = probes_register(p, fd, why, whylen);
			close(fd); /* detaches it: it has answered */
			if (r < 0)
				goto fail;
			break;
		case PROG_ITER:
			if (loaded)
				run_loaded_iter(line, pi->name);
			break;
		case PROG_KEPT:
			snprintf(key, sizeof(key), "link.%s", pi->name);
			fd = loaded ? attach_loaded(line, pi->name) : handed_fd(line, key);
			if (fd < 0 && loaded) {
				r = fd;
				set_why(why, whylen, "cannot attach %s: %s", pi->name,
					strerror(-r));
				goto fail;
			}
			if (fd < 0 && !p->part_why[pi->part][0]) {
				set_why(why, whylen, "%s is not attached", pi->name);
				goto fail_inval;
			}
			if (fd >= 0 && !is_link(fd)) {
				set_why(why, whylen, "the handed-over link of %s is not one",
					pi->name);
				goto fail_inval;
			}
			p->kept_link[i] = fd;
			break;
		case PROG_WATCH:
			if (p->part_why[pi->part][0])
				break;
			snprintf(key, sizeof(key), "prog.%s", pi->name);
			fd = handed_fd(line, key);
			if (fd >= 0 && is_prog(fd, pi->name))
				p->serving_prog_fd = fd;
			else
				set_why(p->part_why[pi->part], BPF_WHY_LEN,
					"the image before the upgrade did not hand %s over",
					pi->name);
			break;
		}
	}
	p->rb = ring_buffer__new(bpf_map__fd(s->maps.events), probes_on_ring_event, p, NULL);
	if (!p->rb) {
		r = -errno;
		set_why(why, whylen, "cannot open the BPF ring buffer: %s", strerror(-r));
		goto fail;
	}
	/* Workers the image before was waiting on are not ours to watch. */
	r = bpf_map__fd(s->maps.serving_wait);
	for (more = bpf_map_get_next_key(r, NULL, &wkey) == 0; more; wkey = wnext) {
		more = bpf_map_get_next_key(r, &wkey, &wnext) == 0;
		(void)bpf_map_delete_elem(r, &wkey);
	}
	/* Ours now: the maps were duplicated by the skeleton, the links and sv_serving's
	 * program stay as they are, close-on-exec. */
	for (int i = 0; i < s->skeleton->map_cnt; i++) {
		snprintf(key, sizeof(key), "map.%s", s->skeleton->maps[i].name);
		(void)close(handed_fd(line, key));
	}
	for (size_t i = 0; i < N_PROGS; i++)
		if (p->kept_link[i] >= 0)
			(void)fcntl(p->kept_link[i], F_SETFD, FD_CLOEXEC);
	if (p->serving_prog_fd >= 0)
		(void)fcntl(p->serving_prog_fd, F_SETFD, FD_CLOEXEC);
	/* Any fd the line names that we did not take goes. */
	for (size_t pos = 0; (r = next_handed_fd(line, &pos, key, sizeof(key))) >= 0;) {
		bool taken = r == p->serving_prog_fd;

		for (size_t i = 0; i < N_PROGS; i++)
			taken = taken || r == p->kept_link[i];
		if (!taken && strncmp(key, "map.", 4) != 0)
			(void)close(r);
	}
	p->adopted = true;
	p->sigaction = opt->sigaction;
	return 0;
fail_inval:
	r = -EINVAL;
fail:
	unadopt(p, loaded);
	return r;
}

bool bpf_probes_adopted(const struct bpf_probes *p)
{
	return p && p->adopted;
}

/* The link of probes_progs[i] that is attached now, or -1. */
static int link_fd(const struct bpf_probes *p, size_t i)
{
	struct bpf_link **link;

	if (p->kept_link[i] >= 0)
		return p->kept_link[i];
	link = probes_skel_link(p->skel, probes_progs[i].name);
	return link && *link ? bpf_link__fd(*link) : -1;
}

static int hand(struct bpf_probes *p, int fd)
{
	if (fd < 0 || p->n_handed >= sizeof(p->handed) / sizeof(p->handed[0]) ||
	    fcntl(fd, F_SETFD, 0) < 0)
		return -EBADF;
	p->handed[p->n_handed++] = fd;
	return 0;
}

int probes_write_loaded(const struct bpf_probes *p, FILE *f)
{
	const struct bpf_object_skeleton *sk = p->skel->skeleton;

	fprintf(f, "bpf %d %llx tgid=0 sigaction=%d", HANDOVER_VERSION,
		(unsigned long long)bpf_probes_identity(), p->sigaction ? 1 : 0);
	for (int i = 0; i < sk->map_cnt; i++) {
		int fd = bpf_map__fd(*sk->maps[i].map);

		if (fd < 0)
			return -EBADF;
		fprintf(f, " map.%s=%d", sk->maps[i].name, fd);
	}
	for (size_t i = 0; i < N_PROGS; i++) {
		const struct prog_info *pi = &probes_progs[i];
		struct bpf_program *prog;
		int fd;

		if (p->part_why[pi->part][0])
			continue; /* not loaded: the bpfwhy line says why */
		prog = bpf_object__find_program_by_name(p->skel->obj, pi->name);
		fd = prog ? bpf_program__fd(prog) : -1;
		if (fd < 0)
			return -EBADF;
		fprintf(f, " prog.%s=%d", pi->name, fd);
	}
	fprintf(f, " pin=%s\n", p->pin_dir);
	for (int i = 0; i < BPF_PART_MAX; i++)
		if (p->part_why[i][0])
			fprintf(f, "bpfwhy %s %s\n", bpf_part_name(i), p->part_why[i]);
	return ferror(f) ? -EIO : 0;
}

int bpf_probes_handover(struct bpf_probes *p, FILE *f)
{
	const struct bpf_object_skeleton *sk;
	int r = 0;

	if (!p || p->loading || !p->rb || !p->skel || !p->bss)
		return -ENODEV;
	sk = p->skel->skeleton;
	p->n_handed = 0;
	fprintf(f, "bpf %d %llx tgid=%d sigaction=%d", HANDOVER_VERSION,
		(unsigned long long)bpf_probes_identity(), (int)p->self_tgid, p->sigaction ? 1 : 0);
	for (int i = 0; i < sk->map_cnt && r == 0; i++) {
		int fd = bpf_map__fd(*sk->maps[i].map);

		r = hand(p, fd);
		fprintf(f, " map.%s=%d", sk->maps[i].name, fd);
	}
	for (size_t i = 0; i < N_PROGS && r == 0; i++) {
		const struct prog_info *pi = &probes_progs[i];
		const char *kind = "link";
		int fd = -1;

		if (pi->use == PROG_KEPT) {
			fd = link_fd(p, i);
		} else if (pi->use == PROG_WATCH && !p->part_why[pi->part][0]) {
			kind = "prog";
			fd = p->serving_prog_fd;
		}
		if (fd >= 0) {
			r = hand(p, fd);
			fprintf(f, " %s.%s=%d", kind, pi->name, fd);
		}
	}
	fprintf(f, " pin=%s\n", p->pin_dir);
	for (int i = 0; i < BPF_PART_MAX; i++)
		if (p->part_why[i][0])
			fprintf(f, "bpfwhy %s %s\n", bpf_part_name(i), p->part_why[i]);
	if (r < 0 || ferror(f)) {
		bpf_probes_handover_undo(p);
		return r < 0 ? r : -EIO;
	}
	return 0;
}

void bpf_probes_handover_undo(struct bpf_probes *p)
{
	if (!p)
		return;
	for (unsigned i = 0; i < p->n_handed; i++)
		(void)fcntl(p->handed[i], F_SETFD, FD_CLOEXEC);
	p->n_handed = 0;
}
