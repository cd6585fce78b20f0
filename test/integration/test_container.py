"""sigvisor as a container entrypoint: a kubelet's shutdown, orphans, PID 1."""
import http.client
import os
import signal
import subprocess
import threading
import time

from conftest import children, proc_status, wait_for

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]


def arbiter_of(sv):
    return wait_for(lambda: children(sv.pid) and children(sv.pid)[0], what="PID 1")


class Client(threading.Thread):
    """Requests in a loop until stopped. A request whose connection was accepted and
    that then fails is a failure; a refused connection is not (the pod said it was not
    ready and stopped listening: Kubernetes has routed traffic elsewhere by then)."""

    def __init__(self, port, path):
        super().__init__(daemon=True)
        self.port, self.path = port, path
        self.ok = self.failed = self.refused = 0
        self.stop = threading.Event()
        self.errors = []

    def run(self):
        while not self.stop.is_set():
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                c.connect()
            except OSError:
                self.refused += 1
                time.sleep(0.01)
                continue
            try:
                c.request("GET", self.path)
                r = c.getresponse()
                r.read()
                if r.status == 200:
                    self.ok += 1
                else:
                    self.failed += 1
            except OSError as e:
                self.failed += 1
                self.errors.append(repr(e))
            finally:
                c.close()


def test_kubelet_shutdown_drops_no_accepted_request(start):
    grace = 8.0
    sv = start("-w", "2", "--shutdown-delay", "1", "--graceful-timeout", "3", wrap=UNSHARE)
    sv.wait_workers(2)
    arb = arbiter_of(sv)
    clients = [Client(sv.port, "/"), Client(sv.port, "/sleep?ms=300")]
    for c in clients:
        c.start()
    wait_for(lambda: all(c.ok >= 3 for c in clients), what="load running")
    t0 = time.monotonic()
    # preStop, run inside the container's namespaces as the kubelet would
    subprocess.run(["nsenter", "-t", str(arb), "-p", "-m", "/bin/sh", "-c", "kill -TERM 1"],
                   check=True, timeout=10)
    sv.wait_log(r"shutdown delay: serving 1\.0 s more while reporting not ready")
    st = sv.status()
    assert st["state"] == "shutdown-delay" and st["ready"] is False
    served_during_delay = clients[0].ok
    # the kubelet's TERM, from outside the PID namespace
    os.kill(arb, signal.SIGTERM)
    try:
        code = sv.proc.wait(grace)
    except subprocess.TimeoutExpired:
        sv.proc.kill()  # what the kubelet does when the grace period ends
        raise AssertionError("sigvisor outlived the grace period")
    took = time.monotonic() - t0
    for c in clients:
        c.stop.set()
        c.join(15)
    assert code == 0
    assert took < grace
    assert clients[0].ok > served_during_delay, "nothing served during the shutdown delay"
    for c in clients:
        assert c.failed == 0, c.errors
    sv.wait_log(r"received SIGTERM from pid 0 \(outside our PID namespace\) uid 0: ignored, "
                r"a shutdown is already in progress")


def test_thousands_of_orphans_leave_no_zombie(start, tmpdir_short):
    """A worker that makes orphans as fast as it can: each grandchild is reparented to
    sigvisor (PID 1) when its parent exits, and must be reaped."""
    n = 3000
    maker = os.path.join(tmpdir_short, "orphans.py")
    with open(maker, "w") as f:
        f.write(f"""
import os, time
for i in range({n}):
    pid = os.fork()
    if pid == 0:
        if os.fork() == 0:
            os._exit(0)   # the grandchild: an orphan as soon as its parent is gone
        os._exit(0)
    os.waitpid(pid, 0)
open({maker!r} + ".done", "w").close()
time.sleep(600)
""")
    sv = start("-w", "1", command=["/usr/bin/python3", maker], wrap=UNSHARE)
    arb = arbiter_of(sv)
    wait_for(lambda: os.path.exists(maker + ".done"), 60, "the orphan maker to finish")
    wait_for(lambda: sv.status()["counters"]["orphans_reaped"] >= n, 20,
             f"{n} orphans reaped")
    zombies = [c for c in children(arb)
               if (proc_status(c) or {"State": ""})["State"].startswith("Z")]
    assert zombies == []
    assert sv.status()["counters"]["orphans_reaped"] == n
    os.kill(arb, signal.SIGTERM)
    assert sv.wait_exit() == 0
