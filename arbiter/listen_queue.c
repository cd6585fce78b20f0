/* Listen queues through sock_diag (listen_queue.h). One NETLINK_SOCK_DIAG socket per look,
 * one dump of the listening sockets per address family the fds have, each matched to an
 * fd by its inode. The socket is non-blocking: a dump's parts are made by the kernel in
 * the sendmsg and recvmsg calls themselves, so nothing is ever waited for; an EAGAIN
 * would be a kernel that works otherwise, and fails the look rather than block PID 1. */
#include "listen_queue.h"

#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* include/net/tcp_states.h: a listening socket, TCP or unix */
#define SV_TCP_LISTEN 10

static void match(const int *fds, const ino_t *inos, size_t n, struct listen_queue *out,
		  uint64_t ino, uint32_t queued, uint32_t backlog)
{
	for (size_t i = 0; i < n; i++) {
		if (fds[i] >= 0 && inos[i] == ino) {
			out[i] = (struct listen_queue){true, queued, backlog};
			return;
		}
	}
}

/* One parsed reply message: an inet or a unix socket. */
static void on_msg(const struct nlmsghdr *h, int family, const int *fds, const ino_t *inos,
		   size_t n, struct listen_queue *out)
{
	if (family != AF_UNIX) {
		const struct inet_diag_msg *m = NLMSG_DATA(h);

		if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*m)))
			return;
		match(fds, inos, n, out, m->idiag_inode, m->idiag_rqueue, m->idiag_wqueue);
		return;
	}
	const struct unix_diag_msg *m = NLMSG_DATA(h);
	int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*m));

	if (len < 0)
		return;
	for (const struct rtattr *rta = (const struct rtattr *)(m + 1); RTA_OK(rta, len);
	     rta = RTA_NEXT(rta, len)) {
		if (rta->rta_type == UNIX_DIAG_RQLEN &&
		    RTA_PAYLOAD(rta) >= (int)sizeof(struct unix_diag_rqlen)) {
			const struct unix_diag_rqlen *q = RTA_DATA(rta);

			match(fds, inos, n, out, m->udiag_ino, q->udiag_rqueue, q->udiag_wqueue);
		}
	}
}

/* One dump of family's listening sockets (AF_INET, AF_INET6: TCP; AF_UNIX: stream). */
static int dump(int nl, int family, const int *fds, const ino_t *inos, size_t n,
		struct listen_queue *out)
{
	struct {
		struct nlmsghdr h;
		union {
			struct inet_diag_req_v2 inet;
			struct unix_diag_req unix_req;
		};
	} req;
	/* Aligned for the headers it is read as; a page of sockets per part. */
	char buf[16384] __attribute__((aligned(NLMSG_ALIGNTO * 2)));
	struct sockaddr_nl nladdr = {.nl_family = AF_NETLINK};

	memset(&req, 0, sizeof(req));
	req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	if (family == AF_UNIX) {
		req.h.nlmsg_len = NLMSG_LENGTH(sizeof(req.unix_req));
		req.unix_req.sdiag_family = AF_UNIX;
		req.unix_req.udiag_states = 1u << SV_TCP_LISTEN;
		req.unix_req.udiag_show = UDIAG_SHOW_RQLEN;
	} else {
		req.h.nlmsg_len = NLMSG_LENGTH(sizeof(req.inet));
		req.inet.sdiag_family = (uint8_t)family;
		req.inet.sdiag_protocol = IPPROTO_TCP;
		req.inet.idiag_states = 1u << SV_TCP_LISTEN;
	}
	if (sendto(nl, &req, req.h.nlmsg_len, 0, (struct sockaddr *)&nladdr, sizeof(nladdr)) < 0)
		return -errno;
	for (;;) {
		ssize_t got = recv(nl, buf, sizeof(buf), 0);
		int len = (int)got;

		if (got < 0)
			return errno == EINTR ? -EAGAIN : -errno;
		if (got == 0)
			return -EPIPE;
		for (const struct nlmsghdr *h = (const struct nlmsghdr *)buf; NLMSG_OK(h, len);
		     h = NLMSG_NEXT(h, len)) {
			if (h->nlmsg_type == NLMSG_DONE)
				return 0;
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);

				return e->error ? e->error : -EPROTO;
			}
			if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY)
				on_msg(h, family, fds, inos, n, out);
		}
	}
}

int listen_queue_read(const int *fds, size_t n, struct listen_queue *out)
{
	static const int families[] = {AF_INET, AF_INET6, AF_UNIX};
	ino_t inos[LISTEN_QUEUE_MAX];
	bool want[3] = {false, false, false};
	int nl, r = 0;

	if (n > LISTEN_QUEUE_MAX)
		return -E2BIG;
	for (size_t i = 0; i < n; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		struct stat st;

		out[i] = (struct listen_queue){0};
		inos[i] = 0;
		if (fds[i] < 0 || fstat(fds[i], &st) < 0 || !S_ISSOCK(st.st_mode) ||
		    getsockname(fds[i], (struct sockaddr *)&ss, &len) < 0)
			continue;
		inos[i] = st.st_ino;
		for (size_t k = 0; k < 3; k++)
			if (ss.ss_family == families[k])
				want[k] = true;
	}
	if (!want[0] && !want[1] && !want[2])
		return 0;
	nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_SOCK_DIAG);
	if (nl < 0)
		return -errno;
	for (size_t k = 0; k < 3 && r == 0; k++)
		if (want[k])
			r = dump(nl, families[k], fds, inos, n, out);
	close(nl);
	return r;
}
