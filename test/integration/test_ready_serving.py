"""--ready-mode auto with an unmodified COMMAND worker: it counts as ready once it is seen
serving (accepting from or waiting on a listening socket), by the eBPF probe or by the
look at /proc, or on READY=1, or after --ready-timeout; never merely once started. A HUP
therefore keeps the old worker until the new one serves.

The probe variants need root and BTF: a skip locally, a failure under CI=true."""
import os
import re
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from conftest import DEADLINE, Sigvisor, http_get, proc_status, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "workers", "late_worker.py")
PYTHON = "/usr/bin/python3"
BPFFS = "/sys/fs/bpf"

# What the log says for each way of serving, by the probe and by /proc.
HOW = {
    ("on", "accept"): r"accept4? on fd \d+",
    ("on", "child"): r"accept4? on fd \d+ in pid \d+ \(python3[.\d]*\)",
    ("on", "epoll"): r"epoll_ctl\(ADD\) on fd \d+",
    ("on", "select"): r"p?select6? on fd \d+",
    ("off", "accept"): r"blocked in accept on fd \d+ \(pid \d+\)",
    ("off", "child"): r"blocked in accept on fd \d+ \(pid \d+\)",
    ("off", "epoll"): r"epoll fd \d+ watches fd \d+ \(pid \d+\)",
    ("off", "select"): r"blocked in select on fd \d+ \(pid \d+\)",
}


def bpf_unavailable():
    if os.geteuid() != 0:
        return "needs root"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "the kernel has no BTF"
    return None


@pytest.fixture
def run(tmpdir_short):
    """run(bpf, *args, command=...) -> Sigvisor with the probes on (own pin dir) or off."""
    started, pins = [], []

    def _run(bpf, *args, **kw):
        extra = ["--bpf", "off"]
        if bpf == "on":
            why = bpf_unavailable()
            if why:
                if os.environ.get("CI") == "true":
                    pytest.fail(f"BPF probes cannot run under CI=true: {why}")
                pytest.skip(why)
            pin = f"{BPFFS}/sigvisor-test-{uuid.uuid4().hex[:12]}"
            pins.append(pin)
            extra = ["--bpf", "on", "--bpf-pin", pin]
        sv = Sigvisor(tmpdir_short, [*extra, *args], wait_ready=False, **kw)
        started.append(sv)

        def up():
            if sv.proc.poll() is not None:
                return "exited"
            return "up" if "listening on http://" in sv.text() else None
        if wait_for(up, what="sigvisor to start") == "exited":
            m = re.search(r"cannot load the probes: (.*)", sv.text())
            if m and os.environ.get("CI") != "true":
                pytest.skip(m.group(1))
            pytest.fail(sv.text()[-2000:])
        return sv.wait_serving()
    yield _run
    for sv in started:
        if sv.proc.poll() is None:
            sv.kill(signal.SIGTERM)
            try:
                sv.wait_exit()
            except AssertionError:
                pass
        sv.cleanup()
    for pin in pins:
        assert not os.path.exists(pin), f"{pin} left behind"


def worker_pid(sv, gen, state=None):
    ws = [w for w in sv.status()["workers"] if w["generation"] == gen
          and (state is None or w["state"] == state)]
    return ws[0]["pid"] if ws else None


