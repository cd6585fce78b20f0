/* `sigvisor signals`; see dispositions.h. Everything here runs in the command's own
 * process: the arbiter is asked only for its workers ("status json"), and the reading
 * of /proc, process by process, never happens on its loop. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control.h"
#include "control_internal.h"
#include "dispositions.h"
#include "exitstatus.h"
#include "json.h"
#include "provenance.h"
#include "signames.h"
#include "timeutil.h"

/* The signals an operator or a supervisor sends to control a worker, always shown. */
static const int control_signals[] = {SIGHUP,  SIGINT,	 SIGQUIT, SIGTERM, SIGUSR1,
				      SIGUSR2, SIGWINCH, SIGTTIN, SIGTTOU};
#define N_CONTROL (sizeof(control_signals) / sizeof(control_signals[0]))

/* The ones among them that are meant to change what a process does, not to end it
 * (gunicorn's reload, reopen, upgrade, scale): one that kills a process instead is what
 * the `!` column marks. */
bool dispositions_meant_to_control(int sig)
{
	return sig == SIGHUP || sig == SIGUSR1 || sig == SIGUSR2 || sig == SIGWINCH ||
	       sig == SIGTTIN || sig == SIGTTOU;
}

/* A tree larger than this is cut, and says so: the command's memory stays bounded. */
#define SIGNALS_MAX_PROCS 65536

int disposition_of(const struct sigmasks *m, int sig)
{
	uint64_t bit = 1ULL << (sig - 1);
	int d;

	/* KILL and STOP cannot be blocked, ignored or caught, whatever the masks say. */
	if (sig == SIGKILL)
		return DISP_DEFAULT_KILLS;
	if (sig == SIGSTOP)
		return DISP_DEFAULT_STOPS;
	if (m->cgt & bit)
		d = DISP_HANDLER;
	else if (m->ign & bit)
		d = DISP_IGNORED;
	else if (sig == SIGCHLD || sig == SIGCONT || sig == SIGURG || sig == SIGWINCH)
		d = DISP_DEFAULT_IGNORED; /* CONT's default continues a stopped process */
	else if (sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU)
		d = DISP_DEFAULT_STOPS;
	else
		d = DISP_DEFAULT_KILLS; /* terminate, or dump core (QUIT, ABRT, ...) */
	/* Blocked, a signal waits pending, even an ignored one: the kernel keeps it since
	 * the disposition may change before it is unblocked. */
	return m->blk & bit ? d | DISP_BLOCKED : d;
}

const char *disposition_name(int d)
{
	static const char *const plain[] = {
		[DISP_HANDLER] = "handler",
		[DISP_IGNORED] = "ignored",
		[DISP_DEFAULT_KILLS] = "default: kills",
		[DISP_DEFAULT_IGNORED] = "default: ignored",
		[DISP_DEFAULT_STOPS] = "default: stops",
	};
	static const char *const blocked[] = {
		[DISP_HANDLER] = "blocked (then: handler)",
		[DISP_IGNORED] = "blocked (then: ignored)",
		[DISP_DEFAULT_KILLS] = "blocked (then: default: kills)",
		[DISP_DEFAULT_IGNORED] = "blocked (then: default: ignored)",
		[DISP_DEFAULT_STOPS] = "blocked (then: default: stops)",
	};
	int base = d & ~DISP_BLOCKED;

	if (base < 0 || base > DISP_DEFAULT_STOPS)
		return "?";
	return d & DISP_BLOCKED ? blocked[base] : plain[base];
}

/* The same, in a text cell. */
static const char *disposition_cell(int d)
{
	static const char *const plain[] = {
		[DISP_HANDLER] = "handler",	[DISP_IGNORED] = "ignored",
		[DISP_DEFAULT_KILLS] = "kills", [DISP_DEFAULT_IGNORED] = "-",
		[DISP_DEFAULT_STOPS] = "stops",
	};
	static const char *const blocked[] = {
		[DISP_HANDLER] = "b:handler",	  [DISP_IGNORED] = "b:ignored",
		[DISP_DEFAULT_KILLS] = "b:kills", [DISP_DEFAULT_IGNORED] = "b:-",
		[DISP_DEFAULT_STOPS] = "b:stops",
	};
	int base = d & ~DISP_BLOCKED;

	if (base < 0 || base > DISP_DEFAULT_STOPS)
		return "?";
	return d & DISP_BLOCKED ? blocked[base] : plain[base];
}

