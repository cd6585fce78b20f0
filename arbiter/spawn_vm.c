/* Children that share the arbiter's memory until they exec (spawn_vm.h). */
#include "spawn_vm.h"

#include <errno.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "rawsys.h"
#include "timeutil.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define UNPOISON(addr, size) ASAN_UNPOISON_MEMORY_REGION(addr, size)
#else
#define UNPOISON(addr, size) ((void)(addr), (void)(size))
#endif

/* A child's stack: postfork.c needs a few KiB (a 768-byte line, 64 fds); the rest is
 * room for a sanitizer's redzones. Only the pages touched are ever allocated. */
#define STACK_SIZE (128 * 1024)
/* The plan's copy (argv, envp, fds); a larger environment gets a mapping of its own,
 * unmapped after its child has left. */
#define DATA_SIZE (64 * 1024)
/* Mappings kept for reuse. While a large pool starts on a busy machine, children
 * wait their turn to exec and several batches (pool.h) are in flight: with 16 kept,
 * unmapping the rest was a tenth of the arbiter's CPU for 1,024 workers. Each kept
 * one costs the few pages its child touched. */
#define MAX_FREE 64

/* One mapping: a guard page, the stack above it, then this header and the plan's
 * copy. The stack grows down from the header towards the guard page. */
struct vm_child {
	struct vm_child *next;
	size_t map_size;
	/* Nonzero until the child has left our memory: the kernel writes 0 here as the
	 * child's exec replaces its memory, or as it exits (CLONE_CHILD_CLEARTID). */
	pid_t tid;
	pid_t pid;
	/* Set by the child once it has a fd table of its own (plan.fds_unshared). */
	int unshared;
	struct exec_plan plan;
	struct rlimit nofile;
	int stdout_fd, errno_fd, exec_fd;
	unsigned long long reset_only;
	char data[]; /* fds, the argv and envp arrays, then their strings */
};

static struct vm_child *in_flight, *free_list;
static unsigned n_free, n_in_flight;
/* -1 not tried, 1 works, 0 refused (ENOSYS, EINVAL, EPERM): spawn_process() then. */
static int vm_works = RAWSYS_NATIVE ? -1 : 0;

static size_t page_size(void)
{
	static size_t page;

	if (!page)
		page = (size_t)sysconf(_SC_PAGESIZE);
	return page;
}

static void release(struct vm_child *c)
{
	if (c->map_size == page_size() + STACK_SIZE + DATA_SIZE && n_free < MAX_FREE) {
		c->next = free_list;
		free_list = c;
		n_free++;
		return;
	}
	(void)munmap((char *)c - STACK_SIZE - page_size(), c->map_size);
}

/* The mappings of children that have exec'd or exited, back for reuse. Only children
 * of the last batch or two are ever in flight, unless one hangs in its exec (a hung
 * file system), which then keeps its mapping and costs a look here. */
static void sweep(void)
{
	struct vm_child **pp = &in_flight;

	while (*pp) {
		struct vm_child *c = *pp;

		if (__atomic_load_n(&c->tid, __ATOMIC_ACQUIRE) != 0) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		n_in_flight--;
		release(c);
	}
}

static bool settled(const struct vm_child *c)
{
	return !c->plan.fds_unshared || __atomic_load_n(&c->unshared, __ATOMIC_ACQUIRE) ||
	       __atomic_load_n(&c->tid, __ATOMIC_ACQUIRE) == 0;
}

/* A child is settled once it has a fd table of its own (a few microseconds after its
 * clone), or has left. One that has not run by then (stopped, or starved on a busy
 * machine) is waited for 100 ms and then killed: it has not exec'd yet, so its start
 * fails as a worker's may, and the pool starts another. It is not reaped yet (its
 * word is not cleared), so its pid is still its own. */
