"""Built-in workers are named as nginx names its own: "sigvisor: worker 0 (gen 1)" in
ps (argv) and "sigvisor-w0" as comm (ss -p, top, the probes' events), not "exe" nor a
memfd's name (they are exec'd from the static image sigvisor carries, or through
/proc/self/exe). A COMMAND worker keeps its own names. And what they are exec'd from."""
import fcntl
import os
import signal

import pytest

from conftest import SANITIZED, SIGVISOR, children, wait_for

MEMFD_EXE = "/memfd:sigvisor-worker (deleted)"


def names(pid):
    with open(f"/proc/{pid}/comm") as f:
        comm = f.read().strip()
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        args = [a.decode() for a in f.read().split(b"\0") if a]
    return comm, args


def test_builtin_workers_are_named_by_slot_and_generation(start):
    sv = start("-w", "2")
    ws = sv.wait_workers(2)
    for w in ws:
        assert names(w["pid"]) == (f"sigvisor-w{w['id']}",
                                   [f"sigvisor: worker {w['id']} (gen 1)"])
    sv.kill(signal.SIGHUP)
    wait_for(lambda: (lambda s: s["generation"] == 2 and not s["reloading"] and
                      len(s["workers"]) == 2)(sv.status()), what="generation 2")
    for w in sv.workers():
        assert names(w["pid"]) == (f"sigvisor-w{w['id']}",
                                   [f"sigvisor: worker {w['id']} (gen 2)"])
    with open(f"/proc/{sv.pid}/comm") as f:
        assert f.read().strip() == "sigvisor"


def test_command_workers_keep_their_own_names(start):
    sv = start("-w", "1", "--ready-mode", "start", command=["sleep", "600"])
    [w] = sv.wait_workers(1)
    wait_for(lambda: names(w["pid"]) == ("sleep", ["sleep", "600"]), what="sleep exec'd")


def comm(pid):
    """The pid's name, or "" once it is gone (the arbiter's short-lived children, the
    probe loader and the killable look, come and go between the listing and the read)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read()
    except OSError:
        return ""


def worker_pids(arbiter):
    return [c for c in children(arbiter) if comm(c).startswith("sigvisor-w")]


def test_builtin_workers_run_the_static_image_from_a_sealed_memfd(start):
    """Each built-in worker is the static worker sigvisor carries, exec'd from a memfd
    the arbiter keeps (sealed: no one with the fd can change what the next worker runs):
    no dynamic loader, no shared C library mapped in it, where the arbiter has both. A
    sanitizer build carries none: its workers are sigvisor itself."""
    sv = start("-w", "2")
    sv.wait_workers(2)
    pids = worker_pids(sv.pid)
    assert len(pids) == 2
    exe = os.path.realpath(SIGVISOR)
    if SANITIZED:
        assert all(os.readlink(f"/proc/{p}/exe") == exe for p in pids)
        return
    arbiter_maps = open(f"/proc/{sv.pid}/maps").read()
    assert "libc.so" in arbiter_maps and "/ld-linux" in arbiter_maps
    for p in pids:
        assert os.readlink(f"/proc/{p}/exe") == MEMFD_EXE
        maps = open(f"/proc/{p}/maps").read()
        assert "libc.so" not in maps and "/ld-linux" not in maps, maps
        # close-on-exec: the worker does not hold the image
        assert MEMFD_EXE not in [os.readlink(f"/proc/{p}/fd/{fd}")
                                 for fd in os.listdir(f"/proc/{p}/fd")]
    [image] = [fd for fd in os.listdir(f"/proc/{sv.pid}/fd")
               if os.readlink(f"/proc/{sv.pid}/fd/{fd}") == MEMFD_EXE]
    with open(f"/proc/{sv.pid}/fd/{image}", "rb") as f:
        assert fcntl.fcntl(f, fcntl.F_GET_SEALS) == (fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK |
                                                   fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    assert sv.get()[0] == 200
    # A reload's workers come from the same memfd.
    sv.kill(signal.SIGHUP)
    wait_for(lambda: (lambda s: s["generation"] == 2 and not s["reloading"] and
                      len(s["workers"]) == 2)(sv.status()), what="generation 2")
    assert [os.readlink(f"/proc/{p}/exe") for p in worker_pids(sv.pid)] == [MEMFD_EXE] * 2


@pytest.mark.skipif(not os.path.exists("/proc/sys/vm/memfd_noexec"),
                    reason="no vm.memfd_noexec before Linux 6.3: every memfd may be run")
def test_builtin_workers_are_the_binary_where_memfds_may_not_be_run(start):
    """vm.memfd_noexec = 2 (set in a PID namespace of its own, as a hardened container
    may have it) refuses an exec'able memfd: the arbiter says why once, and its workers
    are sigvisor run as `sigvisor worker`, serving as ever."""
    wrap = ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c",
            'echo 2 > /proc/sys/vm/memfd_noexec && exec "$@"', "sh"]
    sv = start("-w", "2", wrap=wrap)
    sv.wait_workers(2)
    if not SANITIZED:
        sv.wait_log(r"built-in workers run as /proc/self/exe: no memfd for their static "
                    r"image \(Permission denied\)")
    arbiter = wait_for(lambda: children(sv.pid) and children(sv.pid)[0], what="PID 1")
    pids = worker_pids(arbiter)
    assert len(pids) == 2
    assert all(os.readlink(f"/proc/{p}/exe") == os.path.realpath(SIGVISOR) for p in pids)
    assert sv.get()[0] == 200
