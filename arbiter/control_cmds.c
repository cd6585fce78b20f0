/* The clients of `sigvisor reopen`, `sigvisor stop [--quick]`, `sigvisor kill-worker ID
 * [--signal SIG] [--force]` and `sigvisor config`, each with [--json] [--control PATH]
 * [--timeout S]. The arbiter answers at once (control_cmd.c, commands.c); what follows
 * is waited for here, within the one deadline (--timeout) the connecting shares:
 * stop waits for the arbiter's exit on a pidfd (or, without one, for its socket to stop
 * answering); kill-worker, for a signal that ends the worker, watches "status json"
 * every WATCH_POLL_MS until the worker is gone and, if the pool replaces it, until the
 * pool is whole and ready again. Exit 0 only on success; 1 with the reason on stderr
 * (and in --json's "reason"); 2 for a usage error. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "control_internal.h"
#include "exitstatus.h"
#include "signames.h"
#include "timeutil.h"

#define WATCH_POLL_MS 25

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* Linux 6.5; glibc 2.36's headers predate it */
#endif

/* JSON string contents of plain text: ours, or the arbiter's sentence. */
static void json_text(const char *t)
{
	for (; *t && *t != '\n'; t++)
		putchar(*t == '"' || *t == '\\' || (unsigned char)*t < 0x20 ? '?' : *t);
}

/* An "ok" answer's "key=value ..." fields as JSON members (numbers bare). */
static void json_fields(const char *fields)
{
	const char *p = fields;

	while (*p && *p != '\t' && *p != '\n') {
		size_t klen = strcspn(p, "= \t\n"), vlen;
		const char *v;
		bool num = true;

		if (p[klen] != '=')
			break;
		v = p + klen + 1;
		vlen = strcspn(v, " \t\n");
		for (size_t k = 0; k < vlen; k++)
			num = num && v[k] >= '0' && v[k] <= '9';
		printf(",\"%.*s\":", (int)klen, p);
		if (num && vlen)
			printf("%.*s", (int)vlen, v);
		else
			printf("\"%.*s\"", (int)vlen, v);
		p = v + vlen;
		p += strspn(p, " ");
	}
}

/* One field of an "ok" answer, as a number (-1: absent). */
static long long field(const char *ans, const char *key)
{
	size_t klen = strlen(key);
	const char *end = ans + strcspn(ans, "\t\n");

	for (const char *p = ans; p < end; p += strcspn(p, " \t"), p += *p == ' ')
		if (strncmp(p, key, klen) == 0 && p[klen] == '=')
			return strtoll(p + klen + 1, NULL, 10);
	return -1;
}

/* The sentence of an "ok" answer (after the tab), or of an error (after "error: "
 * and "refused: " or "failed: "), up to its newline. */
static const char *sentence(const char *ans, int *ret_len)
{
	const char *t = strchr(ans, '\t');

	if (strncmp(ans, "error: ", 7) == 0) {
		t = ans + 7;
		if (strncmp(t, "refused: ", 9) == 0)
			t += 9;
		else if (strncmp(t, "failed: ", 8) == 0)
			t += 8;
	} else {
		t = t ? t + 1 : ans;
	}
	*ret_len = (int)strcspn(t, "\n");
	return t;
}

/* The outcome: one line for people (the sentence on stdout, or the reason on stderr),
 * or one JSON object with the answer's fields. */
static int outcome(const struct control_client_args *c, const char *result, const char *fields,
		   uint64_t waited, const char *extra_json, const char *text)
{
	bool ok = strcmp(result, "ok") == 0;

	if (c->json) {
		printf("{\"ok\":%s,\"result\":\"%s\"", ok ? "true" : "false", result);
		if (fields)
			json_fields(fields);
		if (extra_json)
			printf("%s", extra_json);
		printf(",\"waited_ms\":%llu,\"%s\":\"", (unsigned long long)waited,
		       ok ? "message" : "reason");
		json_text(text);
		printf("\"}\n");
	} else if (ok) {
		printf("%s\n", text);
	}
	if (!ok)
		fprintf(stderr, "%s: %s\n", c->name, text);
	fflush(stdout);
	return ok ? EXIT_OK : EXIT_FATAL;
}

/* An answer that is not "ok": its outcome. */
static int not_ok(const struct control_client_args *c, const char *ans, uint64_t waited)
{
	int len;
	const char *t = sentence(ans, &len);
	char why[600];

	snprintf(why, sizeof(why), "%.*s", len, t);
	if (strncmp(ans, "error: ", 7) != 0)
		snprintf(why, sizeof(why), "unexpected answer: %.*s", len, t);
	return outcome(c, strncmp(ans, "error: failed: ", 15) == 0 ? "failed" : "refused", NULL,
		       waited, NULL, why);
}

