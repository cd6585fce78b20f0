"""--max-workers: the pool grows from --workers to --max-workers while connections wait in
its listen queue, and returns to --workers once the queue stayed empty, with workers that
serve one request at a time (a Python server on fd 3 that sleeps 200 ms per request, and
the built-in worker's /block route), under a bounded load from client threads started
here. Each decision is counted in /metrics and logged once with its reason."""
import http.client
import os
import re
import signal
import threading
import time

from conftest import free_port, http_get, run_sigvisor, wait_for

# One request at a time, 200 ms each: a sync worker (gunicorn's sync, PHP-FPM's).
BLOCKING = ["/usr/bin/python3",
            os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers", "sync_worker.py"),
            "200"]

UP = r'autoscale: queue (\d+) for (\d+\.\d) s on 127\.0\.0\.1:(\d+): (\d+) -> (\d+) workers'
DOWN = (r'autoscale: queues empty for (\d+\.\d) s(?:, (\d+) of (\d+) workers idle)?: '
        r'(\d+) -> (\d+) workers')


class Load:
    """n client threads, each sending its next request when the last one is answered,
    until stop() or at most `limit` seconds (bounded even if a test fails first)."""

    def __init__(self, port, n, path="/", limit=30.0):
        self.port, self.path = port, path
        self.done = threading.Event()
        self.end = time.monotonic() + limit
        self.ok = self.failed = 0
        self.errors = []  # what failed, for the assertion's message
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(n)]
        for t in self.threads:
            t.start()

    def run(self):
        while not self.done.is_set() and time.monotonic() < self.end:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                c.request("GET", self.path, headers={"Connection": "close"})
                c.getresponse().read()
                with self.lock:
                    self.ok += 1
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.failed += 1
                    self.errors.append(repr(e))
            finally:
                c.close()

    def stop(self):
        self.done.set()
        for t in self.threads:
            t.join(15)


def decisions(mport):
    body = http_get(mport, "/metrics", timeout=5)[1]
    got = dict(re.findall(r'^sigvisor_autoscale_decisions_total\{direction="(up|down)"\} (\d+)$',
                          body, re.M))
    return int(got.get("up", -1)), int(got.get("down", -1))


def target(sv):
    return sv.status()["target"]


def start_scaled(start, *args, command=None):
    mport = free_port()
    sv = start("--metrics", f"127.0.0.1:{mport}", *args, command=command)
    return sv, mport


def grows_and_returns(sv, mport, path):
    assert sv.status()["autoscale"]["min"] == 1 and sv.status()["autoscale"]["max"] == 3
    load = Load(sv.port, 6, path)
    try:
        wait_for(lambda: target(sv) == 3, 15, "the pool to grow to --max-workers 3")
        sv.wait_workers(3, timeout=10)
        # Six clients for three workers: the queue never empties, so no step down.
        assert decisions(mport) == (2, 0)
    finally:
        load.stop()
    assert load.ok > 0 and load.failed == 0, load.errors
    wait_for(lambda: target(sv) == 1, 15, "the pool to return to --workers 1")
    sv.wait_workers(1, timeout=10)
    assert decisions(mport) == (2, 2)
    ups = re.findall(UP, sv.text())
    assert [(u[3], u[4]) for u in ups] == [("1", "2"), ("2", "3")], sv.text()[-3000:]
    assert all(int(u[0]) > 0 and int(u[2]) == sv.port for u in ups)
    downs = re.findall(DOWN, sv.text())
    assert [(d[3], d[4]) for d in downs] == [("3", "2"), ("2", "1")]
    assert all(float(d[0]) >= 1.0 for d in downs)
    # The built-in worker is asked whether it has a request in hand; a COMMAND is not.
    assert all(bool(d[1]) == (path != "/") for d in downs), downs
    st = sv.status()["autoscale"]
    assert (st["up"], st["down"], st["target"]) == (2, 2, 1)


