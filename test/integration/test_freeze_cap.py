"""Stopping without a reset freezes a TCP listener with a socket filter that drops new
SYNs; this kernel allows one only with CAP_NET_ADMIN (not in a container's default
set, nor for a non-root arbiter). Then sigvisor says once, at start, what that costs
and what to grant, and nothing more at each stop."""
import os
import signal

from conftest import wait_for

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
WARNING = r"stopping without a reset needs CAP_NET_ADMIN here"


def test_a_non_root_arbiter_says_once_what_a_stop_may_cost(start, tmpdir_short):
    os.chmod(tmpdir_short, 0o777)
    sv = start("-w", "1", wrap=NOBODY)
    sv.wait_workers(1)
    sv.wait_log(WARNING + r" \(Operation not permitted for the socket filter that drops "
                r"new SYNs while a TCP listener closes\).*grant NET_ADMIN")
    sv.kill(signal.SIGHUP)
    wait_for(lambda: (lambda s: s["generation"] == 2 and not s["reloading"])(sv.status()),
             what="a reload")
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0
    text = sv.text()
    assert text.count("needs CAP_NET_ADMIN") == 1, text[-3000:]
    assert "cannot stop new connections" not in text, text[-3000:]


def test_a_unix_only_arbiter_needs_nothing(start, tmpdir_short):
    os.chmod(tmpdir_short, 0o777)
    sv = start("-w", "1", "-b", f"unix:{tmpdir_short}/app.sock", bind=False, wrap=NOBODY,
               wait_ready=False)
    wait_for(lambda: os.path.exists(sv.control), what="the control socket")
    sv.wait_workers(1)
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0
    assert "CAP_NET_ADMIN" not in sv.text()


def test_root_freezes_and_says_nothing(start):
    sv = start("-w", "1")
    sv.wait_workers(1)
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0
    assert "CAP_NET_ADMIN" not in sv.text() and "cannot stop new" not in sv.text()
