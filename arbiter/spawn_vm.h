/* Starting a process that shares the arbiter's memory until it exec's.
 *
 * A fork-like clone copies the arbiter's page tables and fd table, and every page the
 * arbiter writes afterwards takes a copy-on-write fault: at 4,096 workers that was
 * three quarters of the arbiter's CPU for a start (perf: dup_mmap, dup_fd, page
 * faults). posix_spawn avoids it with clone(CLONE_VM | CLONE_VFORK), which suspends
 * the caller until the child's execve has read the executable: a hung file system
 * under it would hang PID 1 where no signal reaches it. Here the child gets
 * CLONE_VM without CLONE_VFORK: it runs on a stack of its own, reads only a copy of
 * its exec plan made for it, calls only raw system calls (rawsys.h: the arbiter's
 * errno is shared too), and the arbiter goes on at once. The kernel clears a word
 * (CLONE_CHILD_CLEARTID) when the child has left the shared memory, by its exec or its
 * exit; only then is its stack and plan reused.
 *
 * Low layer: knows postfork.c's plan, nothing of workers. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "postfork.h"

/* Start a child that runs postfork_exec(plan): its pid (and *ret_pidfd, its pidfd), or
 * -1 with errno. plan and all it points to may be freed or changed once this returns.
 * Where memory cannot be shared (an architecture without rawsys.h, clone3 refused) it
 * is spawn_process() with the child calling postfork_exec(plan). */
pid_t spawn_exec(const struct exec_plan *plan, int *ret_pidfd);

/* clone3(CLONE_PIDFD), or fork + pidfd_open where clone3 is ENOSYS: a copy of the
 * arbiter. Like fork(): 0 in the child, the pid (and *ret_pidfd) in the parent, -1
 * with errno. */
pid_t spawn_process(int *ret_pidfd);

/* Children started by spawn_exec share the arbiter's fd table until their first
 * system call takes a copy of the fds they need. Call this before closing an fd a
 * child may need (a listening socket): it returns once every such child has its own
 * table, or was killed for not getting there within 100 ms. */
void spawn_vm_settle(void);

/* For tests: how many children still run in the shared memory (have not exec'd), and
 * whether the last spawn_exec shared it. */
unsigned spawn_vm_in_flight(void);
bool spawn_vm_shared(void);
