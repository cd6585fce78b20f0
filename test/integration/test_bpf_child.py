"""--bpf auto loads the probes in a child process (sigvisor-bpf) and the arbiter adopts
what it loaded the way a USR2's new image adopts the probes of the image before: the
arbiter stays one thread with no signal handler, and a shutdown or an upgrade kills a
loader that is still in the verifier instead of waiting for it.

Root only, like test_bpf.py (whose fixture starts the arbiters here, each pinning in a
fresh directory that must be gone once it exits). Under CI=true a probe that cannot run
is a failure, not a skip."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import DEADLINE, SANITIZED, alive, children, proc_status, wait_for
from test_bpf import REFUSED, Bpf, bpffs_mounted, has_bpf_fds, loader_of, skip_or_fail, \
    unavailable
from test_loop import io_uring_unavailable

MASKS = ("SigBlk", "SigIgn", "SigCgt")
HOG = [sys.executable, "-c", "while True: pass"]
# The arbiter, its loader and two CPU hogs on one CPU, the arbiter at nice 19: the
# verifier then takes seconds (27 s measured), so a signal surely lands mid-load.
BUSY = ["taskset", "-c", "0", "nice", "-n", "19"]


@pytest.fixture
def bpf():
    reason = unavailable()
    if reason:
        skip_or_fail(reason)
    if not bpffs_mounted():
        subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf", "-o", "mode=0700"],
                       check=True)
    h = Bpf()
    yield h
    h.cleanup()


@pytest.fixture
def hogs():
    """Two CPU hogs on CPU 0, killed (by pid) after the test."""
    procs = [subprocess.Popen(["taskset", "-c", "0"] + HOG) for _ in range(2)]
    yield procs
    for h in procs:
        h.kill()
        h.wait()


def masks(pid):
    st = proc_status(pid)
    return {"Threads": st["Threads"], **{m: st[m] for m in MASKS}}


def workers_only(sv):
    """The arbiter's children are its workers and nothing else (no loader, no zombie)."""
    pids = {w["pid"] for w in sv.workers()}
    return set(children(sv.pid)) == pids


def fds(pid):
    """{fd: what it points to} of pid, {} once it is gone."""
    out = {}
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
            except FileNotFoundError:
                pass
    except FileNotFoundError:
        pass
    return out


def loader_running(sv):
    """The loader's pid while it loads; fails the test if the probes loaded first (the
    CPU was not busy enough for the test to prove anything)."""
    def seen():
        return loader_of(sv.pid) or ("BPF probes on" in sv.text() and "loaded")
    pid = wait_for(seen, what="the loader to start")
    assert pid != "loaded", "the probes loaded before the signal was sent"
    return pid


@pytest.mark.parametrize("loop", ["epoll", "io_uring"])
def test_after_the_load_the_arbiter_is_as_with_bpf_off(bpf, loop):
    """Once the probes are on, the arbiter has one thread, and its blocked, ignored and
    caught masks are exactly those of an arbiter with --bpf off: no SIGSETXID handler
    (signal 33) left by a loader thread."""
    if loop == "io_uring" and io_uring_unavailable():
        if os.environ.get("CI") == "true":
            pytest.fail(f"io_uring must work under CI=true: {io_uring_unavailable()}")
        pytest.skip(io_uring_unavailable())
    sv = bpf.start("-w", "2", "--loop", loop, bpf="auto")
    sv.wait_log(r"BPF probes on, maps pinned in %s" % re.escape(bpf.pin))
    assert sv.status()["bpf"]["state"] == "on"
    # The loader has answered and exited: reaped, not left a zombie.
    wait_for(lambda: workers_only(sv), what="the loader reaped")
    on = masks(sv.pid)
    off = bpf.start("-w", "2", "--loop", loop, bpf="off")
    off.wait_workers(2)
    assert on == masks(off.pid), (on, masks(off.pid))
    assert on["Threads"] == "1"
    assert int(on["SigCgt"], 16) == 0, on
    # It counts: the adopted probes see the arbiter (registered after the load).
    st = sv.status()
    assert st["bpf"]["parts"]["signals"] == {"state": "on"}, st["bpf"]
    sv.kill(signal.SIGTTIN)
    wait_for(lambda: sv.status()["signals"]["TTIN"].get("generated", 0) >= 1,
             what="TTIN counted by the probes")
    off.kill(signal.SIGTERM)
    assert off.wait_exit() == 0
    bpf.stop(sv)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGQUIT, signal.SIGINT])