int reopen_main(int argc, char **argv)
{
	struct control_client_args c = {.name = "sigvisor reopen", .timeout_ms = 10000};
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)], *ans;
	uint64_t start;
	int r, len;

	for (int i = 2; i < argc; i++) {
		r = control_client_arg(&c, argc, argv, &i);
		if (r < 0)
			return EXIT_USAGE;
		if (r == 0)
			return control_client_usage(&c, argv[i], "sigvisor reopen");
	}
	control_client_begin(c.name, c.timeout_ms);
	start = now_ms();
	ans = control_client_request(c.control, path, sizeof(path), "reopen\n");
	if (!ans)
		return EXIT_FATAL;
	if (strncmp(ans, "ok ", 3) != 0) {
		r = not_ok(&c, ans, now_ms() - start);
	} else {
		const char *t = sentence(ans, &len);
		char msg[600];

		snprintf(msg, sizeof(msg), "%.*s", len, t);
		r = outcome(&c, "ok", ans + 3, now_ms() - start, NULL, msg);
	}
	free(ans);
	return r;
}

int config_main(int argc, char **argv)
{
	struct control_client_args c = {.name = "sigvisor config", .timeout_ms = 10000};
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)], *ans;
	int r;

	for (int i = 2; i < argc; i++) {
		r = control_client_arg(&c, argc, argv, &i);
		if (r < 0)
			return EXIT_USAGE;
		if (r == 0)
			return control_client_usage(&c, argv[i], "sigvisor config");
	}
	control_client_begin(c.name, c.timeout_ms);
	ans = control_client_request(c.control, path, sizeof(path),
				     c.json ? "config json\n" : "config\n");
	if (!ans)
		return EXIT_FATAL;
	r = EXIT_OK;
	if (strncmp(ans, "error:", 6) == 0) {
		fprintf(stderr, "%s: %s", c.name, ans);
		r = EXIT_FATAL;
	} else if (fputs(ans, stdout) < 0 || fflush(stdout) != 0) {
		r = EXIT_FATAL;
	}
	free(ans);
	return r;
}

/* The process listening on fd, as a pidfd: SO_PEERPIDFD, else pidfd_open of
 * SO_PEERCRED's pid, which is the arbiter's as long as this connection stands. -1: none
 * (another PID namespace, or no pidfds). *ret_pid: the pid we see (0: none). */
static int peer_pidfd(int fd, pid_t *ret_pid)
{
	struct ucred cred = {0};
	socklen_t cl = sizeof(cred), pl = sizeof(int);
	int pidfd = -1;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0)
		cred.pid = 0;
	*ret_pid = cred.pid;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &pl) == 0 && pidfd >= 0)
		return pidfd;
	return cred.pid > 0 ? pidfd_open(cred.pid, 0) : -1;
}

/* Whether the arbiter is gone: its pidfd readable, or without one its socket refusing.
 * 1 gone, 0 not yet (the deadline), -1 lost track (said). */
static int wait_gone(const struct control_client_args *c, int pidfd, const char *path)
{
	for (;;) {
		int left = control_client_remaining_ms(), fd;

		if (pidfd >= 0) {
			struct pollfd p = {.fd = pidfd, .events = POLLIN};
			int n = poll(&p, 1, left);

			if (n > 0)
				return 1;
			if (n == 0)
				return 0;
			if (errno != EINTR) {
				fprintf(stderr, "%s: waiting on the arbiter's pidfd: %m\n",
					c->name);
				return -1;
			}
			continue;
		}
		fd = control_connect_to(path);
		if (fd == -ECONNREFUSED || fd == -ENOENT)
			return 1;
		if (fd >= 0)
			close(fd);
		if (left == 0)
			return 0;
		(void)poll(NULL, 0, left < 0 || left > WATCH_POLL_MS ? WATCH_POLL_MS : left);
	}
}

