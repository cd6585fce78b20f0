/* The control socket's commands that act, as the arbiter carries them out: `sigvisor
 * reopen` (USR1's work, which the signal uses too), `sigvisor stop [--quick]` (begun by
 * the loop after the batch that asked, arbiter.c), `sigvisor kill-worker` (through the
 * worker's pidfd, refusing a signal its disposition makes deadly), and the answer of
 * `sigvisor config`. Each answers at once; the client waits for what follows
 * (control_cmds.c).
 *
 * An "ok" answer is "key=value ...", a tab, and a sentence: the client reads the
 * fields for --json and prints the sentence. Nothing here waits: the one file read is
 * /proc/PID/status of our own child, whose mm it does not touch. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arbiter.h"
#include "dispositions.h"
#include "json.h"
#include "log.h"
#include "safefile.h"
#include "signames.h"

/* The view's "failed" (-2), as opposed to "refused" (-1). */
#define COMMAND_FAILED (-2)

int arbiter_reopen_logs(struct arbiter *a, const struct control_peer *peer, char *ans,
			size_t anslen)
{
	const char *file = a->settings->log_file;
	struct pool_signalled sent;
	char who[96];
	int r = 0;

	/* Before the reopen: the line goes to the file being rotated, with the rest. */
	if (peer)
		control_log_command("reopen", peer, "applied", "control: reopen from %s",
				    control_peer_words(peer, who, sizeof(who)));

	if (file) {
		arbiter_unwatch_log(a);
		r = log_open(file);
		if (r < 0)
			log_error("cannot reopen %s, keeping the old one: %s", file,
				  safefile_why());
		else
			log_info("reopened log file %s", file);
	}
	pool_signal_all(&a->pool, SIGUSR1, &sent);
	if (!ans)
		return r < 0 ? -1 : 0;
	if (r < 0) {
		snprintf(ans, anslen,
			 "cannot reopen %s, keeping the old one: %s (USR1 sent to %u workers)",
			 file, safefile_why(), sent.sent);
		return COMMAND_FAILED;
	}
	snprintf(ans, anslen,
		 "log=%s sent=%u starting=%u would_kill=%u\t%s%s; USR1 sent to %u workers%s",
		 file ? "reopened" : "none", sent.sent, sent.starting, sent.would_kill,
		 file ? "reopened " : "no log file to reopen (the log goes to stderr)",
		 file ? file : "", sent.sent,
		 sent.would_kill ? " (not to those it would kill: no handler; see the log)"
		 : sent.starting ? " (not to those still starting)"
				 : "");
	return 0;
}

struct action_context arbiter_action_context(const struct arbiter *a)
{
	return (struct action_context){
		.phase = a->phase,
		.reloading = reload_busy(a),
		.upgrading = a->upgrade.check_pid || a->upgrade.exec_wanted,
		.daemon = a->settings->daemon,
	};
}

int arbiter_stop(struct arbiter *a, const struct control_peer *peer, bool quick, char *ans,
		 size_t anslen)
{
	struct action_context ctx = arbiter_action_context(a);
	const char *why, *how = quick ? "quick" : "graceful";
	enum arbiter_action act = signal_action(quick ? SIGQUIT : SIGTERM, SI_USER, &ctx, &why);
	char who[96];
	bool already = act != ACTION_SHUTDOWN_GRACEFUL && act != ACTION_SHUTDOWN_QUICK;
	const char *what = already ? "already shutting down"
			   : quick ? "quick shutdown begun"
				   : "graceful shutdown begun";

	control_peer_words(peer, who, sizeof(who));
	/* Ignored only while a shutdown is under way: what was asked for comes anyway. */
	if (!already && (a->stop_asked == STOP_NONE || quick))
		a->stop_asked = quick ? STOP_QUICK : STOP_GRACEFUL;
	control_log_command("stop", peer, "applied", "control: stop (%s) from %s: %s", how, who,
			    already ? "already shutting down" : "shutting down");
	snprintf(ans, anslen,
		 "pid=%d mode=%s already=%d graceful_timeout_ms=%llu shutdown_delay_ms=%llu\t%s",
		 (int)a->pid, how, already, (unsigned long long)a->settings->graceful_timeout_ms,
		 quick ? 0ULL : (unsigned long long)a->settings->shutdown_delay_ms, what);
	return 0;
}

/* The signals that are meant to end a worker: never refused for its disposition. */
static bool stops_worker(int sig)
{
	return sig == SIGTERM || sig == SIGINT || sig == SIGQUIT || sig == SIGKILL;
}

/* The worker a request names: alive, by pid, or by id when one worker alone has it
 * (a reload's two generations may both have an id). NULL with why. */
