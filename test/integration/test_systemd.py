"""sd_notify with the real clients, not our idea of them: systemd-notify from a shell
worker (its READY=1 comes from its own pid, then BARRIER=1 with an fd it waits on),
and libsystemd's sd_notify / sd_notify_barrier / EXTEND_TIMEOUT_USEC from a C worker."""
import os
import shutil
import time

import pytest

from conftest import build_c_worker, wait_for


@pytest.fixture(scope="module")
def sd_worker():
    yield from build_c_worker("sd_worker", "-lsystemd")


def systemd_notify_script(out):
    # The exit status and time of systemd-notify --ready, then serve nothing.
    return ("t0=$(date +%s%N); systemd-notify --ready --status='from a script'; rc=$?; "
            f"echo $rc $(( ($(date +%s%N) - t0) / 1000000 )) > {out}.tmp; "
            f"mv {out}.tmp {out}; exec sleep 600")


def read_result(path):
    wait_for(lambda: os.path.exists(path), what=f"{path}")
    rc, ms = open(path).read().split()
    return int(rc), int(ms)


@pytest.mark.parametrize("user", [None, "nobody"])
def test_systemd_notify_ready_from_a_script_with_notify_access_all(start, tmpdir_short, user):
    """systemd-notify sends from its own pid: with --notify-access all a process of the
    worker's tree may speak for it. Its barrier must be answered at once (it waits up
    to 5 s, then fails)."""
    if not shutil.which("systemd-notify"):
        pytest.fail("systemd-notify is not installed (package systemd; scripts/deps.sh)")
    os.chmod(tmpdir_short, 0o777)
    out = os.path.join(tmpdir_short, "notify-result")
    args = ["-w", "1", "--ready-mode", "notify", "--notify-access", "all",
            "--ready-timeout", "20"]
    if user:
        args += ["--user", user, "--group", "nogroup"]
    sv = start(*args, command=["sh", "-c", systemd_notify_script(out)])
    [w] = sv.wait_workers(1)
    assert w["status"] == "from a script"
    rc, ms = read_result(out)
    assert rc == 0, "systemd-notify --ready failed (its barrier was not answered?)"
    assert ms < 3000, f"systemd-notify took {ms} ms: it waited for its barrier"
    assert sv.status()["counters"]["notify_rejected"] == 0


def test_systemd_notify_from_a_child_is_not_believed_with_notify_access_main(start,
                                                                            tmpdir_short):
    """The default is systemd's NotifyAccess=main: the child's READY=1 is counted as
    rejected, the worker stays booting; its barrier fd is still closed at once. Under
    --user, systemd-notify cannot pass its parent's pid off as its own
    (SCM_CREDENTIALS), which is how it works for a root worker without 'all'."""
    os.chmod(tmpdir_short, 0o777)
    out = os.path.join(tmpdir_short, "notify-result")
    sv = start("-w", "1", "--ready-mode", "notify", "--ready-timeout", "20",
               "--user", "nobody", "--group", "nogroup",
               command=["sh", "-c", systemd_notify_script(out)])
    rc, ms = read_result(out)
    assert ms < 3000, f"systemd-notify took {ms} ms: its barrier fd was not closed"
    wait_for(lambda: sv.status()["counters"]["notify_rejected"] >= 1, what="rejected")
    assert [w["state"] for w in sv.workers()] == ["booting"]
    sv.wait_log(r"dropped a message from pid \d+: not that worker")


def test_libsystemd_worker_extends_its_start_and_passes_the_barrier(start, tmpdir_short,
                                                                   sd_worker):
    """--ready-timeout 1, but the worker asks for 5 s more (EXTEND_TIMEOUT_USEC) and is
    ready after 1.5 s: not a boot failure. sd_notify_barrier() passes at once."""
    out = os.path.join(tmpdir_short, "barrier")
    t0 = time.monotonic()
    sv = start("-w", "1", "--ready-mode", "notify", "--ready-timeout", "1",
               command=[sd_worker, out, "1.5"])
    [w] = sv.wait_workers(1)
    assert time.monotonic() - t0 >= 1.4
    assert w["status"] == "libsystemd worker"
    sv.wait_log(r"worker 0 \(pid %d\) asked for 5\.000 s more to get ready" % w["pid"])
    assert "failed to boot" not in sv.text() and "not ready" not in sv.text()
    wait_for(lambda: os.path.exists(out) and open(out).read().strip(), what="barrier result")
    # libsystemd: a positive value when the message went out and the barrier passed
    assert int(open(out).read().split()[1]) > 0, open(out).read()


def upstream_socket(tmpdir):
    import socket
    path = os.path.join(tmpdir, "notify")
    up = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    up.bind(path)
    up.settimeout(5)
    return path, up


