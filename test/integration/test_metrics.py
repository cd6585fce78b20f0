"""--metrics: the Prometheus text format, /healthz and /readyz, served from the
arbiter's own loop; values that follow what the arbiter does; errors that name the
address."""
import http.client
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import free_port, lowest_free_fd, proc_status, run_sigvisor, wait_for, wait_idle

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*$")
SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: -?\d+)?$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_metrics(text):
    """Parse the text format 0.0.4 strictly: HELP then TYPE before a family's samples,
    samples of a family together, valid names and labels, numeric values, no series
    twice. Returns {(name, ((label, value), ...)): float}."""
    assert text.endswith("\n"), "the last line must end with a newline"
    series, helped, typed, done = {}, set(), {}, set()
    current = None
    for line in text.splitlines():
        assert line, "no blank lines"
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            assert NAME.match(name) and doc, line
            assert name not in helped, f"second HELP for {name}"
            helped.add(name)
            continue
        if line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            assert name in helped, f"TYPE before HELP for {name}"
            assert name not in typed, f"second TYPE for {name}"
            assert typ in TYPES, line
            typed[name] = typ
            if current and current != name:
                done.add(current)
            current = name
            continue
        assert not line.startswith("#"), line
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.groups()
        assert name.startswith("sigvisor_"), name
        assert name in typed, f"sample before TYPE: {line}"
        assert name == current and name not in done, f"{name}'s samples are not together"
        pairs = []
        if labels:
            pos = 0
            while pos < len(labels):
                lm = LABEL.match(labels, pos)
                assert lm, f"bad labels in {line!r}"
                pairs.append((lm.group(1), lm.group(2)))
                pos = lm.end()
        key = (name, tuple(sorted(pairs)))
        assert key not in series, f"series twice: {line}"
        series[key] = float(value)  # raises on a non-number
    assert helped == set(typed), "HELP without TYPE"
    assert all(any(k[0] == n for k in series) for n in typed), "a family without samples"
    return series


def metric(series, name, **labels):
    return series[(name, tuple(sorted(labels.items())))]