def test_a_blocking_command_pool_grows_while_requests_wait_and_returns(start):
    sv, mport = start_scaled(start, "-w", "1", "--max-workers", "3", "--scale-up-after", "0.1",
                             "--scale-down-after", "1", "--ready-mode", "start",
                             command=BLOCKING)
    sv.wait_workers(1)
    grows_and_returns(sv, mport, "/")


def test_the_builtin_worker_grows_and_returns(start):
    sv, mport = start_scaled(start, "-w", "1", "--max-workers", "3", "--scale-up-after", "0.1",
                             "--scale-down-after", "1")
    sv.wait_workers(1)
    grows_and_returns(sv, mport, "/block?ms=200")


def sockets_of(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return n


def test_the_builtin_worker_is_not_retired_while_every_worker_has_a_request_in_hand(start):
    """/sleep requests parked in both built-in workers: nothing waits in the queue, yet no
    worker is idle, so the pool keeps its size; once they are answered it shrinks."""
    sv, mport = start_scaled(start, "-w", "1", "--max-workers", "2", "--scale-up-after", "0.1",
                             "--scale-down-after", "1")
    sv.wait_workers(1)
    r = run_sigvisor("workers", "2", "--control", sv.control)
    assert r.returncode == 0, r.stderr
    pids = [w["pid"] for w in sv.wait_workers(2)]
    base = {p: sockets_of(p) for p in pids}
    held = []
    try:
        import socket
        # One more parked request at a time until each worker holds one (which worker
        # accepts is the kernel's choice: seen in its fds).
        for _ in range(40):
            if all(sockets_of(p) > base[p] for p in pids):
                break
            total = sum(sockets_of(p) for p in pids)
            c = socket.create_connection(("127.0.0.1", sv.port), timeout=5)
            c.sendall(b"GET /sleep?ms=4000 HTTP/1.1\r\nHost: x\r\n\r\n")
            held.append(c)
            wait_for(lambda: sum(sockets_of(p) for p in pids) > total, 5, "the request taken")
        assert all(sockets_of(p) > base[p] for p in pids), "a worker never took a request"
        sv.wait_log(r"autoscale: queues empty for \d+\.\d s, but none of 2 workers is idle: "
                    r"keeping 2 workers", timeout=5)
        assert target(sv) == 2
        assert all(w["status"].startswith("busy: ") for w in sv.workers()), sv.workers()
        assert decisions(mport) == (0, 0)
        for c in held:
            assert c.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for c in held:
            c.close()
    wait_for(lambda: target(sv) == 1, 10, "the pool back at 1 once the requests are answered")
    downs = re.findall(DOWN, sv.text())
    assert [(d[1], d[2], d[3], d[4]) for d in downs] == [("2", "2", "2", "1")], downs
    assert decisions(mport) == (0, 1)


def test_no_decision_under_a_steady_load_the_pool_serves(start):
    """Two clients, two workers (the minimum): nothing ever waits long, nothing changes;
    and four clients held at --max-workers 4: no step down while they last."""
    sv, mport = start_scaled(start, "-w", "2", "--max-workers", "4", "--scale-up-after", "0.1",
                             "--scale-down-after", "0.5", "--ready-mode", "start",
                             command=BLOCKING)
    sv.wait_workers(2)
    load = Load(sv.port, 2)
    try:
        wait_for(lambda: load.ok >= 20, 15, "20 requests answered")
        assert decisions(mport) == (0, 0)
        assert target(sv) == 2
    finally:
        load.stop()
    load = Load(sv.port, 6)
    try:
        wait_for(lambda: target(sv) == 4, 15, "the pool to reach --max-workers 4")
        looks = sv.status()["autoscale"]["looks"]
        # Several --scale-down-after's worth of steady waiting at the maximum.
        wait_for(lambda: sv.status()["autoscale"]["looks"] >= looks + 20, 10, "20 looks more")
        assert decisions(mport) == (2, 0)
        assert len(re.findall(r"autoscale: .*at the maximum of 4 workers", sv.text())) == 1
    finally:
        load.stop()
    assert load.failed == 0, load.errors


def test_metrics_show_the_listen_queue_read_when_scraped(start):
    """A worker that never accepts: the connections wait, and /metrics says how many, with
    the backlog, without --max-workers."""
    sv, mport = start_scaled(start, "-w", "1", "--backlog", "64", "--ready-mode", "start",
                             command=["/usr/bin/python3", "-c", "import time; time.sleep(600)"])
    sv.wait_workers(1)
    socks = []
    try:
        import socket
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", sv.port), timeout=5)
            socks.append(s)
        addr = f"127.0.0.1:{sv.port}"

        def queued():
            body = http_get(mport, "/metrics", timeout=5)[1]
            m = re.search(r'^sigvisor_listen_queue\{addr="%s"\} (\d+)$' % re.escape(addr),
                          body, re.M)
            return m and int(m.group(1)) == 5 and body
        body = wait_for(queued, 5, "sigvisor_listen_queue 5")
        assert re.search(r'^sigvisor_listen_queue_max\{addr="%s"\} 64$' % re.escape(addr),
                         body, re.M), body
        assert decisions(mport) == (0, 0)
        assert sv.status()["autoscale"] is None
    finally:
        for s in socks:
            s.close()


def test_hup_keeps_the_size_within_the_new_bounds(start, tmpdir_short):
    conf = os.path.join(tmpdir_short, "sv.conf")
    with open(conf, "w") as f:
        f.write("workers = 1\nmax-workers = 3\nscale-up-after = 0.1\nscale-down-after = 60\n")
    sv, mport = start_scaled(start, "-c", conf, "--ready-mode", "start",
                             command=BLOCKING)
    sv.wait_workers(1)
    # The first look at the minimum comes --scale-down-after after the start: a
    # `sigvisor workers` moves the target by hand, and it holds.
    r = run_sigvisor("workers", "3", "--control", sv.control)
    assert r.returncode == 0, r.stderr
    sv.wait_workers(3)
    with open(conf, "w") as f:
        f.write("workers = 1\nmax-workers = 2\nscale-up-after = 0.1\nscale-down-after = 60\n")
    sv.kill(signal.SIGHUP)
    sv.wait_log(r"reload: pool size 3 -> 2, within --workers 1 and --max-workers 2")
    wait_for(lambda: (lambda s: not s["reloading"] and s["target"] == 2)(sv.status()),
             what="the reload to end with 2 workers")
    sv.wait_workers(2)
    assert sv.status()["autoscale"]["max"] == 2
    # A new minimum above the size: up to it.
    with open(conf, "w") as f:
        f.write("workers = 4\nmax-workers = 5\nscale-up-after = 0.1\nscale-down-after = 60\n")
    sv.kill(signal.SIGHUP)
    sv.wait_log(r"reload: pool size 2 -> 4, within --workers 4 and --max-workers 5")
    sv.wait_workers(4)


def test_bad_values_exit_2_naming_the_problem(tmpdir_short):
    cases = [
        (["-w", "4", "--max-workers", "3"], r"--max-workers 3 is less than --workers 4"),
        (["--max-workers", "many"], r"'--max-workers': 'many' is not a whole number"),
        (["--max-workers", "5000"], r"'--max-workers': '5000' is not a whole number from 0"),
        (["--scale-up-after", "0"], r"'--scale-up-after': 0ms is too short \(at least 10ms\)"),
        (["--scale-down-after", "50ms"],
         r"'--scale-down-after': 50ms is too short \(at least 100ms\)"),
        (["--scale-down-after", "soon"], r"'--scale-down-after': 'soon' is not a duration"),
    ]
    for args, msg in cases:
        r = run_sigvisor("-b", "127.0.0.1:0", "--check", *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert re.search(msg, r.stderr), (args, r.stderr)
    conf = os.path.join(tmpdir_short, "bad.conf")
    with open(conf, "w") as f:
        f.write("workers = 3\nmax-workers = 2\n")
    r = run_sigvisor("-b", "127.0.0.1:0", "--check", "-c", conf)
    assert r.returncode == 2 and "--max-workers 2 is less than --workers 3" in r.stderr, r.stderr
    r = run_sigvisor("--help")
    for opt in ("--max-workers M", "--scale-up-after S", "--scale-down-after S"):
        assert opt in r.stdout


def test_config_shows_the_settings_and_their_sources(start, tmpdir_short):
    conf = os.path.join(tmpdir_short, "sv.conf")
    with open(conf, "w") as f:
        f.write("max-workers = 6\n")
    sv = start("-c", conf, "--scale-up-after", "250ms")
    out = run_sigvisor("config", "--control", sv.control).stdout
    assert re.search(r"max-workers\s+6\s+.*config file", out), out
    assert re.search(r"scale-up-after\s+0\.250\s+.*command line", out), out
    assert re.search(r"scale-down-after\s+30\s+.*default", out), out


def test_usr2_keeps_the_size_within_the_new_bounds(start, tmpdir_short):
    from test_upgrade import replace_binary, start_from
    conf = os.path.join(tmpdir_short, "sv.conf")
    with open(conf, "w") as f:
        f.write("workers = 1\nmax-workers = 4\nscale-down-after = 60\n")
    sv, path = start_from(start, tmpdir_short, "-c", conf, "--ready-mode", "start",
                          command=BLOCKING)
    sv.wait_workers(1)
    r = run_sigvisor("workers", "3", "--control", sv.control)
    assert r.returncode == 0, r.stderr
    sv.wait_workers(3)
    # The new image keeps the size the old one had, within its own bounds.
    replace_binary(path)
    sv.kill(signal.SIGUSR2)
    sv.wait_log(r"upgraded in place: adopted 3 workers")
    wait_for(lambda: (lambda s: not s["reloading"] and s["target"] == 3 and
                      s["autoscale"]["max"] == 4)(sv.status()), what="the upgrade done, 3 kept")
    sv.wait_workers(3)
    with open(conf, "w") as f:
        f.write("workers = 1\nmax-workers = 2\nscale-down-after = 60\n")
    replace_binary(path)
    sv.kill(signal.SIGUSR2)
    sv.wait_log(r"reload: pool size 3 -> 2, within --workers 1 and --max-workers 2")
    wait_for(lambda: (lambda s: not s["reloading"] and s["target"] == 2)(sv.status()),
             what="the second upgrade done with 2 workers")
    sv.wait_workers(2)
    assert sv.status()["pid"] == sv.pid


def test_a_burst_on_an_idle_pool_is_seen_at_once_and_idle_costs_no_look(start):
    """At the minimum with nothing queued the arbiter does not look on a timer: it
    watches the listening socket, and the first connection wakes it. A burst is then
    answered within --scale-up-after, not after --scale-down-after (60 s here)."""
    sv, mport = start_scaled(start, "-w", "1", "--max-workers", "3", "--scale-up-after", "0.1",
                             "--scale-down-after", "60", "--ready-mode", "start",
                             command=BLOCKING)
    sv.wait_workers(1)
    wait_for(lambda: sv.status()["autoscale"]["watching"], 10, "the socket to be watched")
    looks = sv.status()["autoscale"]["looks"]
    time.sleep(0.5)  # idle: what must NOT happen meanwhile is a look
    st = sv.status()["autoscale"]
    assert st["looks"] == looks and st["watching"] and st["woken"] == 0, st
    began = time.monotonic()
    load = Load(sv.port, 6)
    try:
        wait_for(lambda: target(sv) >= 2, 10, "a worker added for the burst")
        assert time.monotonic() - began < 10
        st = sv.status()["autoscale"]
        assert st["woken"] >= 1 and st["up"] >= 1, st
    finally:
        load.stop()
    assert load.failed == 0, load.errors