void spawn_vm_settle(void)
{
	for (struct vm_child *c = in_flight; c; c = c->next) {
		uint64_t deadline = now_ms() + 100;
		bool killed = false;

		while (!settled(c)) {
			if (now_ms() < deadline) {
				sched_yield();
				continue;
			}
			if (killed) {
				log_warn("worker process %d has not left the arbiter's fd table "
					 "200 ms after SIGKILL; closing fds it may still use",
					 (int)c->pid);
				break;
			}
			log_warn("worker process %d has not run 100 ms after its start; killed "
				 "(the arbiter is about to close fds it shares)",
				 (int)c->pid);
			(void)kill(c->pid, SIGKILL);
			killed = true;
			deadline = now_ms() + 200;
		}
	}
}

/* The fds a child needs are below this: it copies only those (CLOSE_RANGE_UNSHARE).
 * Listening sockets are opened early, so it is a handful, however many workers. */
static int keep_below(const struct exec_plan *p)
{
	int top = STDERR_FILENO;

	for (unsigned i = 0; i < p->n_fds; i++)
		if (p->fds[i] > top)
			top = p->fds[i];
	if (p->exec_fd && *p->exec_fd > top)
		top = *p->exec_fd;
	return top + 1;
}

unsigned spawn_vm_in_flight(void)
{
	sweep();
	return n_in_flight;
}

bool spawn_vm_shared(void)
{
	return vm_works == 1;
}

static struct vm_child *get_child(size_t data_size)
{
	size_t page = page_size(), size;
	char *base;
	struct vm_child *c;

	if (data_size <= DATA_SIZE && free_list) {
		c = free_list;
		free_list = c->next;
		n_free--;
		return c;
	}
	data_size = data_size <= DATA_SIZE ? DATA_SIZE : (data_size + page - 1) / page * page;
	size = page + STACK_SIZE + data_size;
	base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1,
		    0);
	if (base == MAP_FAILED)
		return NULL;
	/* An overflowing stack faults here instead of writing over other memory. */
	if (mprotect(base, page, PROT_NONE) < 0) {
		int err = errno;

		(void)munmap(base, size);
		errno = err;
		return NULL;
	}
	c = (struct vm_child *)(base + page + STACK_SIZE);
	c->map_size = size;
	return c;
}

static size_t count(char *const *v, size_t *strings)
{
	size_t n = 0;

	for (; v && v[n]; n++)
		*strings += strlen(v[n]) + 1;
	return n;
}

static char *put_string(char **cursor, const char *s)
{
	size_t len = strlen(s) + 1;
	char *copy = *cursor;

	memcpy(copy, s, len);
	*cursor += len;
	return copy;
}

/* Copy v's strings to *cursor and its pointers to out; *map (if map), a pointer into
 * one of v's strings, to the same place in the copy. */
static void copy_vector(char *const *v, size_t n, char **out, char **cursor, char **map)
{
	char *orig = map ? *map : NULL;

	for (size_t i = 0; i < n; i++) {
		uintptr_t at = (uintptr_t)orig, start = (uintptr_t)v[i];

		out[i] = put_string(cursor, v[i]);
		if (orig && at >= start && at <= start + strlen(v[i])) /* LISTEN_PID='s digits */
			*map = out[i] + (at - start);
	}
	out[n] = NULL;
}

/* The plan, and all it points to, copied into c: the arbiter may free or change its
 * own as soon as the clone returns. */
static void copy_plan(struct vm_child *c, const struct exec_plan *p, size_t argc, size_t envc)
{
	int *fds = (int *)(void *)c->data;
	char **argv = (char **)(void *)(fds + ((p->n_fds + 1) & ~1u));
	char **envp = argv + argc + 1;
	char *cursor = (char *)(envp + envc + 1);
	char *digits = p->listen_pid_digits;

	c->plan = *p;
	if (p->n_fds) /* a --check's plan has none, and no array */
		memcpy(fds, p->fds, p->n_fds * sizeof(int));
	c->plan.fds = fds;
	c->plan.path = put_string(&cursor, p->path);
	copy_vector(p->argv, argc, argv, &cursor, NULL);
	copy_vector(p->envp, envc, envp, &cursor, p->listen_pid_digits ? &digits : NULL);
	c->plan.argv = argv;
	c->plan.envp = envp;
	c->plan.listen_pid_digits = digits != p->listen_pid_digits ? digits : NULL;
	/* Each optional value the plan points at, into c's field of the same name. */
#define KEEP(field)                                                                                \
	do {                                                                                       \
		if (p->field) {                                                                    \
			c->field = *p->field;                                                      \
			c->plan.field = &c->field;                                                 \
		}                                                                                  \
	} while (0)
	KEEP(nofile);
	KEEP(stdout_fd);
	KEEP(errno_fd);
	KEEP(exec_fd);
	KEEP(reset_only);
#undef KEEP
}