def test_watchdog_sec_of_our_own_supervisor_is_honoured(start, tmpdir_short):
    """Under systemd with WatchdogSec=, sigvisor gets WATCHDOG_USEC (and WATCHDOG_PID):
    it pings WATCHDOG=1 every half interval from its own loop, and stops when the loop
    stops (SIGSTOP here, a hang in real life)."""
    path, up = upstream_socket(tmpdir_short)
    sv = start("-w", "1", env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    sv.wait_log(r"our supervisor's watchdog is 0\.400 s: WATCHDOG=1 every 0\.200 s")
    pings = []
    t0 = time.monotonic()
    while len(pings) < 6 and time.monotonic() - t0 < 10:
        msg = up.recv(4096).decode()
        if msg == "WATCHDOG=1":
            pings.append(time.monotonic())
    assert len(pings) == 6
    gaps = [b - a for a, b in zip(pings[1:], pings[2:])]
    assert all(0.1 < g < 0.4 for g in gaps), gaps  # every 0.2 s, well within 0.4
    # A stopped loop stops pinging: systemd would restart the service.
    os.kill(sv.pid, 19)  # SIGSTOP
    up.settimeout(0.2)
    try:
        while True:
            up.recv(4096)  # what was already queued
    except OSError:
        pass
    up.settimeout(1.0)
    with pytest.raises(OSError):
        up.recv(4096)
    os.kill(sv.pid, 18)  # SIGCONT
    up.settimeout(5)
    assert "WATCHDOG=1" in [up.recv(4096).decode() for _ in range(3)]
    up.close()


def test_a_watchdog_meant_for_another_pid_is_left_alone(start, tmpdir_short):
    path, up = upstream_socket(tmpdir_short)
    sv = start("-w", "1", env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000",
                               "WATCHDOG_PID": "1"})
    assert up.recv(4096).decode().startswith("READY=1")
    up.settimeout(1.0)
    with pytest.raises(OSError):
        up.recv(4096)
    assert "our supervisor's watchdog" not in sv.text()
    up.close()


def test_systemd_notify_status_long_after_ready_passes_its_barrier(start, tmpdir_short):
    """systemd-notify --status waits on a barrier by default. After READY=1 a worker's
    socket stays read as long as it lives: each later systemd-notify returns at once
    and succeeds, and each STATUS= is shown. The worker waits 1.5 s between them, past
    the moment the socket used to be left unread."""
    out = os.path.join(tmpdir_short, "statuses")
    script = ("systemd-notify --ready || exit 1; for i in 1 2 3; do sleep 1.5; "
              "t0=$(date +%s%N); systemd-notify --status=\"step $i\"; rc=$?; "
              f"echo $i $rc $(( ($(date +%s%N) - t0) / 1000000 )) >> {out}; done; "
              f"mv {out} {out}.done; exec sleep 600")
    sv = start("-w", "1", "--ready-mode", "notify", "--notify-access", "all",
               "--ready-timeout", "20", command=["sh", "-c", script])
    sv.wait_workers(1)
    wait_for(lambda: os.path.exists(out + ".done"), timeout=30, what="three statuses sent")
    rows = [line.split() for line in open(out + ".done").read().splitlines()]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    for i, rc, ms in rows:
        assert rc == "0", f"systemd-notify --status 'step {i}' failed (barrier timed out?)"
        assert int(ms) < 3000, f"systemd-notify --status 'step {i}' took {ms} ms"
    assert sv.workers()[0]["status"] == "step 3"
    assert sv.status()["counters"]["notify_rejected"] == 0


@pytest.mark.parametrize("user", [None, "nobody"])
def test_status_from_a_sender_that_already_exited_is_believed(start, tmpdir_short, user):
    """systemd-notify --no-block sends and exits at once; its shell reaps it before the
    arbiter reads. With --notify-access all its STATUS= still counts for the worker:
    it came on that worker's own socket, from the worker's uid (SCM_CREDENTIALS)."""
    os.chmod(tmpdir_short, 0o777)
    out = os.path.join(tmpdir_short, "sent")
    # Each systemd-notify is reaped (wait) before the next is started: by the time
    # the arbiter reads, none of their pids is left in /proc.
    script = ("systemd-notify --ready --no-block; wait; for i in 1 2 3 4 5; do "
              "systemd-notify --no-block --status=\"gone $i\"; done; "
              f"touch {out}; exec sleep 600")
    args = ["-w", "1", "--ready-mode", "notify", "--notify-access", "all",
            "--ready-timeout", "20"]
    if user:
        args += ["--user", user, "--group", "nogroup"]
    sv = start(*args, command=["sh", "-c", script])
    sv.wait_workers(1)
    wait_for(lambda: os.path.exists(out), what="the statuses sent")
    wait_for(lambda: sv.workers()[0]["status"] == "gone 5", what="the last status shown")
    assert sv.status()["counters"]["notify_rejected"] == 0
    assert "not that worker" not in sv.text()
