"""Readiness by serving (--ready-mode auto, --bpf off) looks at a booting worker through
/proc: its epoll interest lists (fdinfo) and, for a thread blocked in poll or select, the
fd set in its memory (process_vm_readv). A worker can make either wait forever: a page
registered with userfaultfd and never filled (or memory on a hung FUSE or NFS mapping).
The arbiter must go on answering `sigvisor status` and TERM all the same, on both loops:
the look runs in a child process with a deadline, is killed at it, is tried again a
bounded number of times, and such children are bounded in number while the kernel holds
killed ones.

  select  the worker's select() reads its fd_set from the page and sleeps in the fault;
          reading that fd_set sleeps too (killable: the killed look goes at once)
  epoll   the worker's epoll_wait() faults writing its events, holding the epoll's
          mutex; reading the epoll fd's fdinfo waits for that mutex, unkillably, until
          the worker is gone

Skips, with the reason, where userfaultfd cannot catch the kernel's own accesses (needs
vm.unprivileged_userfaultfd=1 or CAP_SYS_PTRACE, or /dev/userfaultfd) or io_uring is off."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import DEADLINE, Sigvisor, alive, children, wait_for, wait_idle
from test_boot_gate import expected_cap
from test_loop import io_uring_unavailable

HERE = os.path.dirname(os.path.abspath(__file__))
LOOK_MS = 1000  # SERVING_LOOK_MS (serving.h)
PROMPT = 1.0    # the most a status answer or a graceful exit may take here


@pytest.fixture(scope="module")
def uffd_worker():
    d = tempfile.mkdtemp(prefix="sv-uffd-", dir="/tmp")
    os.chmod(d, 0o755)
    exe = os.path.join(d, "uffd_worker")
    r = subprocess.run(["cc", "-O1", "-pthread", "-o", exe,
                        os.path.join(HERE, "workers", "uffd_worker.c")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"building the userfaultfd worker failed:\n{r.stderr}"
    probe = subprocess.run([exe, "--probe"], capture_output=True, text=True, timeout=DEADLINE)
    if probe.returncode == 77:
        shutil.rmtree(d, ignore_errors=True)
        pytest.skip(probe.stderr.strip())
    assert probe.returncode == 0, probe.stderr
    yield exe
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def hostile(tmpdir_short, uffd_worker):
    """hostile(loop, style, n) -> (sv, worker pids): n workers armed and stuck in their
    fault. Afterwards kills, by pid, any worker still there (on the code before the fix
    the epoll style leaves the arbiter unkillable until its worker is gone) and waits
    for every look child the arbiter had to be gone too."""
    started, workers, lookers, born = [], [], {}, {}

    def _hostile(loop, style, n=1):
        if loop == "io_uring":
            why = io_uring_unavailable()
            if why:
                pytest.skip(why)
        marker = os.path.join(tmpdir_short, "armed")
        # The worker's id makes each marker its own file.
        cmd = ["/bin/sh", "-c", f'exec "$0" "{marker}.$SIGVISOR_WORKER_ID" {style}',
               uffd_worker]
        sv = Sigvisor(tmpdir_short, ["-w", str(n), "--ready-mode", "auto", "--ready-timeout",
                                     "30", "--graceful-timeout", "5", "--loop", loop],
                      command=cmd)
        started.append(sv)

        def armed(i):
            try:
                with open(f"{marker}.{i}") as f:
                    return int(f.read().split()[1])
            except (FileNotFoundError, IndexError, ValueError):
                return None
        for i in range(n):
            pid = wait_for(lambda: armed(i), what=f"worker {i} armed")
            workers.append(pid)
            born[pid] = start_time(pid)

        def stuck(pid):
            with open(f"/proc/{pid}/wchan") as f:
                return f.read() == "handle_userfault"
        for pid in workers:
            wait_for(lambda: stuck(pid), what=f"worker {pid} in its userfaultfd fault")
        return sv, list(workers)

    def note_lookers(sv):
        for k in children(sv.pid):
            if k not in workers and k not in lookers:
                lookers[k] = start_time(k)
    _hostile.note_lookers = note_lookers
    yield _hostile
    for pid in workers:
        if not gone(pid, born[pid]):  # still that worker, not a process with its pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                # Went by itself since: with several workers, killing five is five
                # boot failures, and the arbiter stops the rest as it exits 3.
                pass
    for sv in started:
        sv.cleanup()
    for pid, t in lookers.items():
        wait_for(lambda: gone(pid, t), what=f"look child {pid} to be gone")


def start_time(pid):
    """pid's start time (stat field 22), to tell it from a later process with its pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (FileNotFoundError, ProcessLookupError):
        return None


def gone(pid, started):
    return start_time(pid) != started or not alive(pid)


def timed_status(sv):
    t0 = time.monotonic()
    st = sv.status()
    return st, time.monotonic() - t0


