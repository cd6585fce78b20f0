"""Socket activation of sigvisor itself, with the real systemd-socket-activate: it
listens, and on the first connection execs sigvisor with LISTEN_FDS=1 and LISTEN_PID =
sigvisor's pid. That first connection waits in the queue and is served by a worker."""
import os
import shutil
import signal
import socket

import pytest

from conftest import free_port, proc_environ, wait_for


def activate(start, *args, listen, fdname=None, **kw):
    if not shutil.which("systemd-socket-activate"):
        pytest.fail("systemd-socket-activate is not installed (package systemd)")
    wrap = ["systemd-socket-activate", "-l", listen]
    if fdname:
        wrap.append(f"--fdname={fdname}")
    sv = start(*args, wrap=wrap, bind=False, wait_ready=False, **kw)
    sv.wait_log(r"Listening on .* as 3\.")
    return sv


def worker_env(sv):
    [w, *_] = sv.wait_workers(len(sv.workers()))
    return proc_environ(w["pid"]), w["pid"]


def test_activated_socket_replaces_binds_survives_hup_and_term_exits_0(start):
    port = free_port()
    sv = activate(start, "-w", "2", "-b", "127.0.0.1:1", listen=f"127.0.0.1:{port}",
                  fdname="web")
    sv.port = port
    assert sv.get("/")[0] == 200  # the connection that starts sigvisor is served
    sv.wait_log(r"socket activation: serving on 127\.0\.0\.1:%d \(fd 3, web\)" % port)
    sv.wait_log(r"bind 127\.0\.0\.1:1 ignored: serving on the sockets systemd passed")
    sv.wait_workers(2)
    assert sv.get("/")[0] == 200
    env, wpid = worker_env(sv)
    assert env["LISTEN_FDS"] == "1" and env["LISTEN_PID"] == str(wpid)
    assert env["LISTEN_FDNAMES"] == "web"
    assert "SIGVISOR_ACTIVATED" not in env
    assert sv.status()["listeners"] == [f"127.0.0.1:{port}"]

    old = {w["pid"] for w in sv.workers()}
    sv.kill(signal.SIGHUP)
    sv.wait_log(r"reload complete")
    assert not old & {w["pid"] for w in sv.wait_workers(2)}
    sv.wait_log(r"reload: bind 127\.0\.0\.1:1 ignored")
    assert sv.status()["listeners"] == [f"127.0.0.1:{port}"]
    assert sv.get("/")[0] == 200
    assert "no longer bound" not in sv.text()

    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0


def test_activated_socket_is_handed_over_across_usr2(start):
    port = free_port()
    sv = activate(start, "-w", "1", listen=f"127.0.0.1:{port}", fdname="api")
    sv.port = port
    assert sv.get("/")[0] == 200
    sv.wait_workers(1)
    sv.kill(signal.SIGUSR2)
    sv.wait_log(r"upgraded in place")
    # Only the new worker left: the old one may still be stopping when the new one is
    # ready (a slow build shows it), and worker_env() counts every worker.
    wait_for(lambda: sv.status()["generation"] == 2 and
             [(w["generation"], w["state"]) for w in sv.workers()] == [(2, "ready")],
             what="generation 2 alone")
    assert sv.status()["listeners"] == [f"127.0.0.1:{port}"]
    assert sv.get("/")[0] == 200
    env, _ = worker_env(sv)
    assert env["LISTEN_FDNAMES"] == "api"
    assert "no longer bound" not in sv.text()
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0


def test_activated_unix_socket_path_is_left_to_systemd(start, tmpdir_short):
    path = os.path.join(tmpdir_short, "app.sock")
    sv = activate(start, "-w", "1", listen=path)
    c = socket.socket(socket.AF_UNIX)
    c.settimeout(10)
    c.connect(path)
    c.sendall(b"GET / HTTP/1.0\r\n\r\n")
    assert c.recv(100).startswith(b"HTTP/1.")
    c.close()
    sv.wait_log(r"socket activation: serving on unix:%s \(fd 3\)" % path)
    sv.wait_workers(1)
    env, _ = worker_env(sv)
    assert env["LISTEN_FDNAMES"] == "unix-" + path
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0
    assert os.path.exists(path), "the .socket unit's path must stay"
