"""`sigvisor status` and the control socket."""
import json
import os
import stat
import subprocess

from conftest import SIGVISOR, wait_for


def test_status_text_and_json(start):
    sv = start("-w", "2")
    ws = sv.wait_workers(2)
    out = subprocess.run([SIGVISOR, "status", "--control", sv.control], capture_output=True,
                         text=True, check=True).stdout
    assert "workers: 2 wanted, 2 ready, generation 1" in out
    for w in ws:
        assert str(w["pid"]) in out
    js = json.loads(subprocess.run([SIGVISOR, "status", "--control", sv.control, "--json"],
                                   capture_output=True, text=True, check=True).stdout)
    assert js["pid"] == sv.pid and js["ready"] is True and js["loop"] == (os.environ.get("SIGVISOR_TEST_LOOP") or "epoll")
    assert js["listeners"] == [f"127.0.0.1:{sv.port}"]


def test_control_socket_is_private(start):
    sv = start("-w", "1")
    assert stat.S_IMODE(os.stat(sv.control).st_mode) == 0o600
    sv.kill(15)
    sv.wait_exit()
    assert not os.path.exists(sv.control)


def test_status_finds_the_socket_in_runtime_directory(start, tmpdir_short):
    rd = os.path.join(tmpdir_short, "rt")
    os.mkdir(rd, 0o700)
    from conftest import Sigvisor
    sv = Sigvisor.__new__(Sigvisor)
    # start without --control: the default path is $RUNTIME_DIRECTORY/PID.sock
    p = subprocess.Popen([SIGVISOR, "-b", "127.0.0.1:0", "-w", "1"],
                         env=dict(os.environ, RUNTIME_DIRECTORY=rd),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sock = os.path.join(rd, f"{p.pid}.sock")
        wait_for(lambda: os.path.exists(sock), what="default control socket")
        out = subprocess.run([SIGVISOR, "status", "--json"], capture_output=True, text=True,
                             env=dict(os.environ, RUNTIME_DIRECTORY=rd))
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["pid"] == p.pid
    finally:
        p.terminate()
        assert p.wait(10) == 0
    assert sv is not None


def test_status_without_a_server_says_so(tmpdir_short):
    r = subprocess.run([SIGVISOR, "status", "--control", os.path.join(tmpdir_short, "x.sock")],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "cannot connect" in r.stderr