@pytest.mark.parametrize("style", ["select", "epoll"])
@pytest.mark.parametrize("loop", ["epoll", "io_uring"])
def test_a_worker_whose_memory_never_answers_cannot_stop_the_loop(hostile, loop, style):
    sv, (worker,) = hostile(loop, style)
    # Answers all through: while a look is stuck, at its deadline, and after. A stuck
    # look is killed at 1 s and the worker looked at again alone 1 s, then 2 s later:
    # three timeouts, then no more looks.
    gave_up = r"warn: readiness: the look at /proc for pid %d did not finish in 1\.0 s, 3 " \
              r"times .*killed the look \(pid \d+\), pid %d is not looked at again" % \
              (worker, worker)
    end = time.monotonic() + 6 * LOOK_MS / 1000 + DEADLINE
    while not re.search(gave_up, sv.text()):
        assert time.monotonic() < end, "no give-up warning\n" + sv.text()[-3000:]
        st, took = timed_status(sv)
        assert took < PROMPT, f"status took {took:.2f} s"
        assert [w["state"] for w in st["workers"]] == ["booting"]
        hostile.note_lookers(sv)
        time.sleep(0.05)
    text = sv.text()
    assert len(re.findall(r"info: readiness: the look at /proc for pid %d did not finish "
                          r"in 1\.0 s; killed it \(pid \d+\), looking again in [12]\.0 s"
                          % worker, text)) == 2, text
    st, took = timed_status(sv)
    assert took < PROMPT and st["workers"][0]["state"] == "booting"
    assert st["counters"]["ready_looks_killed"] == 3
    hostile.note_lookers(sv)
    wait_idle(sv.pid)  # nothing left to look at: no timer spins on the stuck worker
    assert sv.text().count("did not finish in") == 3

    t0 = time.monotonic()
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0
    assert time.monotonic() - t0 < PROMPT + 1.0
    assert re.search(r"worker 0 \(pid %d, generation 1\) killed by SIGTERM" % worker,
                     sv.text())


def test_stuck_looks_are_bounded_and_the_arbiter_still_answers(hostile):
    """Three workers whose epoll fdinfo cannot be read: each look that times out leaves
    a child the kernel will not let go (not even by SIGKILL) until its worker is gone,
    and each worker is tried three times. With seven such children (SERVING_LOOKS less
    the one kept for the look at other workers) no look at a worker that timed out
    starts; status and TERM are answered throughout; the children end with the
    workers."""
    sv, workers = hostile(os.environ.get("SIGVISOR_TEST_LOOP") or "epoll", "epoll", 3)

    def paused():
        hostile.note_lookers(sv)
        st, took = timed_status(sv)
        assert took < PROMPT, f"status took {took:.2f} s"
        assert all(w["state"] == "booting" for w in st["workers"])
        return re.search(r"warn: readiness: 7 looks at /proc are under way or stuck in the "
                         r"kernel \(killed, not gone yet\); no new look at a worker whose "
                         r"look timed out until one ends", sv.text())
    wait_for(paused, 9 * LOOK_MS / 1000 + DEADLINE, "the looks to be paused", interval=0.1)
    stuck = {k: start_time(k) for k in children(sv.pid) if k not in workers}
    assert len(stuck) == 7, stuck
    for k in stuck:
        with open(f"/proc/{k}/stat") as f:
            assert f.read().rsplit(")", 1)[1].split()[0] == "D"
    st, took = timed_status(sv)
    assert took < PROMPT and st["counters"]["orphans_reaped"] == 0
    assert st["counters"]["ready_looks_killed"] == 7
    wait_idle(sv.pid)  # paused, not spinning on the looks it may not start

    t0 = time.monotonic()
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0
    assert time.monotonic() - t0 < PROMPT + 1.0
    for k, t in stuck.items():
        wait_for(lambda: gone(k, t), what=f"look child {k} to end with the workers")


def test_booters_stuck_in_their_memory_give_their_boot_places_up(hostile):
    """More booters than there are places to boot in (boot_gate.h: 4 a CPU), each stuck
    in a userfaultfd fault before it could be ready: the look at a holder, its
    /proc/PID/stat read on the loop, answers all the same (that file takes no lock of
    the process's memory), sees it not running and lets the next one start. All of them
    get started (the fixture waits for each to be armed) and status answers promptly."""
    cap = expected_cap()
    n = cap + 4
    sv, workers = hostile(os.environ.get("SIGVISOR_TEST_LOOP") or "epoll", "select", n)
    assert len(workers) == n
    st, took = timed_status(sv)
    hostile.note_lookers(sv)
    assert took < PROMPT, f"status took {took:.2f} s"
    assert st["boot_cap"] == cap
    assert [w["state"] for w in st["workers"]] == ["booting"] * n
    assert st["boot_places_released"] >= n - cap