static POSTFORK_NO_ASAN int child_main(void *arg)
{
	postfork_exec(&((struct vm_child *)arg)->plan);
}

/* clone3 that starts the child on its own stack in fn(arg); the child never comes
 * back here (fn exec's or exits). glibc has no clone3 wrapper, and syscall() cannot
 * be used: the child would return through a stack it does not have. */
static long clone3_on_stack(struct clone_args *args, int (*fn)(void *), void *arg)
{
#if defined(__x86_64__)
	register int (*r12)(void *) __asm__("r12") = fn;
	register void *r13 __asm__("r13") = arg;
	long ret;

	/* The child starts with %rsp at the top of its stack (16-byte aligned), every
	 * other register as the parent's but %rax = 0. */
	__asm__ volatile("syscall\n\t"
			 "test %%rax, %%rax\n\t"
			 "jnz 1f\n\t"
			 "xor %%ebp, %%ebp\n\t"
			 "mov %%r13, %%rdi\n\t"
			 "call *%%r12\n\t"
			 "mov %%eax, %%edi\n\t"
			 "mov %[exit], %%eax\n\t"
			 "syscall\n\t"
			 "hlt\n"
			 "1:"
			 : "=a"(ret)
			 : "0"((long)SYS_clone3), "D"(args), "S"(sizeof(*args)), "r"(r12),
			   "r"(r13), [exit] "i"(SYS_exit_group)
			 : "rcx", "r11", "memory", "cc");
	return ret;
#elif defined(__aarch64__)
	register long x0 __asm__("x0") = (long)args;
	register long x1 __asm__("x1") = (long)sizeof(*args);
	register long x8 __asm__("x8") = SYS_clone3;
	register int (*x19)(void *) __asm__("x19") = fn;
	register void *x20 __asm__("x20") = arg;

	__asm__ volatile("svc #0\n\t"
			 "cbnz x0, 1f\n\t"
			 "mov x29, xzr\n\t"
			 "mov x30, xzr\n\t"
			 "mov x0, x20\n\t"
			 "blr x19\n\t"
			 "mov x8, %[exit]\n\t"
			 "svc #0\n"
			 "1:"
			 : "+r"(x0)
			 : "r"(x1), "r"(x8), "r"(x19), "r"(x20), [exit] "i"(SYS_exit_group)
			 : "x30", "memory", "cc");
	return x0;
#else
	(void)args;
	(void)fn;
	(void)arg;
	return -ENOSYS;
#endif
}

/* The copying kind, where memory cannot be shared (see spawn_exec). */
pid_t spawn_process(int *ret_pidfd)
{
	/* -1 unknown, 1 works, 0 ENOSYS: older kernels, valgrind, and the seccomp profiles
	 * of older container runtimes, which answer clone3 with ENOSYS on purpose. */
	static int clone3_works = -1;
	struct clone_args args;
	int pidfd = -1;
	long pid;

	if (clone3_works != 0) {
		memset(&args, 0, sizeof(args));
		args.flags = CLONE_PIDFD;
		args.pidfd = (uint64_t)(uintptr_t)&pidfd;
		args.exit_signal = SIGCHLD;
		/* glibc 2.36 has no clone3 wrapper. Without CLONE_VM the child runs on a
		 * copy of this stack, as after fork(). */
		pid = syscall(SYS_clone3, &args, sizeof(args));
		if (pid >= 0 || errno != ENOSYS) {
			clone3_works = 1;
			if (pid > 0)
				*ret_pidfd = pidfd;
			return (pid_t)pid;
		}
		clone3_works = 0;
		log_warn("clone3 is not available (ENOSYS), using fork and pidfd_open");
	}
	/* Until we reap it, the child's pid cannot be reused, so opening its pidfd
	 * after the fork names the right process even if it has already exited. */
	pid = fork();
	if (pid <= 0)
		return (pid_t)pid;
	pidfd = pidfd_open((pid_t)pid, 0);
	if (pidfd < 0) {
		int err = errno;

		kill((pid_t)pid, SIGKILL);
		(void)waitpid((pid_t)pid, NULL, 0);
		errno = err;
		return -1;
	}
	*ret_pidfd = pidfd;
	return (pid_t)pid;
}

