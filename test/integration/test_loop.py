"""--loop: the io_uring backend behaves like epoll, sleeps as soundly, and refuses
plainly (exit 1, saying why) when io_uring is unavailable. Unavailability is made
real, not mocked: sigvisor runs under a seccomp filter that fails io_uring_setup.
Under CI=true a missing io_uring is a failure, not a skip (these machines have it)."""
import os
import platform
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import wait_idle, SIGVISOR, DEADLINE, proc_status, wait_for

NR_IO_URING_SETUP = 425
NR_IO_URING_ENTER = 426

# Installs a seccomp filter that fails io_uring_setup with the errno given as argv[1],
# then execs argv[2:]. x86_64 only, like the syscall numbers above.
SECCOMP_HELPER = r"""
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	unsigned err = (unsigned)atoi(argv[1]);
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (err & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) {
		perror("seccomp");
		return 2;
	}
	execv(argv[2], argv + 2);
	perror("execv");
	return 127;
}
"""


def io_uring_unavailable():
    """Why io_uring cannot be used here, or None (asks the kernel, like sigvisor)."""
    probe = subprocess.run(
        ["/usr/bin/python3", "-c",
         "import ctypes, os, sys\n"
         "libc = ctypes.CDLL(None, use_errno=True)\n"
         "p = ctypes.create_string_buffer(120)\n"
         f"fd = libc.syscall({NR_IO_URING_SETUP}, 2, p)\n"
         "sys.exit(0 if fd >= 0 else ctypes.get_errno())"],
        capture_output=True, timeout=DEADLINE)
    if probe.returncode == 0:
        return None
    return f"io_uring_setup fails here: {os.strerror(probe.returncode)}"


@pytest.fixture
def uring():
    why = io_uring_unavailable()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"io_uring must work under CI=true: {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def seccomp_helper():
    if platform.machine() != "x86_64":
        pytest.skip("the seccomp helper filters x86_64 system calls only")
    d = tempfile.mkdtemp(prefix="sv-seccomp-", dir="/tmp")
    src, exe = os.path.join(d, "deny.c"), os.path.join(d, "deny")
    with open(src, "w") as f:
        f.write(SECCOMP_HELPER)
    r = subprocess.run(["cc", "-O1", "-o", exe, src], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, f"building the seccomp helper failed:\n{r.stderr}"
    yield exe
    subprocess.run(["rm", "-rf", d])


def switches(pid):
    """Context switches of all of pid's threads so far."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith(("voluntary_ctxt_switches:",
                                    "nonvoluntary_ctxt_switches:")):
                    total += int(line.split()[1])
    return total


def blocked_in(pid):
    """The syscall number pid's main thread is blocked in, or None if running."""
    with open(f"/proc/{pid}/syscall") as f:
        first = f.read().split()[0]
    return int(first) if first.lstrip("-").isdigit() else None


def test_io_uring_serves_and_says_so(uring, start):
    sv = start("--loop", "io_uring", "-w", "2")
    sv.wait_workers(2)
    assert sv.get("/")[0] == 200
    st = sv.status()
    assert st["loop"] == "io_uring"
    sv.wait_log(r"loop io_uring")
    # Many short control connections: each is registered, answered and deleted.
    for _ in range(50):
        assert sv.status()["loop"] == "io_uring"


def test_auto_stays_epoll(start):
    sv = start("--loop", "auto", "-w", "1")
    sv.wait_workers(1)
    assert sv.status()["loop"] == "epoll"


def test_idle_io_uring_arbiter_does_not_wake(uring, start):
    sv = start("--loop", "io_uring", "-w", "2")
    sv.wait_workers(2)
    # Our last status request woke it: wait until it sleeps in io_uring_enter again.
    wait_for(lambda: blocked_in(sv.pid) == NR_IO_URING_ENTER, what="io_uring_enter")
    wait_idle(sv.pid)  # and a cancel still completing may wake it once more
    before = switches(sv.pid)
    time.sleep(1.5)  # the measurement window, not a wait for an event
    assert blocked_in(sv.pid) == NR_IO_URING_ENTER
    assert switches(sv.pid) == before, "the idle arbiter woke up"


@pytest.mark.parametrize("loop", ["epoll", "io_uring"])
def test_ttin_storm(loop, request, start):
    if loop == "io_uring":
        request.getfixturevalue("uring")
    sv = start("--loop", loop, "-w", "1")
    sv.wait_workers(1)
    for _ in range(200):
        os.kill(sv.pid, signal.SIGTTIN)

    def settled():
        # The kernel merges pending TTINs; each one read grows the pool by one.
        st = sv.status()
        got = st["signals"]["TTIN"]["received"]
        ws = st["workers"]
        return st if (got >= 1 and st["target"] == 1 + got and len(ws) == 1 + got and
                      all(w["state"] == "ready" for w in ws)) else None
    st = wait_for(settled, timeout=60, what="the pool grown by every TTIN read")
    assert st["loop"] == loop
    # Nothing more arrives later: the storm is over and fully handled.
    got = st["signals"]["TTIN"]["received"]
    wait_for(lambda: blocked_in(sv.pid) is not None, what="the arbiter to sleep")
    st = sv.status()
    assert (st["signals"]["TTIN"]["received"], st["target"]) == (got, 1 + got)


def expected_eperm_reason():
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as f:
            disabled = f.read().strip()
    except FileNotFoundError:
        disabled = "0"
    return {"2": "kernel.io_uring_disabled=2",
            "1": "kernel.io_uring_disabled=1"}.get(disabled, "seccomp")


@pytest.mark.parametrize("err", [1, 38])  # EPERM (Docker's default profile), ENOSYS
def test_io_uring_unavailable_exits_1_and_says_why(seccomp_helper, tmpdir_short, start, err):
    # ENOSYS is also what a kernel without io_uring says: the filter is named from
    # /proc/self/status (Seccomp: 2), as podman's default profile would be.
    says = (expected_eperm_reason() if err == 1 else
            "io_uring_setup is refused by a seccomp filter (ENOSYS")
    r = subprocess.run(
        [seccomp_helper, str(err), SIGVISOR, "-b", "127.0.0.1:0", "--control",
         os.path.join(tmpdir_short, "c.sock"), "--loop", "io_uring"],
        capture_output=True, text=True, timeout=DEADLINE, stdin=subprocess.DEVNULL)
    assert r.returncode == 1, r.stderr
    assert says in r.stderr and "use --loop epoll" in r.stderr, r.stderr
    # Never a silent fallback: nothing was started.
    assert "listening on" not in r.stderr + r.stdout
    # --check tries what the start will use, the loop included: not "configuration ok".
    r = subprocess.run(
        [seccomp_helper, str(err), SIGVISOR, "--check", "-b", "127.0.0.1:0", "--control",
         os.path.join(tmpdir_short, "c.sock"), "--loop", "io_uring"],
        capture_output=True, text=True, timeout=DEADLINE, stdin=subprocess.DEVNULL)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert says in r.stderr and "configuration ok" not in r.stdout, (r.stdout, r.stderr)
    # Under the same filter epoll serves: the refusal is about io_uring only.
    sv = start("--loop", "epoll", "-w", "1", wrap=[seccomp_helper, str(err)])
    sv.wait_workers(1)
    assert sv.status()["loop"] == "epoll"
