"""A worker that re-raises the signal it was retired with (puma does: it finishes, then
kill(getpid(), TERM) with the default action) is a retirement, not a crash: counted as
cause="retired", apart from cause="signal", so an alert on crashes does not fire on
every deploy."""
import re
import signal

from conftest import free_port, http_get, run_sigvisor, wait_for

# Serves fd 3; on TERM puts the default action back and sends itself TERM again.
RERAISE = r'''
import os, signal, socket, time
def leave(*_):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(60)
signal.signal(signal.SIGTERM, leave)
s = socket.socket(fileno=3)
while True:
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
    c.close()
'''

# Dies of a signal nobody sent to stop it: a crash.
CRASH = r'''
import os, signal, sys
if os.environ.get("LISTEN_FDS") and not os.path.exists(sys.argv[1]):
    open(sys.argv[1], "w").close()
    os.kill(os.getpid(), signal.SIGSEGV)
signal.pause()
'''


def exits(sv):
    c = sv.status()["counters"]
    return c["exited_retired"], c["exited_signal"]


def test_a_worker_that_reraises_term_is_retired_not_crashed(start):
    mport = free_port()
    sv = start("-w", "2", "--ready-mode", "start", "--metrics", f"127.0.0.1:{mport}",
               command=["/usr/bin/python3", "-c", RERAISE])
    sv.wait_workers(2)
    for i in (1, 2):
        sv.kill(signal.SIGHUP)
        wait_for(lambda: (lambda s: s["counters"]["reloads"] >= i and not s["reloading"]
                          and s["counters"]["exited"] >= 2 * i)(sv.status()),
                 what=f"reload {i} done")
    assert exits(sv) == (4, 0)
    body = http_get(mport, "/metrics", timeout=2)[1]
    assert re.search(r'^sigvisor_worker_exits_total\{cause="retired"\} 4$', body, re.M), body
    assert re.search(r'^sigvisor_worker_exits_total\{cause="signal"\} 0$', body, re.M), body
    text = run_sigvisor("status", "--control", sv.control).stdout
    assert re.search(r"signal 0, retired by their stop signal 4\)", text), text
    assert "unexpectedly" not in sv.text()


def test_a_signal_it_was_not_sent_is_still_a_crash(start, tmpdir_short):
    mark = f"{tmpdir_short}/crashed"
    sv = start("-w", "1", "--ready-mode", "start",
               command=["/usr/bin/python3", "-c", CRASH, mark])
    wait_for(lambda: sv.status()["counters"]["exited_signal"] >= 1, what="the crash counted")
    assert exits(sv)[0] == 0
    sv.wait_log(r"killed by SIGSEGV .*, unexpectedly")
