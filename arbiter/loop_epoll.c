/* The epoll backend of the loop (the default). */
#include "loop.h"

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

static int epoll_init_(struct loop *l)
{
	l->fd = epoll_create1(EPOLL_CLOEXEC);
	return l->fd < 0 ? -errno : 0;
}

static void epoll_fini_(struct loop *l)
{
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
}

static uint32_t to_epoll(uint32_t events)
{
	return (events & LOOP_IN ? EPOLLIN : 0u) | (events & LOOP_OUT ? EPOLLOUT : 0u);
}

static int epoll_ctl_(struct loop *l, int op, struct source *s, uint32_t events)
{
	struct epoll_event ev = {.events = to_epoll(events), .data.ptr = s};

	return epoll_ctl(l->fd, op, s->fd, &ev) < 0 ? -errno : 0;
}

static int epoll_add_(struct loop *l, struct source *s, uint32_t events)
{
	return epoll_ctl_(l, EPOLL_CTL_ADD, s, events);
}

static int epoll_mod_(struct loop *l, struct source *s, uint32_t events)
{
	return epoll_ctl_(l, EPOLL_CTL_MOD, s, events);
}

static int epoll_del_(struct loop *l, struct source *s)
{
	return epoll_ctl(l->fd, EPOLL_CTL_DEL, s->fd, NULL) < 0 ? -errno : 0;
}

static int epoll_wait_(struct loop *l, struct loop_event *out, int max, int timeout_ms)
{
	struct epoll_event evs[LOOP_MAX_EVENTS];
	int n;

	if (max > LOOP_MAX_EVENTS)
		max = LOOP_MAX_EVENTS;
	n = epoll_wait(l->fd, evs, max, timeout_ms);
	if (n < 0)
		return -errno;
	for (int i = 0; i < n; i++) {
		out[i].source = evs[i].data.ptr;
		out[i].events = (evs[i].events & EPOLLIN ? LOOP_IN : 0u) |
				(evs[i].events & EPOLLOUT ? LOOP_OUT : 0u) |
				(evs[i].events & (EPOLLERR | EPOLLHUP) ? LOOP_ERR : 0u);
	}
	return n;
}

const struct loop_backend loop_backend_epoll = {
	.name = "epoll",
	.init = epoll_init_,
	.fini = epoll_fini_,
	.add = epoll_add_,
	.mod = epoll_mod_,
	.del = epoll_del_,
	.wait = epoll_wait_,
};