/* The value of the "Key:\t" line of a /proc/PID/status text, or NULL. */
static const char *status_field(const char *text, const char *key)
{
	size_t klen = strlen(key);

	for (const char *s = text; s && *s; s = strchr(s, '\n'), s = s ? s + 1 : NULL)
		if (strncmp(s, key, klen) == 0 && s[klen] == ':')
			return s + klen + 1 + strspn(s + klen + 1, " \t");
	return NULL;
}

static int mask_field(const char *text, const char *key, uint64_t *ret)
{
	const char *v = status_field(text, key);
	char *end;

	if (!v || !isxdigit((unsigned char)*v))
		return -EINVAL;
	*ret = strtoull(v, &end, 16);
	return 0;
}

int dispositions_parse_status(const char *text, struct sigmasks *m, pid_t *ret_ppid,
			      char *ret_state, char *comm, size_t len)
{
	const char *name = status_field(text, "Name"), *ppid = status_field(text, "PPid"),
		   *state = status_field(text, "State");
	struct sigmasks mm;
	size_t n;

	if (!name || !ppid || !state || mask_field(text, "SigBlk", &mm.blk) < 0 ||
	    mask_field(text, "SigIgn", &mm.ign) < 0 || mask_field(text, "SigCgt", &mm.cgt) < 0)
		return -EINVAL;
	n = strcspn(name, "\n");
	if (n >= len)
		n = len - 1;
	memcpy(comm, name, n);
	comm[n] = '\0';
	*m = mm;
	*ret_ppid = (pid_t)atoi(ppid);
	*ret_state = *state;
	return 0;
}

/* -- the command -------------------------------------------------------------------- */

/* Past the JSON value at s (an object, array, string or scalar of a status answer), or
 * NULL if it does not end. Strings are skipped whole, so a worker's STATUS= text may
 * hold any bracket. */
static const char *skip_value(const char *s)
{
	int depth = 0;

	do {
		if (*s == '"') {
			for (s++; *s && *s != '"'; s++)
				if (*s == '\\' && s[1])
					s++;
			if (!*s)
				return NULL;
		} else if (*s == '{' || *s == '[') {
			depth++;
		} else if (*s == '}' || *s == ']') {
			depth--;
		} else if (!*s) {
			return NULL;
		}
		s++;
	} while (depth > 0);
	return s;
}

/* The workers of a "status json" answer (arbiter/status.c writes each as
 * {"id":N,"pid":N,"generation":N,...}) and the arbiter's pid. 0 or -EINVAL. */
static int parse_workers(const char *json, struct disp_worker **ret, size_t *ret_n,
			 pid_t *ret_arbiter)
{
	const char *s = strstr(json, "\"workers\":[");
	struct disp_worker *w = NULL;
	size_t n = 0;
	int apid;

	if (!s || sscanf(json, "{\"version\":%*[^,],\"pid\":%d", &apid) != 1)
		return -EINVAL;
	for (s += strlen("\"workers\":["); *s && *s != ']';) {
		struct disp_worker one;
		struct disp_worker *nw;
		int pid;

		if (sscanf(s, "{\"id\":%u,\"pid\":%d,\"generation\":%u", &one.id, &pid,
			   &one.generation) != 3)
			goto bad;
		one.pid = (pid_t)pid;
		s = skip_value(s);
		if (!s)
			goto bad;
		nw = realloc(w, (n + 1) * sizeof(*w));
		if (!nw)
			goto bad;
		w = nw;
		w[n++] = one;
		if (*s == ',')
			s++;
	}
	if (*s != ']')
		goto bad;
	*ret = w;
	*ret_n = n;
	*ret_arbiter = (pid_t)apid;
	return 0;
bad:
	free(w);
	return -EINVAL;
}

