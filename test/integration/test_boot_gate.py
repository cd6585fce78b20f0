"""At most boot_cap workers booting on the CPUs at once (issue 29): starting 4,096 at
once left hundreds of processes runnable and the arbiter waiting its turn behind them
for every status and signal. A booter holds a place until it is ready; one seen
waiting (asleep, in I/O) gives it up, so a pool of slow-but-idle booters still starts
whole. Real processes: libsystemd workers that spin, shell workers that wait."""
import os
import subprocess

import pytest

from conftest import build_c_worker, wait_for


def expected_cap():
    # four per CPU we may run on, at least 8, at most 256 (boot_gate.h)
    return max(8, min(256, 4 * len(os.sched_getaffinity(0))))


def booting(sv):
    return sum(1 for w in sv.workers() if w["state"] == "booting")


@pytest.fixture(scope="module")
def spin_worker():
    for exe in build_c_worker("spin_worker", "-lsystemd"):
        # Run once (no arguments: it exits at once) so that it and libsystemd are in
        # the page cache: a booter faulting them in from disk is in I/O ('D') and
        # rightly gives its place up, which would let one more start.
        subprocess.run([exe], timeout=30)
        yield exe


def test_cpu_bound_booters_are_held_at_the_cap(start, spin_worker):
    """Each booter spins 50 ms of CPU before READY=1 (libsystemd's sd_notify), and
    100 ms after it: never more than boot_cap booting at once, and all of them ready in
    the end (each READY=1 lets the next one start). It is on the CPU from its clone to
    its READY=1, so it keeps its place at every look."""
    cap = expected_cap()
    n = 2 * cap
    sv = start("-w", str(n), "--ready-mode", "notify", "--ready-timeout", "120",
               command=[spin_worker, "0.05", "0.1"])
    wait_for(lambda: os.path.exists(sv.control), what="control socket")
    most = 0
    seen_cap = None

    def all_ready():
        nonlocal most, seen_cap
        try:
            st = sv.status()
        except (OSError, ValueError):
            return False
        seen_cap = st["boot_cap"]
        most = max(most, sum(1 for w in st["workers"] if w["state"] == "booting"))
        return sum(1 for w in st["workers"] if w["state"] == "ready") == n
    wait_for(all_ready, 120, f"{n} spinning booters ready")
    assert seen_cap == cap
    assert 0 < most <= cap, f"{most} booting at once, the cap is {cap}"
    assert len(sv.workers()) == n


def test_waiting_booters_start_whole(start, tmpdir_short):
    """Booters that wait for a file before READY=1 give their places up once seen
    asleep: all of them are started while none is ready, not boot_cap of them."""
    cap = expected_cap()
    n = cap + 8
    go = os.path.join(tmpdir_short, "go")
    wait = (f"while [ ! -e {go} ]; do sleep 0.05; done; "
            "systemd-notify --ready; exec sleep 600")
    sv = start("-w", str(n), "--ready-mode", "notify", "--notify-access", "all",
               "--ready-timeout", "120", command=["sh", "-c", wait])
    wait_for(lambda: os.path.exists(sv.control), what="control socket")
    wait_for(lambda: booting(sv) == n, 60, f"{n} waiting booters started")
    st = sv.status()
    assert st["boot_places_released"] >= n - cap
    open(go, "w").close()
    sv.wait_workers(n, timeout=60)