class Endpoint:
    """The --metrics address of a running sigvisor."""

    def __init__(self, sv):
        self.sv = sv
        self.port = int(sv.wait_log(r"metrics on http://127\.0\.0\.1:(\d+)/metrics")[0])

    def request(self, path, method="GET", body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request(method, path, body=body)
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read().decode()
        finally:
            c.close()

    def get(self, path):
        status, _, body = self.request(path)
        return status, body

    def scrape(self):
        status, headers, body = self.request("/metrics")
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse_metrics(body)


def start_with_metrics(start, *args, **kw):
    sv = start("--metrics", "127.0.0.1:0", *args, **kw)
    return sv, Endpoint(sv)


def test_scrape_is_valid_and_follows_ttin(start):
    sv, ep = start_with_metrics(start, "-w", "2")
    sv.wait_workers(2)
    s = ep.scrape()
    assert metric(s, "sigvisor_up") == 1
    assert metric(s, "sigvisor_ready") == 1
    assert metric(s, "sigvisor_generation") == 1
    assert metric(s, "sigvisor_target_workers") == 2
    assert metric(s, "sigvisor_workers", state="ready") == 2
    # Every state is listed, zeros included, so a series never disappears.
    for state in ("booting", "ready", "stopping", "killing", "exited"):
        assert ("sigvisor_workers", (("state", state),)) in s
    for cause in ("clean", "error", "signal"):
        assert metric(s, "sigvisor_worker_exits_total", cause=cause) == 0
    for sig in ("HUP", "TERM", "INT", "QUIT", "TTIN", "TTOU", "USR1", "USR2", "WINCH"):
        assert metric(s, "sigvisor_signals_received_total", signal=sig) == 0
        assert metric(s, "sigvisor_signals_ignored_total", signal=sig) == 0
    for name in ("sigvisor_workers_killed_total", "sigvisor_boot_failures_total",
                 "sigvisor_reloads_total", "sigvisor_reload_failures_total",
                 "sigvisor_upgrades_total", "sigvisor_upgrade_failures_total",
                 "sigvisor_orphans_reaped_total", "sigvisor_metrics_connections_dropped_total"):
        assert metric(s, name) == 0
    assert metric(s, "sigvisor_workers_spawned_total") == 2
    start_time = metric(s, "sigvisor_start_time_seconds")
    assert time.time() - 60 < start_time <= time.time()
    # The BPF families come exactly when the probes count.
    bpf = metric(s, "sigvisor_bpf_enabled")
    assert (("sigvisor_signals_generated_total", (("signal", "TTIN"),)) in s) == (bpf == 1)
    assert sv.status()["bpf"]["state"] == ("on" if bpf else "off")

    sv.kill(signal.SIGTTIN)
    sv.wait_workers(3)

    def moved():
        s = ep.scrape()
        return s if metric(s, "sigvisor_workers", state="ready") == 3 else None
    s = wait_for(moved, what="3 ready workers in /metrics")
    assert metric(s, "sigvisor_signals_received_total", signal="TTIN") == 1
    assert metric(s, "sigvisor_target_workers") == 3
    assert metric(s, "sigvisor_workers_spawned_total") == 3
    assert metric(s, "sigvisor_start_time_seconds") == start_time  # fixed, no wobble
    if bpf:
        assert metric(s, "sigvisor_signals_generated_total", signal="TTIN") >= 1
    # The same numbers as `sigvisor status`.
    counters = sv.status()["counters"]
    assert metric(s, "sigvisor_workers_spawned_total") == counters["spawned"]


def test_build_info_names_version_and_revision(start):
    sv, ep = start_with_metrics(start, "-w", "1")
    [(key, value)] = [(k, v) for k, v in ep.scrape().items() if k[0] == "sigvisor_build_info"]
    labels = dict(key[1])
    assert value == 1
    assert re.match(r"\d+\.\d+\.\d+$", labels["version"])
    assert re.match(r"([0-9a-f]{7,}(-dirty)?|unknown)$", labels["revision"])
    assert labels["features"].startswith("+epoll")
    assert labels["loop"] == sv.status()["loop"]


def test_health_routes_and_errors(start):
    sv, ep = start_with_metrics(start, "-w", "1")
    sv.wait_workers(1)
    assert ep.get("/healthz") == (200, "ok\n")
    assert ep.get("/readyz") == (200, "ready\n")
    assert ep.get("/metrics?name[]=x")[0] == 200  # a query string is ignored
    assert ep.get("/")[0] == 404
    assert ep.get("/metricsx")[0] == 404
    status, headers, _ = ep.request("/metrics", method="POST", body="x=1")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert ep.request("/metrics", method="DELETE")[0] == 405
    status, headers, body = ep.request("/metrics", method="HEAD")
    assert status == 200 and body == "" and int(headers["Content-Length"]) > 1000


def raw_request(port, data, half_close=False):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    finally:
        s.close()


def test_malformed_and_oversized_requests(start):
    sv, ep = start_with_metrics(start, "-w", "1")
    assert raw_request(ep.port, b"garbage\r\n\r\n").startswith(b"HTTP/1.0 400 ")
    assert raw_request(ep.port, b"GET metrics HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 400 ")
    big = b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 5000 + b"\r\n\r\n"
    assert raw_request(ep.port, big).startswith(b"HTTP/1.0 431 ")
    # printf 'GET /healthz HTTP/1.0\r\n' | nc: the EOF ends the request too.
    out = raw_request(ep.port, b"GET /healthz HTTP/1.0\r\n", half_close=True)
    assert out.startswith(b"HTTP/1.0 200 ") and out.endswith(b"\r\n\r\nok\n")
    # A body we never read is drained, not answered with a reset.
    out = raw_request(ep.port, b"POST /x HTTP/1.1\r\nContent-Length: 200000\r\n\r\n" +
                      b"x" * 200000)
    assert out.startswith(b"HTTP/1.0 405 ")
    assert ep.get("/healthz")[0] == 200


def test_idle_clients_cannot_block_a_scrape(start):
    """No timer reclaims a silent connection; the oldest one gives way instead."""
    sv, ep = start_with_metrics(start, "-w", "1")
    idle = [socket.create_connection(("127.0.0.1", ep.port), timeout=10) for _ in range(40)]
    try:
        assert ep.get("/healthz") == (200, "ok\n")
        # The first ones were closed to make room (they read EOF).
        idle[0].settimeout(10)
        assert idle[0].recv(1) == b""
    finally:
        for s in idle:
            s.close()
    # 40 idle + 1 answered in 16 slots: at least 25 were pushed out.
    assert metric(ep.scrape(), "sigvisor_metrics_connections_dropped_total") >= 25


def test_readyz_503_during_shutdown_delay_while_still_serving(start):
    sv, ep = start_with_metrics(start, "-w", "1", "--shutdown-delay", "2")
    sv.wait_workers(1)
    assert ep.get("/readyz")[0] == 200
    sv.kill(signal.SIGTERM)
    wait_for(lambda: ep.get("/readyz") == (503, "not ready: shutting down\n"),
             what="/readyz 503 after TERM")
    # Not ready, but alive and still serving: what Kubernetes needs during the delay.
    assert ep.get("/healthz") == (200, "ok\n")
    assert sv.get("/")[0] == 200
    assert metric(ep.scrape(), "sigvisor_ready") == 0
    sv.wait_log(r"shutdown delay over")
    assert sv.wait_exit() == 0


def test_readyz_503_until_a_worker_is_ready(start):
    # sleep never sends READY=1: its worker stays booting.
    sv, ep = start_with_metrics(start, "-w", "1", "--ready-mode", "notify",
                                "--ready-timeout", "60", command=["sleep", "600"])
    sv.wait_workers(1, state="booting")
    assert ep.get("/readyz") == (503, "not ready: no worker is ready\n")
    s = ep.scrape()
    assert metric(s, "sigvisor_ready") == 0
    assert metric(s, "sigvisor_workers", state="booting") == 1
    assert metric(s, "sigvisor_workers", state="ready") == 0


def unix_scrape(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(path)
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    finally:
        s.close()
    head, _, body = out.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.0 200 "), head
    return parse_metrics(body)


def test_metrics_on_a_unix_socket(start, tmpdir_short):
    path = os.path.join(tmpdir_short, "metrics.sock")
    sv = start("-w", "1", "--metrics", f"unix:{path}")
    sv.wait_workers(1)
    assert metric(unix_scrape(path), "sigvisor_workers", state="ready") == 1
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0
    assert not os.path.exists(path)


def test_metrics_survive_an_upgrade_and_count_it(start, tmpdir_short):
    """USR2 re-executes the binary: the new image serves --metrics again, at the same
    address, with the counters carried over."""
    path = os.path.join(tmpdir_short, "metrics.sock")
    sv = start("-w", "1", "--metrics", f"unix:{path}")
    sv.wait_workers(1)
    assert metric(unix_scrape(path), "sigvisor_upgrades_total") == 0
    sv.kill(signal.SIGUSR2)
    sv.wait_log(r"upgraded in place")

    def upgraded():
        # No OSError to forgive: the listener is handed over, never closed.
        s = unix_scrape(path)
        # The new image starts generation 2 and retires the adopted generation 1.
        done = (metric(s, "sigvisor_upgrades_total") == 1 and
                metric(s, "sigvisor_generation") == 2 and
                metric(s, "sigvisor_workers", state="ready") == 1 and
                metric(s, "sigvisor_workers", state="stopping") == 0)
        return s if done else None
    s = wait_for(upgraded, what="upgrade counted, generation 2 serving")
    # Counters carried over the exec: one worker per generation, ever.
    assert metric(s, "sigvisor_workers_spawned_total") == 2
    assert metric(s, "sigvisor_upgrade_failures_total") == 0


def test_metrics_listener_is_handed_over_on_usr2(start):
    """The new image takes the old one's --metrics socket: the same socket (even for
    port 0) keeps answering, and not one scrape made during the upgrade fails."""
    sv, ep = start_with_metrics(start, "-w", "1")
    sv.wait_workers(1)
    inode = listening_inode(ep.port)
    failures, scrapes, stop = [], [0], threading.Event()

    def scraper():
        while not stop.is_set():
            try:
                ep.scrape()
                scrapes[0] += 1
            except (OSError, AssertionError) as e:
                failures.append(repr(e))
    t = threading.Thread(target=scraper)
    t.start()
    try:
        wait_for(lambda: scrapes[0] >= 5, what="scrapes before the upgrade")
        sv.kill(signal.SIGUSR2)
        sv.wait_log(r"upgraded in place")
        before = scrapes[0]
        wait_for(lambda: scrapes[0] >= before + 5, what="scrapes after the upgrade")
    finally:
        stop.set()
        t.join(10)
    assert not failures, failures[:3]
    assert listening_inode(ep.port) == inode
    assert inode in socket_inodes(sv.pid)
    assert metric(ep.scrape(), "sigvisor_upgrades_total") == 1


def test_usr2_waits_at_most_1s_for_a_silent_scraper(start):
    """A connection that never sends its request must not hold an upgrade: the exec
    waits 1 s for accepted scrapes, then goes ahead (that one is reset)."""
    sv, ep = start_with_metrics(start, "-w", "1")
    sv.wait_workers(1)
    c = socket.create_connection(("127.0.0.1", ep.port), timeout=10)
    try:
        # accepted in the same batch as, and before, this answered request
        assert ep.get("/healthz")[0] == 200
        t0 = time.monotonic()
        sv.kill(signal.SIGUSR2)
        sv.wait_log(r"upgrade: 1 metrics connections still open after 1000 ms")
        sv.wait_log(r"upgraded in place")
        assert time.monotonic() - t0 < 5
    finally:
        c.close()
    assert ep.get("/healthz")[0] == 200


def listening_inode(port):
    """The socket inode of the TCP listener on 127.0.0.1:port (/proc/net/tcp)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.split(":")[1], 16) == port:
                return inode
    return None


def socket_inodes(pid):
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def test_metrics_socket_is_not_handed_to_workers(start):
    sv, ep = start_with_metrics(start, "-w", "2")
    ws = sv.wait_workers(2)
    inode = listening_inode(ep.port)
    assert inode and inode in socket_inodes(sv.pid)
    for w in ws:
        assert inode not in socket_inodes(w["pid"]), f"worker {w['pid']} has it"
    # ...and the workers' own listener is not the metrics one.
    assert listening_inode(sv.port) in socket_inodes(ws[0]["pid"])


def test_idle_arbiter_with_metrics_makes_no_system_calls(start):
    sv, ep = start_with_metrics(start, "-w", "1")
    sv.wait_workers(1)
    ep.scrape()
    wait_idle(sv.pid)
    before = proc_status(sv.pid)["voluntary_ctxt_switches"]
    time.sleep(1.0)  # the measurement window itself, not a wait for an event
    assert proc_status(sv.pid)["voluntary_ctxt_switches"] == before


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_fds_a_scrape_is_refused_not_spun_on(start):
    sv, ep = start_with_metrics(start, "-w", "1")
    sv.wait_workers(1)
    n = lowest_free_fd(sv.pid)  # no fd free below the limit
    # The soft limit only: raising a hard limit back needs CAP_SYS_RESOURCE.
    subprocess.run(["prlimit", f"--pid={sv.pid}", f"--nofile={n}:"], check=True)
    cpu0 = cpu_seconds(sv.pid)
    with pytest.raises((OSError, http.client.HTTPException)):
        ep.get("/healthz")  # accepted with the spare fd and closed at once
    sv.wait_log(r"--metrics: out of file descriptors, refusing scrapes")
    with pytest.raises((OSError, http.client.HTTPException)):
        ep.get("/healthz")
    assert cpu_seconds(sv.pid) - cpu0 < 0.5, "the arbiter spun on the listener"
    subprocess.run(["prlimit", f"--pid={sv.pid}", f"--nofile={n + 8}:"], check=True)
    assert ep.get("/healthz") == (200, "ok\n")
    assert sv.text().count("--metrics: out of file descriptors") == 1  # said once


def test_metrics_address_in_use_exits_1_naming_it(tmpdir_short):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        r = run_sigvisor("-b", "127.0.0.1:0", "--metrics", f"127.0.0.1:{port}",
                         "--control", os.path.join(tmpdir_short, "c.sock"))
    finally:
        s.close()
    assert r.returncode == 1, r.stderr
    assert f"--metrics: cannot bind 127.0.0.1:{port}: address already in use" in r.stderr


def test_metrics_cannot_share_a_workers_address(tmpdir_short):
    port = free_port()
    r = run_sigvisor("-b", f"127.0.0.1:{port}", "--metrics", f"127.0.0.1:{port}",
                     "--control", os.path.join(tmpdir_short, "c.sock"))
    assert r.returncode == 1, r.stderr
    assert f"--metrics: cannot bind 127.0.0.1:{port}" in r.stderr


@pytest.mark.parametrize("addr,needle", [
    ("nope", "bad address 'nope'"),
    ("127.0.0.1:99999", "127.0.0.1:99999"),
    ("[::1]9100", "[::1]9100"),
    ("unix:", "unix: needs a path"),
])
def test_bad_metrics_address_exits_2_naming_it(tmpdir_short, addr, needle):
    r = run_sigvisor("-b", "127.0.0.1:0", "--metrics", addr,
                     "--control", os.path.join(tmpdir_short, "c.sock"))
    assert "--metrics" in r.stderr and needle in r.stderr, r.stderr
    assert r.returncode == 2, r.stderr