/* /proc/PID/status read whole into buf: 0, or -errno (ENOENT/ESRCH: exited). */
static int read_status(pid_t pid, char *buf, size_t len)
{
	char p[64];
	ssize_t n;
	int fd;

	snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

static bool add_row(struct disp_procs *rs, const struct disp_proc *r)
{
	if (rs->n == SIGNALS_MAX_PROCS) {
		rs->cut = true;
		return false;
	}
	if (rs->n == rs->cap) {
		size_t cap = rs->cap ? rs->cap * 2 : 64;
		struct disp_proc *nr = realloc(rs->r, cap * sizeof(*nr));

		if (!nr)
			return false;
		rs->r = nr;
		rs->cap = cap;
	}
	rs->r[rs->n++] = *r;
	return true;
}

/* The children of pid, from every thread's children file (a child is listed under the
 * thread that forked it), appended to rs as rows of w with only pid and ppid set. */
static void add_children(struct disp_procs *rs, pid_t pid, const struct disp_worker *w)
{
	char p[96];
	struct dirent *de;
	DIR *d;

	snprintf(p, sizeof(p), "/proc/%d/task", (int)pid);
	d = opendir(p);
	if (!d)
		return; /* exited */
	while ((de = readdir(d))) {
		char buf[8192];
		ssize_t n;
		int fd;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		snprintf(p, sizeof(p), "/proc/%d/task/%d/children", (int)pid, atoi(de->d_name));
		fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		for (char *s = buf, *end;; s = end) {
			long c = strtol(s, &end, 10);
			struct disp_proc r = {.pid = (pid_t)c,
					      .ppid = pid,
					      .worker = w->id,
					      .generation = w->generation};

			if (end == s || !add_row(rs, &r))
				break;
		}
	}
	closedir(d);
}

/* Every process of w's tree, w first, then what each forked, breadth first; each row
 * filled from its /proc/PID/status as it is reached. A process that exited meanwhile,
 * or a zombie (no signal matters to it any more), is left out. */
void dispositions_walk(struct disp_procs *rs, const struct disp_worker *w, pid_t arbiter)
{
	struct disp_proc top = {.pid = w->pid, .worker = w->id, .generation = w->generation};
	size_t i = rs->n;

	if (!add_row(rs, &top))
		return;
	while (i < rs->n) {
		struct disp_proc *r = &rs->r[i];
		char buf[8192], state = 0;
		pid_t ppid = -1;
		bool keep = read_status(r->pid, buf, sizeof(buf)) == 0 &&
			    dispositions_parse_status(buf, &r->m, &ppid, &state, r->comm,
						      sizeof(r->comm)) == 0 &&
			    state != 'Z' && state != 'X';

		/* The worker is the arbiter's child, and each other process the child of
		 * the one it was listed under: if not, its pid is another process's here
		 * (we are in another PID namespace) or was reused as we looked. */
		if (keep && r->pid == w->pid && ppid != arbiter) {
			fprintf(stderr,
				"sigvisor signals: worker %u: pid %d here is not the arbiter's "
				"child (another PID namespace?): skipped\n",
				w->id, (int)w->pid);
			keep = false;
		} else if (keep && r->pid != w->pid && ppid != r->ppid) {
			keep = false;
		}
		if (!keep) {
			memmove(r, r + 1, (rs->n - i - 1) * sizeof(*r));
			rs->n--;
			continue;
		}
		r->ppid = ppid;
		add_children(rs, r->pid, w);
		i++;
	}
}

bool dispositions_killable(const struct disp_procs *rs, size_t i, int sig, pid_t *ret_by)
{
	const struct disp_proc *r = &rs->r[i];
	pid_t up = r->ppid;

	if (!dispositions_meant_to_control(sig) || disposition_of(&r->m, sig) != DISP_DEFAULT_KILLS)
		return false;
	/* Up the tree, within the worker: rows are in walk order, a parent before its
	 * children, so the search goes backwards; the worker's own parent (the arbiter) is
	 * not a row. Each step finds an earlier row: it ends. */
	for (size_t k = i; k-- > 0;) {
		const struct disp_proc *a = &rs->r[k];

		if (a->worker != r->worker || a->generation != r->generation)
			break;
		if (a->pid != up)
			continue;
		if ((disposition_of(&a->m, sig) & ~DISP_BLOCKED) == DISP_HANDLER) {
			*ret_by = a->pid;
			return true;
		}
		up = a->ppid;
	}
	return false;
}

/* The signals shown for a process: the control signals, then any other it catches. */
static size_t shown_signals(const struct disp_proc *r, int *sigs)
{
	size_t n = 0;

	for (size_t i = 0; i < N_CONTROL; i++)
		sigs[n++] = control_signals[i];
	for (int sig = 1; sig <= 64; sig++) {
		bool control = false;

		for (size_t i = 0; i < N_CONTROL; i++)
			control = control || control_signals[i] == sig;
		if (!control && (r->m.cgt & (1ULL << (sig - 1))))
			sigs[n++] = sig;
	}
	return n;
}

/* -- provenance, from the probes' pinned maps (provenance.h) ------------------------ */

/* The JSON string that starts at s (its opening quote) into out: the escapes a status
 * answer uses for a path or a reason (json_fputs); \uXXXX becomes '?'. */
static void json_string(const char *s, char *out, size_t len)
{
	size_t n = 0;

	if (*s++ != '"') {
		out[0] = '\0';
		return;
	}
	for (; *s && *s != '"' && n + 1 < len; s++) {
		if (*s == '\\' && s[1]) {
			s++;
			if (*s == 'u') {
				for (int k = 0; k < 4 && s[1]; k++)
					s++;
				out[n++] = '?';
				continue;
			}
			out[n++] = *s == 'n' ? '\n' : *s == 't' ? '\t' : *s;
			continue;
		}
		out[n++] = *s;
	}
	out[n] = '\0';
}

/* The string value of "key": right after from (within the object it starts), or "". */
static void json_field(const char *from, const char *key, char *out, size_t len)
{
	char pat[64];
	const char *end = from ? skip_value(from) : NULL, *v;

	out[0] = '\0';
	if (!from)
		return;
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	v = strstr(from, pat);
	if (v && (!end || v < end))
		json_string(v + strlen(pat), out, len);
}

/* The probes' maps, if `sigvisor status` says where they are pinned and the parts
 * that fill them run; else NULL and why there is no provenance. A status string cannot
 * hold "bpf":{ unescaped, so the first one is the arbiter's own object. */
static struct provenance *open_provenance(const char *answer, char *why, size_t whylen)
{
	const char *bpf = strstr(answer, "\"bpf\":{"), *parts;
	char state[32], dir[4096], reason[512];

	if (!bpf) {
		snprintf(why, whylen, "the arbiter does not say where its probes are");
		return NULL;
	}
	bpf += strlen("\"bpf\":");
	json_field(bpf, "state", state, sizeof(state));
	if (strcmp(state, "on") != 0) {
		json_field(bpf, "reason", reason, sizeof(reason));
		snprintf(why, whylen, "the eBPF probes are %s%s%s%s", state[0] ? state : "off",
			 reason[0] ? " (" : "", reason, reason[0] ? ")" : "");
		return NULL;
	}
	parts = strstr(bpf, "\"sigaction\":{");
	if (parts) {
		parts += strlen("\"sigaction\":");
		json_field(parts, "state", state, sizeof(state));
		if (strcmp(state, "off") == 0) {
			json_field(parts, "reason", reason, sizeof(reason));
			snprintf(why, whylen, "the probes' sigaction counter is off (%s)", reason);
			return NULL;
		}
	}
	json_field(bpf, "pin", dir, sizeof(dir));
	if (!dir[0]) {
		json_field(bpf, "pin_reason", reason, sizeof(reason));
		snprintf(why, whylen, "the probes' maps are not pinned%s%s", reason[0] ? ": " : "",
			 reason);
		return NULL;
	}
	return provenance_read(dir, why, whylen);
}

/* The story of sig in r, if it is worth telling: a handler or an ignore somewhere in it
 * (set, inherited, or reset). Defaults passed down from default are every signal's
 * story and would drown the one that matters. */
static bool notable(const struct provenance *pv, const struct disp_proc *r, int sig,
		    struct prov_answer *a)
{
	if (provenance_of(pv, r->pid, sig, a) < 0)
		return false;
	return ((a->inherited || a->inh_unknown) && a->inh_kind != sig_dfl) ||
	       (a->own && a->own_kind != sig_dfl);
}

static void json_provenance(const struct provenance *pv, const struct disp_proc *r, const int *sigs,
			    size_t n)
{
	bool first = true;

	printf(",\"provenance\":{");
	for (size_t k = 0; k < n; k++) {
		struct prov_answer a;

		if (!notable(pv, r, sigs[k], &a))
			continue;
		printf("%s\"%s\":{\"text\":", first ? "" : ",", signal_name(sigs[k]));
		first = false;
		json_fputs(stdout, a.text);
		if (a.inherited || a.inh_unknown) {
			printf(",\"inherited\":{\"from\":%d,\"kind\":\"%s\",", (int)a.inh_pid,
			       a.inh_kind == sig_dfl   ? "default"
			       : a.inh_kind == sig_ign ? "ignore"
						       : "handler");
			if (a.inherited)
				printf("\"set_before_fork_ms\":%.3f",
				       (double)a.inh_before_ns / 1e6);
			else
				printf("\"set_after_fork_ms\":%.3f,\"known\":false",
				       (double)-a.inh_before_ns / 1e6);
			if (a.exec_pid)
				printf(",\"reset_by_exec_of\":%d", (int)a.exec_pid);
			printf("}");
		}
		if (a.own)
			printf(",\"set\":{\"kind\":\"%s\",\"after_fork_ms\":%.3f}",
			       a.own_kind == sig_dfl   ? "default"
			       : a.own_kind == sig_ign ? "ignore"
						       : "handler",
			       (double)a.own_after_ns / 1e6);
		if (a.own_exec)
			printf(",\"exec_after_fork_ms\":%.3f", (double)a.own_exec_after_ns / 1e6);
		printf("}");
	}
	printf("}");
}

static void text_provenance(const struct provenance *pv, const struct disp_proc *r, const int *sigs,
			    size_t n)
{
	for (size_t k = 0; k < n; k++) {
		struct prov_answer a;

		if (notable(pv, r, sigs[k], &a))
			printf("%28s%s %s\n", "", signal_name(sigs[k]), a.text);
	}
}

static void print_json(const struct disp_procs *rs, const struct provenance *pv, const char *why)
{
	/* Additive: without the probes, the processes are what they were. */
	printf("{\"provenance\":{\"available\":%s", pv ? "true" : "false");
	if (!pv) {
		printf(",\"reason\":");
		json_fputs(stdout, why);
	}
	printf("},\"processes\":[");
	for (size_t i = 0; i < rs->n; i++) {
		const struct disp_proc *r = &rs->r[i];
		int sigs[64 + N_CONTROL];
		size_t n = shown_signals(r, sigs);

		printf("%s{\"pid\":%d,\"worker\":%u,\"generation\":%u,\"parent\":%d,\"comm\":",
		       i ? "," : "", (int)r->pid, r->worker, r->generation, (int)r->ppid);
		json_fputs(stdout, r->comm);
		printf(",\"signals\":{");
		for (size_t k = 0; k < n; k++)
			printf("%s\"%s\":\"%s\"", k ? "," : "", signal_name(sigs[k]),
			       disposition_name(disposition_of(&r->m, sigs[k])));
		printf("}");
		if (pv)
			json_provenance(pv, r, sigs, n);
		printf("}");
	}
	printf("]}\n");
}

/* The signals meant to control r that kill it instead, as " USR2 HUP", in buf. */
static bool killed_by_control(const struct disp_proc *r, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < N_CONTROL; i++) {
		int sig = control_signals[i];

		if (dispositions_meant_to_control(sig) &&
		    disposition_of(&r->m, sig) == DISP_DEFAULT_KILLS && off < len)
			off += (size_t)snprintf(buf + off, len - off, " %s", signal_name(sig));
	}
	return off > 0;
}