@pytest.mark.parametrize("style", ["accept", "epoll", "select", "child"])
@pytest.mark.parametrize("bpf", ["on", "off"])
def test_hup_keeps_the_old_worker_until_the_new_one_serves(run, tmpdir_short, bpf, style):
    delay = os.path.join(tmpdir_short, "delay")
    with open(delay, "w") as f:
        f.write("0.2")
    sv = run(bpf, "-w", "1", "--ready-mode", "auto", "--graceful-timeout", "5",
             command=[PYTHON, WORKER, "--style", style, "--delay-file", delay])
    method = "the eBPF probe" if bpf == "on" else "a look at /proc"
    sv.wait_log(r"--ready-mode auto: a COMMAND worker is ready on READY=1, or once it "
                r"accepts from or waits on a listening socket, seen by " + re.escape(method))
    sv.wait_log(r"worker 0 \(pid \d+, generation 1\) ready after [\d.]+ s: " + HOW[bpf, style])
    old = wait_for(lambda: worker_pid(sv, 1, "ready"), what="generation 1 ready")
    assert http_get(sv.port)[0] == 200

    # The next generation takes 2 s before it serves: the old worker must keep serving
    # all that time, not be retired the moment the new one is started.
    with open(delay, "w") as f:
        f.write("2.0")
    t0 = time.monotonic()
    sv.kill(signal.SIGHUP)
    wait_for(lambda: worker_pid(sv, 2, "booting"), what="generation 2 booting")
    while time.monotonic() - t0 < 1.5:
        status, body = http_get(sv.port)
        assert status == 200 and "gen=1" in body, body
        assert worker_pid(sv, 1, "ready") == old
        assert worker_pid(sv, 2, "booting") is not None
        time.sleep(0.1)
    m = sv.wait_log(r"worker 0 \(pid (\d+), generation 2\) ready after ([\d.]+) s: " +
                    HOW[bpf, style])
    assert float(m[0][1]) >= 1.9
    sv.wait_log(r"retiring worker 0 \(pid %d, generation 1\)" % old)
    text = sv.text()
    assert text.index("generation 2) ready after") < text.index(f"retiring worker 0 (pid {old}")
    assert text.count("--ready-mode auto: a COMMAND worker") == 1  # said once
    sv.wait_log(r"reload complete")

    # late_worker exits at TERM when idle in accept(), and Python cannot tell that from
    # a connection accept() has just returned: a GET that lands on the old worker at
    # that instant is reset by the test's worker, not by sigvisor (real servers, like
    # gunicorn's select-and-flag loop, have no such window).
    def gen2():
        try:
            return "gen=2" in http_get(sv.port)[1]
        except ConnectionResetError:
            return False
    wait_for(gen2, what="generation 2 serving")
    assert sv.status()["readiness"] == ("eBPF" if bpf == "on" else "/proc")


@pytest.mark.parametrize("bpf", ["on", "off"])
def test_a_worker_never_seen_serving_is_ready_after_ready_timeout(run, bpf):
    sv = run(bpf, "-w", "1", "--ready-mode", "auto", "--ready-timeout", "1",
             command=[PYTHON, WORKER, "--style", "none"])
    t0 = time.monotonic()
    assert sv.workers()[0]["state"] == "booting"
    sv.wait_log(r"worker 0 \(pid \d+, generation 1\) not seen serving after 1\.0 s")
    assert time.monotonic() - t0 >= 0.8
    sv.wait_workers(1, "ready")
    assert "failed to boot" not in sv.text()


@pytest.mark.parametrize("bpf", ["on", "off"])
def test_ready_1_counts_in_auto_mode_too(run, bpf):
    notify_worker = os.path.join(HERE, "workers", "notify_worker.py")
    sv = run(bpf, "-w", "1", "--ready-mode", "auto", command=[PYTHON, notify_worker])
    # Whichever comes first: the READY=1 line has no "how".
    sv.wait_log(r"worker 0 \(pid \d+, generation 1\) ready after [\d.]+ s(\n|: )")
    sv.wait_workers(1, "ready")


@pytest.mark.skipif(not shutil.which("gunicorn"), reason="gunicorn is not installed")
@pytest.mark.parametrize("bpf", ["on", "off"])
def test_gunicorn_unchanged_without_notify_socket(run, bpf):
    """gunicorn 20.1 as the COMMAND, with NOTIFY_SOCKET removed so that it cannot say
    READY=1: its worker process (a child of the master sigvisor started) is seen."""
    app = os.path.join(HERE, "..", "..", "scripts", "bench")
    sv = run(bpf, "-w", "1", "--ready-mode", "auto", "--graceful-timeout", "5",
             command=["env", "-u", "NOTIFY_SOCKET", shutil.which("gunicorn"), "-w", "1",
                      "--chdir", app, "app:app"])
    how = r"accept4 on fd \d+ in pid \d+ \(gunicorn\)" if bpf == "on" else \
        r"blocked in (select|accept) on fd \d+ \(pid \d+\)"
    sv.wait_log(r"worker 0 \(pid \d+, generation 1\) ready after [\d.]+ s: " + how, timeout=30)
    assert http_get(sv.port)[0] == 200