static pid_t fork_exec(const struct exec_plan *plan, int *ret_pidfd)
{
	pid_t pid = spawn_process(ret_pidfd);

	if (pid == 0)
		postfork_exec(plan);
	return pid;
}

pid_t spawn_exec(const struct exec_plan *plan, int *ret_pidfd)
{
	size_t strings = strlen(plan->path) + 1, argc, envc, need;
	struct clone_args args;
	struct vm_child *c;
	int pidfd = -1;
	long r;

	if (vm_works == 0)
		return fork_exec(plan, ret_pidfd);
	sweep();
	argc = count(plan->argv, &strings);
	envc = count(plan->envp, &strings);
	need = sizeof(*c) + ((plan->n_fds + 1) & ~1u) * sizeof(int) +
	       (argc + envc + 2) * sizeof(char *) + strings;
	c = get_child(need);
	if (!c)
		return -1;
	copy_plan(c, plan, argc, envc);
	c->tid = -1;
	c->unshared = 0;
	UNPOISON((char *)c - STACK_SIZE, STACK_SIZE);

	memset(&args, 0, sizeof(args));
	args.flags = CLONE_VM | CLONE_PIDFD | CLONE_CHILD_CLEARTID;
	/* Copying our fd table (dup_fd), two fds a worker, and closing all of it again
	 * at the child's exec (do_close_on_exec) made a worker's start cost grow with the
	 * pool: a third of a 4,096-worker HUP. So the child starts on our table and
	 * copies only the low fds it needs. Not for a plan whose fds we close as soon as
	 * this returns (the --check's pipes): those would close in the child too. */
	if (!plan->stdout_fd && !plan->errno_fd) {
		c->plan.fds_unshared = &c->unshared;
		c->plan.keep_fds_below = keep_below(plan);
		args.flags |= CLONE_FILES;
	} else {
		c->plan.fds_unshared = NULL;
	}
	args.pidfd = (uint64_t)(uintptr_t)&pidfd;
	args.child_tid = (uint64_t)(uintptr_t)&c->tid;
	args.exit_signal = SIGCHLD;
	args.stack = (uint64_t)(uintptr_t)((char *)c - STACK_SIZE);
	args.stack_size = STACK_SIZE;
	r = clone3_on_stack(&args, child_main, c);
	if (r < 0) {
		c->next = NULL;
		release(c);
		/* No clone3 (older kernels, valgrind, seccomp profiles that answer it
		 * with ENOSYS), or a filter that refuses CLONE_VM: copy, as fork does. */
		if (r == -ENOSYS || r == -EINVAL || r == -EPERM) {
			/* No clone3 at all: spawn_process() says so itself. */
			if (vm_works < 0 && r != -ENOSYS)
				log_info("clone3 with CLONE_VM refused (%s): workers are "
					 "started by a copy of the arbiter",
					 strerrorname_np((int)-r));
			vm_works = 0;
			return fork_exec(plan, ret_pidfd);
		}
		errno = (int)-r;
		return -1;
	}
	vm_works = 1;
	c->pid = (pid_t)r;
	c->next = in_flight;
	in_flight = c;
	n_in_flight++;
	*ret_pidfd = pidfd;
	return (pid_t)r;
}