static void print_text(const struct disp_procs *rs, const struct provenance *pv, const char *why)
{
	unsigned long marked = 0;

	printf("What each signal does now (handler; ignored; kills, stops, -: the default "
	       "action kills, stops, ignores; b:X blocked by the main thread, X once "
	       "unblocked)\n");
	/* Said once, here: the closing line stays the summary. */
	if (pv)
		printf("Under a process: who set each disposition and when, relative to its fork "
		       "(eBPF probes: the last sigaction of each process)\n");
	else
		printf("No provenance (who set each disposition, when): %s\n", why);
	for (size_t i = 0; i < rs->n; i++) {
		const struct disp_proc *r = &rs->r[i];
		int sigs[64 + N_CONTROL];
		size_t n = shown_signals(r, sigs);
		char kills[64];

		if (i == 0 || r->worker != rs->r[i - 1].worker ||
		    r->generation != rs->r[i - 1].generation) {
			printf("\nworker %u, generation %u:\n%-1s %8s %8s %-15s", r->worker,
			       r->generation, "!", "PID", "PPID", "COMM");
			for (size_t k = 0; k < N_CONTROL; k++)
				printf(" %-9s", signal_name(control_signals[k]));
			printf(" other handlers\n");
		}
		marked += killed_by_control(r, kills, sizeof(kills));
		printf("%-1s %8d %8d %-15.15s", kills[0] ? "!" : " ", (int)r->pid, (int)r->ppid,
		       r->comm);
		/* the last column unpadded: no trailing blanks */
		for (size_t k = 0; k < N_CONTROL; k++)
			printf(k + 1 < n ? " %-9s" : " %s",
			       disposition_cell(disposition_of(&r->m, sigs[k])));
		for (size_t k = N_CONTROL; k < n; k++)
			printf("%s%s", k == N_CONTROL ? " " : ",", signal_name(sigs[k]));
		printf("\n");
		if (pv)
			text_provenance(pv, r, sigs, n);
	}
	if (!rs->n) {
		printf("\nno workers\n");
		return;
	}
	if (!marked) {
		printf("\nno process dies on HUP, USR1, USR2, WINCH, TTIN or TTOU\n");
		return;
	}
	printf("\n! %lu process%s die%s on a signal meant to control %s:", marked,
	       marked == 1 ? "" : "es", marked == 1 ? "s" : "", marked == 1 ? "it" : "them");
	for (size_t i = 0, k = 0; i < rs->n; i++) {
		char kills[64];

		if (killed_by_control(&rs->r[i], kills, sizeof(kills)))
			printf("%s pid %d (worker %u, %s) on%s", k++ ? ";" : "", (int)rs->r[i].pid,
			       rs->r[i].worker, rs->r[i].comm, kills);
	}
	printf("\n");
}