static struct worker *find_worker(struct pool *p, const struct control_kill *req, char *why,
				  size_t len)
{
	struct worker *found = NULL, *other = NULL;
	size_t off = 0;

	for (size_t i = 0; i < p->n; i++) {
		struct worker *w = p->workers[i];

		if (!worker_is_alive(w) || (req->by_pid ? (unsigned)w->pid : w->id) != req->n)
			continue;
		if (found)
			other = w;
		else
			found = w;
	}
	if (found && !other)
		return found;
	if (other) {
		snprintf(why, len,
			 "worker %u is ambiguous: generation %u (pid %d) and generation %u (pid "
			 "%d); name it by pid (pid:%d)",
			 req->n, found->generation, found->pid, other->generation, other->pid,
			 other->pid);
		return NULL;
	}
	off = (size_t)snprintf(why, len, "no worker %s%u (", req->by_pid ? "with pid " : "",
			       req->n);
	for (size_t i = 0, k = 0; i < p->n && off < len; i++)
		if (worker_is_alive(p->workers[i]))
			off += (size_t)snprintf(why + off, len - off, "%s%u (pid %d)",
						k++ ? ", " : "workers: ", p->workers[i]->id,
						p->workers[i]->pid);
	if (off < len)
		snprintf(why + off, len - off, "%s)", off && why[off - 1] == '(' ? "none" : "");
	return NULL;
}

/* The masks of our own child pid: 0 or -errno. Not its cmdline or maps: those take
 * its mm lock, which it may hold (issue 23); status does not. */
