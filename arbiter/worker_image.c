/* The built-in worker's memfd: see worker_image.h. */
#include "worker_image.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U /* Linux 6.3: exec'able whatever vm.memfd_noexec says (0, 1) */
#endif

/* worker_image_data.S's; absent (null) where it is not linked in. */
extern const unsigned char sigvisor_worker_image[] __attribute__((weak));
extern const unsigned char sigvisor_worker_image_end[] __attribute__((weak));

static int make_image(const unsigned char *p, size_t len)
{
	int fd = memfd_create("sigvisor-worker", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);

	/* A kernel before 6.3 knows no MFD_EXEC, and its memfds are all exec'able. */
	if (fd < 0 && errno == EINVAL)
		fd = memfd_create("sigvisor-worker", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;

			close(fd);
			return -e;
		}
		p += n;
		len -= (size_t)n;
	}
	/* Sealed: nothing can change what every worker will run, even with the fd. */
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	return fd;
}

/* The image is read once: the pages of it faulted into our own mapping of sigvisor are
 * given back (the kernel's page cache keeps them), or the arbiter would carry them for
 * nothing, most of a MiB of its Pss. */
static void drop_pages(uintptr_t start, uintptr_t end)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);

	start = (start + page - 1) & ~(page - 1);
	end &= ~(page - 1);
	if (end > start)
		(void)madvise((void *)start, end - start, MADV_DONTNEED);
}

int worker_image_fd(void)
{
	static int fd = -2;
	uintptr_t start = (uintptr_t)sigvisor_worker_image,
		  end = (uintptr_t)sigvisor_worker_image_end;
	int r;

	if (fd != -2)
		return fd;
	fd = -1;
	if (!start || end <= start)
		return fd;
	r = make_image(sigvisor_worker_image, end - start);
	drop_pages(start, end);
	if (r < 0)
		log_info("built-in workers run as /proc/self/exe: no memfd for their static "
			 "image (%s)",
			 strerror(-r));
	else
		fd = r;
	return fd;
}
