"""The arbiter never blocks on its own log: a log reader that stops reading (a container
runtime's log driver under pressure) or a full disk loses log lines, counted, and
nothing else. status, /healthz and TERM answer all the while."""
import fcntl
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import SIGVISOR, alive, children, free_port, http_get, wait_for

F_SETPIPE_SZ = 1031
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \S+\[\d+\] \w+: ")


def stalled_pipe():
    """A pipe whose reader reads nothing: its buffer (one page) already full."""
    r, w = os.pipe()
    fcntl.fcntl(w, F_SETPIPE_SZ, 4096)
    fl = fcntl.fcntl(w, fcntl.F_GETFL)
    fcntl.fcntl(w, fcntl.F_SETFL, fl | os.O_NONBLOCK)
    try:
        while True:
            os.write(w, b"#" * 63 + b"\n")  # whole lines: the reader splits on them
    except BlockingIOError:
        pass
    fcntl.fcntl(w, fcntl.F_SETFL, fl)  # what sigvisor is given is a blocking pipe
    return r, w


def drain(fd, until, timeout=10.0):
    """Read fd until the text read matches until; returns the text."""
    fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
    data = b""
    end = time.monotonic() + timeout
    while not re.search(until, data.decode(errors="replace")):
        if time.monotonic() > end:
            raise AssertionError(f"no /{until}/ in the log:\n" +
                                 data.decode(errors="replace")[-3000:])
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.01)
            continue
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def status_fast(sv, within=2.0):
    t = time.monotonic()
    st = sv.status()
    assert time.monotonic() - t < within, "status took too long"
    return st


def reload_until_dropped(sv, most=500):
    """Reload until the arbiter has dropped a log line (each reload logs a dozen lines;
    the queue holds 64 KiB), answering status promptly after each one."""
    for i in range(1, most + 1):
        sv.kill(signal.SIGHUP)
        st = wait_for(lambda: (lambda s: s if s["counters"]["reloads"] >= i and
                                         not s["reloading"] else None)(status_fast(sv)),
                      what=f"reload {i}")
        if st["counters"]["log_lines_dropped"]:
            return
    raise AssertionError(f"{most} reloads and no log line dropped")


@pytest.fixture
def pipe():
    r, w = stalled_pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def start_on_pipe(start, w, *args):
    port = free_port()
    sv = start("-b", f"127.0.0.1:{port}", "--workers", "2", *args, bind=False, output=w)
    sv.port = port
    sv.wait_workers(2)
    return sv


def test_stalled_reader_status_and_healthz_answer(start, pipe):
    r, w = pipe
    sv = start_on_pipe(start, w)
    reload_until_dropped(sv)
    assert http_get(sv.port, "/healthz", timeout=2)[0] == 200
    # The workers share the pipe: their file description is still blocking (the
    # arbiter writes through one of its own).
    # A worker of the generation the last reload retired may exit under our look: the
    # ones still there are checked, and at least one must be.
    looked = 0
    for k in children(sv.pid):
        try:
            with open(f"/proc/{k}/fdinfo/2") as f:
                flags = int(re.search(r"flags:\s+(\d+)", f.read()).group(1), 8)
        except FileNotFoundError:
            continue
        looked += 1
        assert not flags & os.O_NONBLOCK, f"worker {k}'s stderr made non-blocking"
    assert looked, "no worker's stderr to look at"
    # Writing resumes once the reader reads: whole lines, and one saying what was lost.
    text = drain(r, r"did not take \d+ lines")
    for line in text.splitlines():
        assert line.startswith("#") or TEXT_LINE.match(line), f"a cut line: {line!r}"
    n = int(re.search(r"did not take (\d+) lines", text).group(1))
    assert n > 0


def test_stalled_reader_term_exits(start, pipe):
    r, w = pipe
    sv = start_on_pipe(start, w)
    kids = children(sv.pid)
    for _ in range(5):  # some lines queue up behind the full pipe
        sv.kill(signal.SIGTTIN)
        sv.kill(signal.SIGTTOU)
    status_fast(sv)
    t = time.monotonic()
    sv.kill(signal.SIGTERM)
    # The graceful drain of idle workers, then at most a second for the log.
    assert sv.wait_exit(timeout=8) == 0
    assert time.monotonic() - t < 6
    for k in kids:
        wait_for(lambda: not alive(k), 5, f"worker {k} to exit")


def test_metrics_count_dropped_lines(start, pipe):
    r, w = pipe
    mport = free_port()
    sv = start_on_pipe(start, w, "--metrics", f"127.0.0.1:{mport}")
    reload_until_dropped(sv)
    code, body = http_get(mport, "/metrics", timeout=2)[:2]
    assert code == 200
    m = re.search(r"^sigvisor_log_lines_dropped_total (\d+)$", body, re.M)
    assert m and int(m.group(1)) > 0, body[-2000:]


def test_full_disk_counts_dropped_lines(tmpdir_short):
    """--log-file on a 64 KiB tmpfs that fills up: lines fail with ENOSPC, are counted,
    and the arbiter goes on."""
    mnt = os.path.join(tmpdir_short, "mnt")
    os.mkdir(mnt)
    ctl = os.path.join(tmpdir_short, "control.sock")
    port = free_port()
    loop = os.environ.get("SIGVISOR_TEST_LOOP")
    argv = [SIGVISOR, "-b", f"127.0.0.1:{port}", "--control", ctl, "--bpf", "off",
            "--workers", "1", "--log-file", f"{mnt}/sigvisor.log"]
    if loop:
        argv += ["--loop", loop]
    script = 'mount -t tmpfs -o size=64k sv-full "$0" && exec "$@"'
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                             script, mnt] + argv, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: os.path.exists(ctl) or proc.poll() is not None, what="control")
        assert proc.poll() is None, proc.stderr.read()
        from conftest import Sigvisor
        sv = Sigvisor.__new__(Sigvisor)  # only its status(): the log is in the mount
        sv.control, sv.pid = ctl, proc.pid
        inside = f"/proc/{proc.pid}/root{mnt}"
        # Fill the file system from outside, through the arbiter's own root.
        with open(f"{inside}/filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        # The log file's last page may still take a few lines: scale until one fails.
        for i in range(1, 101):
            os.kill(proc.pid, signal.SIGTTIN if i % 2 else signal.SIGTTOU)
            st = wait_for(lambda: (lambda s: s if s["target"] == 1 + i % 2 else None)(
                sv.status()), what=f"scaling step {i}")
            if st["counters"]["log_lines_dropped"]:
                break
        else:
            raise AssertionError("no log line dropped on a full file system")
        # Room again: the next line says how many were lost.
        os.unlink(f"{inside}/filler")
        os.kill(proc.pid, signal.SIGTTOU)
        wait_for(lambda: re.search(r"did not take \d+ lines",
                                   open(f"{inside}/sigvisor.log").read()),
                 what="the dropped-lines line")
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