int stop_main(int argc, char **argv)
{
	struct control_client_args c = {.name = "sigvisor stop", .timeout_ms = 10000};
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)], msg[700], *ans = NULL;
	bool quick = false;
	uint64_t start, waited;
	size_t n;
	int fd, pidfd, r, gone;
	pid_t pid;

	for (int i = 2; i < argc; i++) {
		r = control_client_arg(&c, argc, argv, &i);
		if (r < 0)
			return EXIT_USAGE;
		if (r == 0 && strcmp(argv[i], "--quick") == 0)
			quick = true;
		else if (r == 0)
			return control_client_usage(&c, argv[i], "sigvisor stop [--quick]");
	}
	control_client_begin(c.name, c.timeout_ms);
	start = now_ms();
	fd = control_client_connect(c.control, path, sizeof(path));
	if (fd < 0)
		return EXIT_FATAL;
	/* Before asking: once it has exited, its pid may be another process's. */
	pidfd = peer_pidfd(fd, &pid);
	/* Inside a container's PID namespace (kubectl exec): when its PID 1 exits, the
	 * kernel kills every process in it, this one too, before it can say so:
	 * said before asking, since the exit may follow the answer at once. */
	if (pid == 1)
		fprintf(stderr,
			"%s: the arbiter is PID 1 of this PID namespace: its exit ends this "
			"command too (the kernel kills the namespace's processes)\n",
			c.name);
	r = control_client_ask(fd, path, quick ? "stop quick\n" : "stop\n", &ans, &n);
	close(fd);
	if (r < 0) {
		if (pidfd >= 0)
			close(pidfd);
		return EXIT_FATAL;
	}
	if (strncmp(ans, "ok ", 3) != 0) {
		r = not_ok(&c, ans, now_ms() - start);
		goto out;
	}
	/* Without --timeout: as long as the shutdown may take (its delay, the graceful
	 * timeout, then the KILL and the leftovers' wait), and a margin. */
	if (!c.timeout_given) {
		long long g = field(ans + 3, "graceful_timeout_ms"),
			  d = field(ans + 3, "shutdown_delay_ms");

		control_client_begin(c.name,
				     (uint64_t)(g > 0 ? g : 0) + (uint64_t)(d > 0 ? d : 0) + 10000);
	}
	gone = wait_gone(&c, pidfd, path);
	waited = now_ms() - start;
	if (gone == 1) {
		snprintf(msg, sizeof(msg), "the arbiter (pid %d) exited after %.2f s (%s shutdown)",
			 (int)pid, (double)waited / 1000.0, quick ? "quick" : "graceful");
		r = outcome(&c, "ok", ans + 3, waited, NULL, msg);
	} else if (gone == 0) {
		snprintf(msg, sizeof(msg),
			 "timed out after %.1f s: the arbiter (pid %d) is still shutting down "
			 "(--timeout changes the wait)",
			 (double)waited / 1000.0, (int)pid);
		r = outcome(&c, "timeout", ans + 3, waited, NULL, msg);
	} else {
		r = outcome(&c, "error", ans + 3, waited, NULL, "lost track of the arbiter");
	}
out:
	free(ans);
	if (pidfd >= 0)
		close(pidfd);
	return r;
}

/* The worker with pid in s, if alive there. */
static const struct worker_seen *seen_pid(const struct pool_seen *s, int pid)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->w[i].pid == pid && strcmp(s->w[i].state, "exited") != 0)
			return &s->w[i];
	return NULL;
}

/* After a signal that ends the worker: until it is gone, then, if the pool replaces
 * it, until the current generation is whole and ready. */
