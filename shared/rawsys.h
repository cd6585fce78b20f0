/* System calls that never touch errno, for code that runs in a child sharing the
 * arbiter's memory (spawn_vm.c): such a child also shares the arbiter's thread-local
 * storage, so a failing C-library wrapper in it would write the arbiter's errno while
 * the arbiter reads it. raw_syscall() returns the kernel's answer as is: -errno on
 * failure.
 *
 * Written for x86_64 and arm64 (the architectures built and tested); elsewhere
 * RAWSYS_NATIVE is 0, syscall(2) stands in, and spawn_vm.c does not share memory. */
#pragma once

#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define RAWSYS_NATIVE 1
static inline long raw_syscall6(long n, long a1, long a2, long a3, long a4, long a5, long a6)
{
	register long r10 __asm__("r10") = a4;
	register long r8 __asm__("r8") = a5;
	register long r9 __asm__("r9") = a6;
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "0"(n), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}
#elif defined(__aarch64__)
#define RAWSYS_NATIVE 1
static inline long raw_syscall6(long n, long a1, long a2, long a3, long a4, long a5, long a6)
{
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a1;
	register long x1 __asm__("x1") = a2;
	register long x2 __asm__("x2") = a3;
	register long x3 __asm__("x3") = a4;
	register long x4 __asm__("x4") = a5;
	register long x5 __asm__("x5") = a6;

	__asm__ volatile("svc #0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
			 : "memory", "cc");
	return x0;
}
#else
#define RAWSYS_NATIVE 0
static inline long raw_syscall6(long n, long a1, long a2, long a3, long a4, long a5, long a6)
{
	long r = syscall(n, a1, a2, a3, a4, a5, a6);

	return r < 0 ? -errno : r;
}
#endif

#define raw_syscall(n, a1, a2, a3, a4)                                                             \
	raw_syscall6((long)(n), (long)(a1), (long)(a2), (long)(a3), (long)(a4), 0, 0)