int signals_main(int argc, char **argv)
{
	struct control_client_args args = {.name = "sigvisor signals", .timeout_ms = 10000};
	const char *control;
	bool json;
	uint64_t timeout_ms;
	struct disp_worker *w = NULL;
	struct disp_procs rs = {0};
	char *answer, path[PATH_MAX], pv_why[640] = "";
	struct provenance *pv;
	size_t len, n;
	pid_t arbiter;
	int fd, r;

	for (int i = 2; i < argc; i++) {
		r = control_client_arg(&args, argc, argv, &i);
		if (r < 0)
			return EXIT_USAGE;
		if (r == 0)
			return control_client_usage(&args, argv[i], args.name);
	}
	control = args.control;
	json = args.json;
	timeout_ms = args.timeout_ms;
	/* Found and asked as `sigvisor status` does, under one deadline (control.h). */
	control_client_begin("sigvisor signals", timeout_ms);
	fd = control_client_connect(control, path, sizeof(path));
	if (fd < 0)
		return EXIT_FATAL;
	r = control_client_ask(fd, path, "status json\n", &answer, &len);
	close(fd);
	if (r < 0)
		return EXIT_FATAL;
	if (parse_workers(answer, &w, &n, &arbiter) < 0) {
		fprintf(stderr, "sigvisor signals: the arbiter's answer has no list of workers "
				"this sigvisor can read (another version?)\n");
		free(answer);
		return EXIT_FATAL;
	}
	pv = open_provenance(answer, pv_why, sizeof(pv_why));
	free(answer);
	for (size_t i = 0; i < n && !rs.cut; i++)
		dispositions_walk(&rs, &w[i], arbiter);
	if (rs.cut)
		fprintf(stderr, "sigvisor signals: more than %d processes: the rest left out\n",
			SIGNALS_MAX_PROCS);
	if (json)
		print_json(&rs, pv, pv_why);
	else
		print_text(&rs, pv, pv_why);
	provenance_free(pv);
	free(w);
	free(rs.r);
	return fflush(stdout) == 0 ? EXIT_OK : EXIT_FATAL;
}
