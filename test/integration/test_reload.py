"""HUP: zero-downtime reload, config files, sd_notify readiness and the watchdog."""
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import alive, proc_environ, wait_for

WORKER = os.path.join(os.path.dirname(__file__), "workers", "notify_worker.py")
PY = "/usr/bin/python3"


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def wait_reloaded(sv, generation, n, timeout=15):
    def done():
        st = sv.status()  # never reset, not even by a USR2 exec: it hands them over
        ws = st["workers"]
        return (not st["reloading"] and st["generation"] == generation and len(ws) == n and
                all(w["state"] == "ready" and w["generation"] == generation for w in ws))
    try:
        wait_for(done, timeout, f"generation {generation} with {n} ready workers and nothing else")
    except AssertionError as e:
        raise AssertionError(f"{e}\nstatus: {sv.status()}\n--- log:\n{sv.text()[-4000:]}")


def wrk(port, seconds, path="/"):
    return subprocess.Popen(["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency",
                             f"http://127.0.0.1:{port}{path}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wrk_result(proc):
    out = proc.communicate(timeout=60)[0]
    m = re.search(r"(\d+) requests in", out)
    assert m, out
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return int(m.group(1)), errors.group(1) if errors else None, non2xx, out


def test_hup_under_load_drops_nothing(start):
    sv = start("-w", "4", "--graceful-timeout", "10")
    sv.wait_workers(4)
    load = wrk(sv.port, 4)
    wait_for(lambda: sv.get("/")[0] == 200, what="serving")
    for gen in range(2, 7):
        sv.kill(signal.SIGHUP)
        wait_reloaded(sv, gen, 4)
    requests, errors, non2xx, out = wrk_result(load)
    assert requests > 1000, out
    assert errors is None, out
    assert non2xx is None, out
    # every retired worker of generations 1-5 exited 0
    text = sv.text()
    assert len(re.findall(r"generation [1-5]\) exited with status 0", text)) == 20, text


def test_each_old_worker_gets_exactly_one_term(start, tmpdir_short):
    terms = os.path.join(tmpdir_short, "terms")
    sv = start("-w", "3", "--ready-mode", "notify",
               command=[PY, WORKER, "--term-log", terms])
    old = {w["pid"] for w in sv.wait_workers(3)}
    sv.kill(signal.SIGHUP)
    wait_reloaded(sv, 2, 3)
    wait_for(lambda: all(not alive(p) for p in old), what="old workers gone")
    lines = open(terms).read().split()
    got = [int(pid) for pid, _ in zip(lines[::2], lines[1::2])]
    assert sorted(got) == sorted(old), lines  # each old pid once, no other


def test_hup_applies_a_config_change(start, tmpdir_short):
    conf = os.path.join(tmpdir_short, "sigvisor.conf")
    write(conf, "workers = 2\n")
    sv = start("-c", conf)
    sv.wait_workers(2)
    write(conf, "# now three\nworkers = 3\ngraceful-timeout = 5\n")
    sv.kill(signal.SIGHUP)
    wait_reloaded(sv, 2, 3)
    assert sv.status()["target"] == 3


def test_bad_config_on_hup_changes_nothing(start, tmpdir_short):
    conf = os.path.join(tmpdir_short, "sigvisor.conf")
    write(conf, "workers = 2\n")
    sv = start("-c", conf)
    before = sv.wait_workers(2)
    write(conf, "workers = 2\nworkers = many\n")
    sv.kill(signal.SIGHUP)
    sv.wait_log(re.escape(conf) + r":2: option '--workers': 'many' is not a whole number.*; "
                r"keeping the current configuration")
    st = sv.status()
    assert st["generation"] == 1 and not st["reloading"]
    assert sorted(w["pid"] for w in st["workers"]) == sorted(w["pid"] for w in before)
    assert sv.get("/")[0] == 200


def test_config_file_errors_name_file_and_line(tmpdir_short):
    from conftest import run_sigvisor
    conf = os.path.join(tmpdir_short, "bad.conf")
    write(conf, "workers = 2\n\nfrobnicate = yes\n")
    r = run_sigvisor("-c", conf)
    assert r.returncode == 2
    assert f"{conf}:3: unknown option 'frobnicate'" in r.stderr
    write(conf, "[section]\nworkers = 2\n")
    r = run_sigvisor("-c", conf)
    assert r.returncode == 2 and "sections ([section]) are not used" in r.stderr
    r = run_sigvisor("-c", os.path.join(tmpdir_short, "missing.conf"))
    assert r.returncode == 2 and "missing.conf" in r.stderr


def test_precedence_command_line_config_env(start, tmpdir_short):
    conf = os.path.join(tmpdir_short, "p.conf")
    write(conf, "workers = 3\ngraceful-timeout = 4\n")
    sv = start("-c", conf, "-w", "1", env={"SIGVISOR_ARGS": "-w 5 --graceful-timeout 9 "
                                                             "--backlog 100"})
    sv.wait_workers(1)  # command line beats the config file and the environment
    sv.kill(signal.SIGTERM)
    sv.wait_log(r"SIGKILL after 4\.0 s")  # the config file beats the environment
    assert sv.wait_exit() == 0


def test_new_generation_that_never_gets_ready_leaves_the_old_one(start, tmpdir_short):
    flag = os.path.join(tmpdir_short, "broken")
    sv = start("-w", "2", "--ready-mode", "notify", "--ready-timeout", "0.5",
               command=[PY, WORKER, "--no-ready-if", flag])
    old = sv.wait_workers(2)
    write(flag, "")
    sv.kill(signal.SIGHUP)
    sv.wait_log(r"reload failed: a worker of the new generation did not get ready; "
                r"stopping generation 2, generation 1 keeps serving")
    st = sv.status()
    assert st["generation"] == 1 and not st["reloading"]
    assert st["counters"]["reload_failures"] == 1
    wait_for(lambda: sorted(w["pid"] for w in sv.workers()) == sorted(w["pid"] for w in old),
             what="only the old workers left")
    assert sv.get("/")[0] == 200
    # the next HUP with a fixed worker goes through, with a fresh generation number
    os.unlink(flag)
    sv.kill(signal.SIGHUP)
    wait_reloaded(sv, 3, 2)


def test_command_worker_serves_on_listen_fds_after_ready(start):
    sv = start("-w", "2", "--ready-mode", "notify",
               command=[PY, WORKER, "--status", "serving from fd 3"])
    ws = sv.wait_workers(2)
    status, body = sv.get("/")
    assert status == 200 and body.startswith("python worker pid=")
    assert {w["status"] for w in ws} == {"serving from fd 3"}


def test_a_status_cut_mid_character_stays_valid_json(start):
    """STATUS= is kept to 127 bytes; 100 two-byte characters are cut inside one. The
    control socket's JSON must still be UTF-8 (conftest's json.loads of the raw bytes
    refuses anything else), with U+FFFD for the cut character."""
    sv = start("-w", "1", "--ready-mode", "notify",
               command=[PY, WORKER, "--status", "\u00e9" * 100])
    [w] = sv.wait_workers(1)
    assert w["status"].startswith("\u00e9" * 63), w["status"]
    assert set(w["status"][63:]) <= {"\ufffd"}, w["status"]


def test_ready_from_a_non_worker_is_dropped(start):
    sv = start("-w", "1", "--ready-mode", "notify", "--ready-timeout", "30",
               command=["sleep", "600"])  # never sends READY=1
    w = wait_for(lambda: sv.workers("booting"), what="a booting worker")[0]
    # before and during its exec /proc/PID/environ shows the arbiter's environment or
    # nothing (exec sets the new comm before the new environment exists)
    addr = wait_for(lambda: proc_environ(w["pid"]).get("NOTIFY_SOCKET"),
                    what="the worker's exec'd environment")
    # A file of the worker's uid in a 0711 directory; root (this test) may still send.
    assert addr.startswith("/")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"READY=1", addr)
    wait_for(lambda: sv.status()["counters"]["notify_rejected"] >= 1, what="spoof counted")
    assert [x["state"] for x in sv.workers()] == ["booting"]
    sv.wait_log(r"notify socket of worker 0: dropped a message from pid %d: not that worker"
                % os.getpid())


def test_silent_watchdog_worker_is_aborted_and_replaced(start):
    # Two pings, then silence: --timeout 1 must abort it and start another.
    sv = start("-w", "1", "--ready-mode", "notify", "--timeout", "1",
               "--graceful-timeout", "1", command=[PY, WORKER, "--pings", "2"])
    [w] = sv.wait_workers(1)
    t0 = time.monotonic()
    sv.wait_log(r"worker 0 \(pid %d\) silent for 1\.0 s since its last WATCHDOG=1" % w["pid"],
                timeout=10)
    sv.wait_log(r"pid %d, generation 1\) killed by SIGABRT" % w["pid"], timeout=10)
    wait_for(lambda: [x for x in sv.workers("ready") if x["pid"] != w["pid"]],
             what="replacement worker")
    assert time.monotonic() - t0 < 1.5 + 1 + 2  # pings over ~0.5 s, timeout 1, + 1 s slack


def test_watchdog_armed_by_a_ping_read_long_after_ready(start):
    """READY=1 is read alone; the socket is then no longer watched, and the first
    WATCHDOG=1 (0.3 s later) waits unread: the sweep at --timeout must find it."""
    sv = start("-w", "1", "--ready-mode", "notify", "--timeout", "1",
               "--graceful-timeout", "1",
               command=[PY, WORKER, "--pings", "1", "--first-ping-after", "0.3"])
    [w] = sv.wait_workers(1)
    t0 = time.monotonic()
    sv.wait_log(r"worker 0 \(pid %d\) silent for 1\.0 s since its last WATCHDOG=1" % w["pid"],
                timeout=10)
    # one ping at ~0.3 s, deadline 1 s after it arrived: aborted ~1.3 s after ready
    assert time.monotonic() - t0 < 1.3 + 1.0


def test_many_pinging_workers_are_not_mistaken_for_silent(start):
    """16 built-in workers pinging every 0.5 s (--timeout 1): more than a shared unix
    datagram queue holds (net.unix.max_dgram_qlen is 10), so each worker needs its
    own notify socket, or pings get dropped and healthy workers aborted."""
    sv = start("-w", "16", "--timeout", "1")
    pids = {w["pid"] for w in sv.wait_workers(16)}
    # the measurement window: four timeouts of pings read only at deadlines
    time.sleep(4)
    assert {w["pid"] for w in sv.workers("ready")} == pids
    assert "silent for" not in sv.text()


def test_builtin_worker_beats_in_shared_memory_and_is_aborted_when_it_stops(start):
    """The built-in worker proves it is alive through a heartbeat slot, not WATCHDOG=1
    datagrams: the arbiter reads no message from it while it serves, and one that
    stops beating (SIGSTOP) is aborted a --timeout after its last beat."""
    sv = start("-w", "2", "--timeout", "1", "--graceful-timeout", "1")
    ws = sv.wait_workers(2)
    env = proc_environ(ws[0]["pid"])
    assert "SIGVISOR_HEARTBEAT" in env, env
    received = sv.status()["counters"]["notify_received"]
    time.sleep(2)  # four beats each
    assert sv.status()["counters"]["notify_received"] == received
    assert "silent for" not in sv.text()
    victim = ws[0]["pid"]
    os.kill(victim, signal.SIGSTOP)
    t0 = time.monotonic()
    sv.wait_log(r"worker \d+ \(pid %d\) silent for 1\.\d s since its last heartbeat "
                r"\(--timeout\): aborting it" % victim, timeout=10)
    # its last beat was up to 0.5 s before the stop
    assert time.monotonic() - t0 < 1.2
    wait_for(lambda: len([x for x in sv.workers("ready") if x["pid"] != victim]) == 2,
             what="replacement worker")
    assert [w["pid"] for w in ws if w["pid"] != victim][0] in \
        [x["pid"] for x in sv.workers("ready")]


def test_heartbeat_memfd_fits_beside_the_most_listening_sockets(start):
    """64 --bind addresses, the most there may be, and the heartbeat memfd after them:
    the worker gets all 65 fds and beats (it failed with E2BIG at 65 fds once)."""
    binds = [a for _ in range(63) for a in ("-b", "127.0.0.1:0")]  # and the fixture's
    sv = start("-w", "1", "--timeout", "1", *binds)
    [w] = sv.wait_workers(1)
    env = proc_environ(w["pid"])
    assert env["LISTEN_FDS"] == "64" and env["SIGVISOR_HEARTBEAT"].startswith("67:"), env
    time.sleep(1.5)
    assert "silent for" not in sv.text() and "too many" not in sv.text()


def test_heartbeats_are_watched_across_an_upgrade(start):
    """USR2: the new image takes over the heartbeat memfd with the workers, so none is
    taken for silent, and a new worker that stops beating is still caught."""
    sv = start("-w", "2", "--timeout", "1", "--graceful-timeout", "1")
    sv.wait_workers(2)
    sv.kill(signal.SIGUSR2)
    sv.wait_log(r"upgraded in place")
    sv.wait_log(r"reload complete")
    ws = sv.wait_workers(2)
    time.sleep(2)
    assert "silent for" not in sv.text()
    os.kill(ws[1]["pid"], signal.SIGSTOP)
    sv.wait_log(r"\(pid %d\) silent for 1\.\d s since its last heartbeat" % ws[1]["pid"],
                timeout=10)


def _voluntary_switches(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("voluntary_ctxt_switches:"))


def test_idle_arbiter_wakes_once_per_timeout_not_once_per_ping(start):
    """Built-in workers ping every --timeout/2; the arbiter reads pings only when a
    deadline falls due. Without a grace that deadline coincides with the next ping
    being sent: whether the arbiter reads that ping or only the one before (and
    so wakes again half a timeout later) is a race, lost in some runs and won in
    others. With the grace it is never lost."""
    sv = start("-w", "2", "--timeout", "0.5")
    sv.wait_workers(2)
    # Past the one-off wake-ups after ready: each worker's socket stays watched after
    # its READY=1 until its next message (for a BARRIER=1), so its first ping wakes the
    # arbiter once (two workers: up to two), then the first sweep (0.5 s after ready,
    # it finds the workers' pings) and the first watchdog deadline.
    sv.wait_log(r"all 2 workers ready")
    ready = _voluntary_switches(sv.pid)
    wait_for(lambda: _voluntary_switches(sv.pid) >= ready + 4, what="the first deadlines")
    before = _voluntary_switches(sv.pid)
    time.sleep(4)  # the measurement window: 8 timeouts, 16 pings per worker
    woke = _voluntary_switches(sv.pid) - before
    # once per timeout: 8 or 9 (window edges); once per ping would be up to 16
    assert woke <= 10, f"the arbiter woke {woke} times in 4 s with --timeout 0.5"
    assert "silent for" not in sv.text()


def test_fifty_hups_leave_the_pool_as_configured(start):
    sv = start("-w", "2")
    sv.wait_workers(2)
    fds = len(os.listdir(f"/proc/{sv.pid}/fd"))
    for _ in range(50):
        sv.kill(signal.SIGHUP)

    def settled():
        st = sv.status()
        ws = st["workers"]
        return (not st["reloading"] and len(ws) == 2 and
                all(w["state"] == "ready" and w["generation"] == st["generation"] for w in ws))
    wait_for(settled, 30, "pool settled after 50 HUPs")
    # at most one reload runs and one more is queued, so HUPs merge: bounded work
    assert 2 <= sv.status()["generation"] <= 51
    assert len(os.listdir(f"/proc/{sv.pid}/fd")) == fds
    assert sv.get("/")[0] == 200


def test_hup_adds_and_removes_a_bind(start, tmpdir_short):
    conf = os.path.join(tmpdir_short, "b.conf")
    sock = os.path.join(tmpdir_short, "app.sock")
    write(conf, "bind = 127.0.0.1:0\n")
    sv = start("-c", conf, bind=False)
    sv.wait_workers(2)
    write(conf, f"bind = 127.0.0.1:0\nbind = unix:{sock}\n")
    sv.kill(signal.SIGHUP)
    wait_reloaded(sv, 2, 2)
    assert len(sv.status()["listeners"]) == 2 and os.path.exists(sock)
    write(conf, "bind = 127.0.0.1:0\n")
    sv.kill(signal.SIGHUP)
    wait_reloaded(sv, 3, 2)
    assert len(sv.status()["listeners"]) == 1
    assert not os.path.exists(sock)


@pytest.mark.parametrize("timeout", ["30", "0"])
def test_sd_notify_upstream_ready_at_once_with_command_workers(start, tmpdir_short, timeout):
    """A COMMAND worker in auto mode is ready once started: READY=1 must not wait for
    the arbiter's next wake-up (the watchdog's --timeout, or never with 0); systemd
    would fail the unit at its start timeout."""
    path = os.path.join(tmpdir_short, "notify")
    up = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    up.bind(path)
    up.settimeout(5)  # far below --timeout 30; "never" with --timeout 0
    sv = start("-w", "2", "--timeout", timeout, "--ready-mode", "start",
               env={"NOTIFY_SOCKET": path}, command=["sleep", "600"])
    msg = up.recv(4096).decode()
    assert msg.startswith("READY=1\nSTATUS=2 workers ready"), msg
    sv.wait_log(r"all 2 workers ready")
    sv.kill(signal.SIGHUP)
    assert up.recv(4096).decode().startswith("RELOADING=1")
    assert up.recv(4096).decode() == "READY=1"
    sv.kill(signal.SIGTERM)
    assert up.recv(4096).decode() == "STOPPING=1"
    assert sv.wait_exit() == 0
    up.close()


def test_sd_notify_upstream(start, tmpdir_short):
    """Run as a systemd Type=notify service would: READY=1, RELOADING=1, STOPPING=1."""
    path = os.path.join(tmpdir_short, "notify")
    up = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    up.bind(path)
    up.settimeout(10)
    sv = start("-w", "2", env={"NOTIFY_SOCKET": path})
    msgs = [up.recv(4096).decode()]
    assert msgs[0].startswith("READY=1")
    sv.kill(signal.SIGHUP)
    assert up.recv(4096).decode().startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert up.recv(4096).decode() == "READY=1"
    sv.kill(signal.SIGTERM)
    assert up.recv(4096).decode() == "STOPPING=1"
    assert sv.wait_exit() == 0
    up.close()
