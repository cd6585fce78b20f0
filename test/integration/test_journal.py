"""Under journald (stderr is the stream JOURNAL_STREAM names, as systemd sets it for a
service with StandardError=journal) every line carries a "<N>" syslog priority prefix
and no timestamp of its own: journald stamps it, and reads the priority (sd-daemon(3)).
The stream here is a unix stream socket, as journald's is; the variable naming another
file (stderr redirected by the user) changes nothing."""
import os
import re
import signal
import socket
import time

from conftest import wait_for

STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def read_until(sock, pattern, timeout=10.0):
    sock.settimeout(0.2)
    data = b""
    end = time.monotonic() + timeout
    while not re.search(pattern, data.decode(errors="replace"), re.M):
        assert time.monotonic() < end, f"no /{pattern}/ in:\n{data.decode(errors='replace')}"
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def journal_stream():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    st = os.fstat(theirs.fileno())
    return ours, theirs, f"{st.st_dev}:{st.st_ino}"


def test_lines_to_journald_have_a_priority_and_no_timestamp(start):
    ours, theirs, js = journal_stream()
    try:
        sv = start("-w", "1", output=theirs.fileno(), env={"JOURNAL_STREAM": js})
        theirs.close()
        sv.kill(signal.SIGTTIN)
        # Worker 1, started by the TTIN, is ready: every line before is in.
        text = read_until(ours, r"^<6>sigvisor\[\d+\] info: worker 1 \(pid \d+, generation "
                                r"1\) ready after")
        lines = [line for line in text.splitlines() if line]
        for line in lines:
            assert re.match(r"<[3467]>(sigvisor|worker)\[\d+\] (error|warn|info|debug): ",
                            line), line
            assert not STAMP.search(line[:40]), line
        assert any(line.startswith(f"<6>sigvisor[{sv.pid}] info: ") for line in lines)
        assert any(line.startswith("<6>worker[") for line in lines), text  # the workers too
        # A warning is <4>: a worker killed from outside is replaced with one.
        pid = sv.workers()[0]["pid"]
        os.kill(pid, signal.SIGKILL)
        read_until(ours, rf"^<4>sigvisor\[{sv.pid}\] warn: worker \d+ \(pid {pid}")
    finally:
        ours.close()


def test_json_lines_to_journald_keep_their_time_field(start):
    ours, theirs, js = journal_stream()
    try:
        sv = start("-w", "1", "--log-format", "json", output=theirs.fileno(),
                   env={"JOURNAL_STREAM": js})
        theirs.close()
        text = read_until(ours, r'^<6>\{.*"msg"')
        line = next(l for l in text.splitlines() if l.startswith("<6>{"))
        assert '"ts":' in line, line
        wait_for(lambda: sv.workers(), what="a worker")
    finally:
        ours.close()


def test_a_journal_stream_that_is_not_stderr_changes_nothing(start):
    ours, theirs, _ = journal_stream()
    other = os.stat("/dev/null")
    try:
        sv = start("-w", "1", output=theirs.fileno(),
                   env={"JOURNAL_STREAM": f"{other.st_dev}:{other.st_ino}"})
        theirs.close()
        text = read_until(ours, r"^\d{4}-\d\d-\d\dT\S+ sigvisor\[\d+\] info: ")
        assert not re.search(r"^<\d>", text, re.M), text
        sv.wait_workers(1)
    finally:
        ours.close()
