/* The built-in worker's executable, exec'd from memory.
 *
 * sigvisor carries the built-in worker twice: as `sigvisor worker` (this binary, which
 * loads the C library as a shared object) and as a small static executable of the
 * worker alone (worker/main.c), embedded at build time. Each built-in worker is exec'd
 * from a sealed memfd of the latter: no dynamic loader, no shared object to map and
 * relocate, which was half of what a worker's start cost (and 4,096 workers start in
 * half the time). The memfd is made once per image and carried across HUPs; it is
 * close-on-exec, so a USR2 exec drops it and the new image makes its own from what it
 * carries. Where it cannot be had (a sanitizer build carries none; a kernel that
 * refuses exec'able memfds, vm.memfd_noexec = 2), the workers are /proc/self/exe run
 * as `sigvisor worker`, as before, and a child whose exec of the memfd fails falls back
 * to that too (postfork.c). */
#pragma once

/* The memfd (close-on-exec, sealed), or -1: then exec /proc/self/exe. Made on the
 * first call; says once, at info level, why there is none when one was carried. */
int worker_image_fd(void);