static int watch_worker(const struct control_client_args *c, char *path, size_t len,
			const char *ans, uint64_t start)
{
	struct pool_seen *s = calloc(1, sizeof(*s));
	int pid = (int)field(ans, "pid"), id = (int)field(ans, "id"), r;
	bool replaced = field(ans, "replaced") == 1, gone = false;
	uint64_t gone_ms = 0;
	char msg[800], extra[128];
	int len_s;
	const char *sent = sentence(ans, &len_s);

	if (!s) {
		fprintf(stderr, "%s: out of memory\n", c->name);
		return EXIT_FATAL;
	}
	for (;;) {
		char *j = control_client_request(c->control, path, len, "status json\n");
		bool ok = j && control_parse_pool(j, s);
		int left;

		free(j);
		if (!ok) {
			snprintf(msg, sizeof(msg), "%.*s; lost the arbiter while waiting%s", len_s,
				 sent, gone ? " for the replacement" : " for the worker's exit");
			r = outcome(c, "error", ans, now_ms() - start, NULL, msg);
			break;
		}
		if (!gone && !seen_pid(s, pid)) {
			gone = true;
			gone_ms = now_ms() - start;
		}
		if (gone && (!replaced || strcmp(s->state, "running") != 0 ||
			     (s->ready == s->target && !s->booting))) {
			const struct worker_seen *rep = NULL;

			for (size_t i = 0; replaced && i < s->n; i++)
				if ((int)s->w[i].id == id && s->w[i].generation == s->generation &&
				    s->w[i].pid != pid && strcmp(s->w[i].state, "ready") == 0)
					rep = &s->w[i];
			if (rep) {
				snprintf(msg, sizeof(msg),
					 "%.*s; it exited within %.2f s; replaced by pid %d, the "
					 "pool ready again after %.2f s",
					 len_s, sent, (double)gone_ms / 1000.0, rep->pid,
					 (double)(now_ms() - start) / 1000.0);
				snprintf(extra, sizeof(extra),
					 ",\"exited_ms\":%llu,\"replacement_pid\":%d",
					 (unsigned long long)gone_ms, rep->pid);
			} else {
				snprintf(msg, sizeof(msg), "%.*s; it exited within %.2f s%s", len_s,
					 sent, (double)gone_ms / 1000.0,
					 replaced
						 ? " (the arbiter is shutting down: no replacement)"
						 : "");
				snprintf(extra, sizeof(extra), ",\"exited_ms\":%llu",
					 (unsigned long long)gone_ms);
			}
			r = outcome(c, "ok", ans, now_ms() - start, extra, msg);
			break;
		}
		left = control_client_remaining_ms();
		if (left == 0) {
			snprintf(msg, sizeof(msg),
				 "%.*s; timed out after %.1f s: %s (--timeout changes the wait)",
				 len_s, sent, (double)c->timeout_ms / 1000.0,
				 gone ? "the worker exited, its replacement is not ready"
				      : "the worker has not exited");
			r = outcome(c, "timeout", ans, now_ms() - start, NULL, msg);
			break;
		}
		(void)poll(NULL, 0, left < 0 || left > WATCH_POLL_MS ? WATCH_POLL_MS : left);
	}
	free(s);
	return r;
}

int kill_worker_main(int argc, char **argv)
{
	struct control_client_args c = {.name = "sigvisor kill-worker", .timeout_ms = 10000};
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)], found[sizeof(path)], req[96];
	const char *target = NULL, *signame = "TERM";
	struct control_kill parsed;
	bool force = false;
	uint64_t start;
	char *ans;
	int r, sig;

	for (int i = 2; i < argc; i++) {
		r = control_client_arg(&c, argc, argv, &i);
		if (r < 0)
			return EXIT_USAGE;
		if (r)
			continue;
		if (strcmp(argv[i], "--force") == 0)
			force = true;
		else if (strcmp(argv[i], "--signal") == 0 && i + 1 < argc)
			signame = argv[++i];
		else if (strncmp(argv[i], "--signal=", 9) == 0)
			signame = argv[i] + 9;
		else if (!target && argv[i][0] != '-')
			target = argv[i];
		else
			return control_client_usage(
				&c, argv[i],
				"sigvisor kill-worker ID|pid:PID [--signal SIG] [--force]");
	}
	sig = signal_from_name(signame);
	if (sig <= 0 || sig > 64) {
		fprintf(stderr, "%s: --signal '%s': not a signal (TERM, USR2, 15, ...)\n", c.name,
			signame);
		return EXIT_USAGE;
	}
	if (!target ||
	    snprintf(req, sizeof(req), "kill-worker %s %s%s", target, signal_name(sig),
		     force ? " force" : "") >= (int)sizeof(req) ||
	    !control_parse_kill(req, &parsed)) {
		fprintf(stderr,
			"%s: %s%s%s\nusage: sigvisor kill-worker ID|pid:PID [--signal SIG] "
			"[--force] [--json] [--control PATH] [--timeout SECONDS]\n",
			c.name,
			target ? "not a worker id or pid:PID: '" : "which worker? (its ID as ",
			target ? target : "`sigvisor status` shows it, or pid:PID)",
			target ? "'" : "");
		return EXIT_USAGE;
	}
	control_client_begin(c.name, c.timeout_ms);
	start = now_ms();
	strcat(req, "\n");
	ans = control_client_request(c.control, path, sizeof(path), req);
	if (!ans)
		return EXIT_FATAL;
	if (strncmp(ans, "ok ", 3) != 0) {
		r = not_ok(&c, ans, now_ms() - start);
	} else if (field(ans + 3, "ends") != 1) {
		int len;
		const char *t = sentence(ans, &len);
		char msg[600];

		snprintf(msg, sizeof(msg), "%.*s", len, t);
		r = outcome(&c, "ok", ans + 3, now_ms() - start, NULL, msg);
	} else {
		/* The socket found is the one asked from now on. */
		snprintf(found, sizeof(found), "%s", path);
		c.control = found;
		r = watch_worker(&c, path, sizeof(path), ans + 3, start);
	}
	free(ans);
	return r;
}