def test_term_during_the_load_kills_the_loader_and_exits_at_once(bpf, hogs, sig):
    """TERM (or QUIT, INT) while the verifier runs in the loader: the loader is killed
    at once (the draining workers get the CPU), the arbiter exits within the usual time,
    what the loader pinned is removed, and the loader is not left running."""
    sv = bpf.start("-w", "1", bpf="auto", wrap=BUSY)
    loader = loader_running(sv)
    # The loader holds nothing of the arbiter's but its socket (fd 3): not the listening
    # socket (a restarted sigvisor could not bind while a slow loader holds it).
    held = fds(loader)
    assert {fd for fd, t in held.items() if t.startswith("socket:")} <= {3}, held
    # (The arbiter closes its copy of the loader's end just after the fork.)
    wait_for(lambda: not set(held.values()) & {t for t in fds(sv.pid).values()
                                               if t.startswith("socket:")},
             what=f"no socket shared by the arbiter and the loader: {held}")
    t = time.monotonic()
    sv.kill(sig)
    assert sv.wait_exit(timeout=30) == 0
    took = time.monotonic() - t
    print(f"{sig.name} -> exit: {took:.3f} s")
    text = sv.text()
    assert "BPF probes on" not in text, "loaded before the exit: not a test"
    assert re.search(r"stopped loading the BPF probes without waiting for the BPF verifier "
                     r"\(killed the loader, pid %d\)" % loader, text), text[-3000:]
    # The kill comes with the signal, before the workers are told to stop.
    assert text.index("stopped loading the BPF probes") < text.index(" shutdown: sending")
    assert took < 10.0 or SANITIZED, f"{sig.name} -> exit took {took:.1f} s"
    assert not os.path.exists(bpf.pin), os.listdir(bpf.pin)
    # SIGKILLed: gone (or a zombie for whoever inherited it), never still loading.
    wait_for(lambda: not alive(loader) or proc_status(loader)["State"].startswith("Z"),
             what="the killed loader to end")


def test_usr2_during_the_load_kills_the_loader_and_the_new_image_loads(bpf, hogs):
    """USR2 while the loader is in the verifier: the exec does not wait for it (killed,
    its pins removed), the new image loads the probes itself and reaps the old loader
    (its child now) instead of leaving a zombie."""
    sv = bpf.start("-w", "1", bpf="auto", wrap=BUSY)
    loader = loader_running(sv)
    sv.kill(signal.SIGUSR2)
    sv.wait_log(r"upgrade: exec ", timeout=30)
    text = sv.text()
    assert re.search(r"killed the loader, pid %d" % loader, text), text[-3000:]
    assert "BPF probes on" not in text, "loaded before USR2: not a test"
    for h in hogs:  # let the new image's loader through the verifier
        h.kill()
    sv.wait_log(r"BPF probes on, maps pinned in %s" % re.escape(bpf.pin), timeout=30)
    st = sv.status()
    assert st["bpf"]["state"] == "on", st["bpf"]
    wait_for(lambda: not alive(loader), what="the old loader reaped by the new image")
    wait_for(lambda: workers_only(sv), what="no loader or zombie left")
    assert masks(sv.pid)["Threads"] == "1"
    assert int(masks(sv.pid)["SigCgt"], 16) == 0
    bpf.stop(sv)


def test_a_load_failure_is_reported_and_the_loader_reaped(bpf):
    """The loader's verifier refusals reach the arbiter's log: an optional program's as a
    warning with the rest adopted, an essential one's as "BPF probes off" with the
    verifier's reason, once; the loader is reaped through its pidfd, nothing stays
    pinned or open, and the arbiter has no handler either way."""
    sv = bpf.start("-w", "1", bpf="auto", env={"SIGVISOR_TEST_BPF_REFUSE": "sv_deliver"})
    sv.wait_workers(1)
    sv.wait_log(r"warn: BPF: the deliveries counter is off: %s" % (REFUSED % "sv_deliver"))
    sv.wait_log(r"BPF probes on")
    st = sv.status()["bpf"]
    assert st["parts"]["deliveries"]["state"] == "off"
    assert re.fullmatch(REFUSED % "sv_deliver", st["parts"]["deliveries"]["reason"]), st
    assert st["parts"]["signals"] == {"state": "on"}
    wait_for(lambda: workers_only(sv), what="the loader reaped")
    assert masks(sv.pid)["Threads"] == "1" and int(masks(sv.pid)["SigCgt"], 16) == 0
    bpf.stop(sv)

    sv = bpf.start("-w", "1", bpf="auto", env={"SIGVISOR_TEST_BPF_REFUSE": "sv_generate"})
    sv.wait_workers(1)
    sv.wait_log(r"BPF probes off: the kernel's verifier refused")
    st = sv.status()["bpf"]
    assert st["state"] == "off"
    assert re.match(REFUSED % "sv_generate", st["reason"]), st
    assert sv.text().count("BPF probes off: ") == 1
    assert "Permission denied" not in sv.text()
    wait_for(lambda: workers_only(sv), what="the loader reaped")
    assert not has_bpf_fds(sv.pid)
    assert not os.path.exists(bpf.pin), os.listdir(bpf.pin)
    assert masks(sv.pid)["Threads"] == "1" and int(masks(sv.pid)["SigCgt"], 16) == 0
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0
    assert not os.path.exists(bpf.pin)