static int child_masks(pid_t pid, struct sigmasks *m)
{
	char path[64], text[4096], state, comm[32];
	size_t len = 0;
	ssize_t n;
	pid_t ppid;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (len < sizeof(text) - 1 && (n = read(fd, text + len, sizeof(text) - 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	text[len] = '\0';
	return dispositions_parse_status(text, m, &ppid, &state, comm, sizeof(comm));
}

int arbiter_kill_worker(struct arbiter *a, const struct control_peer *peer,
			const struct control_kill *req, char *ans, size_t anslen)
{
	int sig = signal_from_name(req->sig), d = -1, r;
	bool ends, replaced;
	struct sigmasks m;
	struct worker *w;
	char who[96], asked[64];

	control_peer_words(peer, who, sizeof(who));
	snprintf(asked, sizeof(asked), "%s%u %s%s", req->by_pid ? "pid:" : "", req->n, req->sig,
		 req->force ? " force" : "");
	w = NULL;
	if (sig <= 0 || sig > 64)
		snprintf(ans, anslen, "unknown signal '%s'", req->sig);
	else if (sig == SIGCHLD)
		snprintf(ans, anslen, "SIGCHLD to a worker says nothing a worker can use");
	else
		w = find_worker(&a->pool, req, ans, anslen);
	if (w && (w->state == WORKER_STOPPING || w->state == WORKER_KILLING) && sig != SIGKILL) {
		snprintf(ans, anslen, "worker %u (pid %d) is already stopping (SIG%s sent)", w->id,
			 w->pid, signal_name(w->stop_signal));
		w = NULL;
	}
	if (w && !stops_worker(sig)) {
		r = child_masks(w->pid, &m);
		if (r < 0) {
			snprintf(ans, anslen, "cannot read worker %u (pid %d)'s signal masks: %s",
				 w->id, w->pid, strerror(-r));
			w = NULL;
		} else if (m.blk == a->blocked_mask && !req->force) {
			/* still in our code between clone3 and exec: it would wait there and
			 * find the default action once exec'd (pool.c's forward_verdict) */
			snprintf(ans, anslen,
				 "worker %u (pid %d) is still starting: SIG%s would wait and then "
				 "kill it (--force sends it anyway)",
				 w->id, w->pid, signal_name(sig));
			w = NULL;
		} else {
			d = disposition_of(&m, sig);
			if (d == DISP_DEFAULT_KILLS && !req->force) {
				snprintf(ans, anslen,
					 "%s would kill worker %u (pid %d): default action, no "
					 "handler (--force sends it anyway)",
					 signal_name(sig), w->id, w->pid);
				w = NULL;
			}
		}
	}
	if (!w) {
		control_log_command("kill-worker", peer, "refused",
				    "control: kill-worker %s from %s refused: %s", asked, who, ans);
		return -1;
	}
	ends = stops_worker(sig) || d == DISP_DEFAULT_KILLS;
	/* A worker of the current generation is replaced when it ends, unless the pool is
	 * shutting down; an old generation's is on its way out anyway. */
	replaced = ends && a->phase == PHASE_RUNNING && w->generation == a->pool.generation;
	if (stops_worker(sig)) {
		pool_stop_worker(&a->pool, w, sig);
	} else if ((r = pool_send_worker(w, sig)) < 0) {
		snprintf(ans, anslen, "cannot send SIG%s to worker %u (pid %d): %s",
			 signal_name(sig), w->id, w->pid, strerror(-r));
		control_log_command("kill-worker", peer, "refused",
				    "control: kill-worker %s from %s failed: %s", asked, who, ans);
		return COMMAND_FAILED;
	}
	control_log_command(
		"kill-worker", peer, "applied",
		"control: sent SIG%s to worker %u (pid %d, generation %u) (kill-worker %s from "
		"%s)%s",
		signal_name(sig), w->id, w->pid, w->generation, asked, who,
		d == DISP_DEFAULT_KILLS ? ": forced, its default action kills it" : "");
	snprintf(ans, anslen,
		 "id=%u pid=%d generation=%u signal=%s ends=%d replaced=%d\tsent SIG%s to worker "
		 "%u (pid %d, generation %u)%s",
		 w->id, w->pid, w->generation, signal_name(sig), ends, replaced, signal_name(sig),
		 w->id, w->pid, w->generation,
		 d == DISP_DEFAULT_KILLS ? " (forced: no handler, its default action kills it)"
					 : "");
	return 0;
}

/* Where a setting came from, in words, and in JSON's "source". */
static const char *source_word(enum option_source s)
{
	switch (s) {
	case SOURCE_CMDLINE:
		return "flag";
	case SOURCE_ENV:
		return "env";
	case SOURCE_CONFIG:
		return "file";
	case SOURCE_DEFAULT:
		break;
	}
	return "default";
}

static void text_origin(FILE *f, const struct settings *s, const struct option_origin *o)
{
	switch (o->source) {
	case SOURCE_CMDLINE:
		fprintf(f, "command line");
		break;
	case SOURCE_ENV:
		fprintf(f, "env SIGVISOR_ARGS");
		break;
	case SOURCE_CONFIG:
		if (o->line)
			fprintf(f, "config file %s:%u", s->config, o->line);
		else
			fprintf(f, "config file %s", s->config);
		break;
	case SOURCE_DEFAULT:
		fprintf(f, "default");
		break;
	}
}

int arbiter_render_config(struct arbiter *a, bool json, char **ret_buf, size_t *ret_len)
{
	const struct settings *s = a->settings;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int r = 0;

	if (!f)
		return -errno;
	if (json) {
		fprintf(f, "{\"config_file\":");
		if (s->config)
			json_fputs(f, s->config);
		else
			fputs("null", f);
		fprintf(f, ",\"pool_target\":%u,\"settings\":[", a->pool.target);
	} else {
		fprintf(f, "%-18s %-30s %s\n", "SETTING", "VALUE", "FROM");
	}
	for (size_t i = 0, k = 0;; i++) {
		struct option_origin o;
		const char *name;
		char *value;

		r = settings_describe(s, i, &name, &value, &o);
		if (r == -EAGAIN)
			continue;
		if (r < 0)
			break;
		if (json) {
			fprintf(f, "%s{\"name\":\"%s\",\"value\":", k++ ? "," : "", name);
			if (value)
				json_fputs(f, value);
			else
				fputs("null", f);
			fprintf(f, ",\"source\":\"%s\"", source_word(o.source));
			if (o.source == SOURCE_CONFIG && s->config) {
				fprintf(f, ",\"file\":");
				json_fputs(f, s->config);
				if (o.line)
					fprintf(f, ",\"line\":%u", o.line);
			}
			fputc('}', f);
		} else {
			fprintf(f, "%-18s %-30s ", name, value ? value : "-");
			text_origin(f, s, &o);
			fputc('\n', f);
		}
		free(value);
	}
	if (r == -ENOENT)
		r = 0;
	if (json) {
		fprintf(f, "],\"command\":");
		if (s->n_command) {
			fputc('[', f);
			for (size_t i = 0; i < s->n_command; i++) {
				fputs(i ? "," : "", f);
				json_fputs(f, s->command[i]);
			}
			fputc(']', f);
		} else {
			fputs("null", f);
		}
		fprintf(f, "}\n");
	} else {
		fprintf(f, "%-18s ", "command");
		for (size_t i = 0; i < s->n_command; i++)
			fprintf(f, "%s%s", i ? " " : "", s->command[i]);
		fprintf(f, "%s\n", s->n_command ? "   command line" : "(the built-in worker)");
		if (a->pool.target != s->workers)
			fprintf(f,
				"the pool's size is %u now (set by TTIN/TTOU or `sigvisor "
				"workers`), not the workers setting\n",
				a->pool.target);
	}
	if (fclose(f) != 0 || r < 0) {
		free(buf);
		return -ENOMEM;
	}
	*ret_buf = buf;
	*ret_len = len;
	return 0;
}
