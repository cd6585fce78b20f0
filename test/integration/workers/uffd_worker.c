/* A hostile COMMAND worker for test_hostile_ready.py: it waits on its listening socket
 * (fd 3) with the wait's user memory on a page registered with userfaultfd in missing
 * mode, and never resolves the fault. The kernel's own copy of that memory (select()
 * reading its fd_set, epoll_wait() writing its events) then sleeps in the fault, and so
 * does anyone else who reads it: process_vm_readv(), /proc/PID/mem, and, for epoll, the
 * /proc/PID/fdinfo of the epoll fd (the fault is taken with the epoll's mutex held).
 *
 *   uffd_worker --probe           exit 0 if userfaultfd catches kernel faults here, 77
 *                                 with the reason on stderr otherwise
 *   uffd_worker MARKER select     select(4, fd_set on the page, ...) on fd 3
 *   uffd_worker MARKER epoll      epoll_wait(events on the page) with fd 3 and a ready
 *                                 eventfd in the set
 *
 * MARKER is written with "armed PID" just before the wait. TERM (default action) ends it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

/* A userfaultfd that also catches faults taken by the kernel (no UFFD_USER_MODE_ONLY):
 * the syscall needs vm.unprivileged_userfaultfd=1 or CAP_SYS_PTRACE, /dev/userfaultfd
 * needs permission on the node. */
static int uffd_open(char *why, size_t len)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	int dev;

	if (fd >= 0)
		return fd;
	snprintf(why, len, "userfaultfd(2): %s", strerror(errno));
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0) {
		snprintf(why + strlen(why), len - strlen(why), "; /dev/userfaultfd: %s",
			 strerror(errno));
		return -1;
	}
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		snprintf(why + strlen(why), len - strlen(why),
			 "; /dev/userfaultfd USERFAULTFD_IOC_NEW: %s", strerror(errno));
	close(dev);
	return fd;
}

/* One page nobody ever fills: every access to it, by anyone, waits on uffd forever. */
static void *trap_page(int uffd, char *why, size_t len)
{
	struct uffdio_api api = {.api = UFFD_API};
	struct uffdio_register reg;
	long pg = sysconf(_SC_PAGESIZE);
	void *p;

	if (ioctl(uffd, UFFDIO_API, &api) < 0) {
		snprintf(why, len, "UFFDIO_API: %s", strerror(errno));
		return NULL;
	}
	p = mmap(NULL, (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		snprintf(why, len, "mmap: %s", strerror(errno));
		return NULL;
	}
	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uint64_t)(uintptr_t)p;
	reg.range.len = (uint64_t)pg;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
		snprintf(why, len, "UFFDIO_REGISTER: %s", strerror(errno));
		return NULL;
	}
	return p;
}

static void *touch(void *page)
{
	int fds[2];

	/* write(2) from the page: the kernel reads it, faults, and must wait */
	if (pipe(fds) == 0)
		(void)!write(fds[1], page, 1);
	return NULL;
}

/* Whether a kernel access to the page waits on the userfaultfd (rather than failing
 * with EFAULT at once): a thread makes one, this one reads the fault message. */
static int probe(void)
{
	char why[512] = "";
	int uffd = uffd_open(why, sizeof(why));
	void *p = uffd >= 0 ? trap_page(uffd, why, sizeof(why)) : NULL;
	struct uffd_msg msg;
	pthread_t t;

	if (!p)
		goto no;
	if (pthread_create(&t, NULL, touch, p) != 0) {
		snprintf(why, sizeof(why), "pthread_create failed");
		goto no;
	}
	for (int i = 0; i < 200; i++) {
		if (read(uffd, &msg, sizeof(msg)) == (ssize_t)sizeof(msg))
			_exit(0); /* the thread still waits: gone with the process */
		usleep(10000);
	}
	snprintf(why, sizeof(why),
		 "a kernel access to a registered page did not wait on the "
		 "userfaultfd (kernel faults not delivered)");
no:
	fprintf(stderr, "userfaultfd unavailable: %s\n", why);
	return 77;
}

int main(int argc, char **argv)
{
	char why[512] = "";
	int uffd;
	void *page;
	FILE *f;

	if (argc == 2 && strcmp(argv[1], "--probe") == 0)
		return probe();
	if (argc != 3)
		return 2;
	uffd = uffd_open(why, sizeof(why));
	page = uffd >= 0 ? trap_page(uffd, why, sizeof(why)) : NULL;
	if (!page) {
		fprintf(stderr, "uffd_worker: %s\n", why);
		return 1;
	}
	f = fopen(argv[1], "w");
	if (!f)
		return 1;
	fprintf(f, "armed %d\n", (int)getpid());
	fclose(f);
	if (strcmp(argv[2], "select") == 0) {
		(void)select(4, (fd_set *)page, NULL, NULL, NULL);
	} else if (strcmp(argv[2], "epoll") == 0) {
		int ep = epoll_create1(EPOLL_CLOEXEC);
		int ev = eventfd(1, EFD_CLOEXEC); /* always readable: epoll_wait has to copy */
		struct epoll_event e = {.events = EPOLLIN};

		e.data.fd = 3;
		epoll_ctl(ep, EPOLL_CTL_ADD, 3, &e);
		e.data.fd = ev;
		epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e);
		(void)epoll_wait(ep, (struct epoll_event *)page, 8, -1);
	}
	fprintf(stderr, "uffd_worker: the wait returned: %s\n", strerror(errno));
	return 1;
}
