"""Where a disposition came from (the probes' `sigsets` and `forks` maps, read by
`sigvisor signals`), and the warning when a worker's process would die of a signal
meant to control it that its leader handles (a look at /proc in a child of the arbiter:
the log line, the gauge sigvisor_signal_killable_processes, status).

The founding story, twice: test/integration/workers/preload_leader.py (a leader that
sets HUP, USR1 and USR2 handlers at import and forks children that reset USR2), and
real gunicorn --preload with an app that sets a USR2 handler at import. The probes'
tests pin under a directory of their own (test_bpf.Bpf) and check it is gone after;
a probe that cannot load is a skip locally and a failure under CI=true."""
import json
import os
import re
import shutil
import signal
import time
import urllib.request

import pytest

from conftest import alive, children, proc_status, run_sigvisor, wait_for
from test_bpf import Bpf, unavailable, skip_or_fail

HERE = os.path.dirname(os.path.abspath(__file__))
WORKERS = os.path.join(HERE, "workers")
LEADER = os.path.join(WORKERS, "preload_leader.py")
PYTHON = "/usr/bin/python3"
KILLABLE = ("HUP", "USR1", "USR2", "WINCH", "TTIN", "TTOU")
DUR = r"[\d.]+ m?s"


@pytest.fixture
def bpf():
    why = unavailable()
    if why:
        skip_or_fail(why)
    b = Bpf()
    yield b
    b.cleanup()


def signals(sv, *extra):
    r = run_sigvisor("signals", "--control", sv.control, *extra)
    assert r.returncode == 0, r.stderr
    return r.stdout


def signals_json(sv):
    return json.loads(signals(sv, "--json"))


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {m.group(1): int(m.group(2)) for m in re.finditer(
        r'^sigvisor_signal_killable_processes\{signal="(\w+)"\} (\d+)$', text, re.M)}


def metrics_port(sv):
    return int(sv.wait_log(r"metrics on http://127\.0\.0\.1:(\d+)/metrics")[0])


def killable_in_status(sv, want):
    """Wait until status --json shows want ({signal: n}, the rest 0); the text too."""
    full = {s: want.get(s, 0) for s in KILLABLE}
    wait_for(lambda: sv.status()["signal_killable_processes"] == full, timeout=15,
             what=f"status to show {full}: {sv.status().get('signal_killable_processes')}")
    r = run_sigvisor("status", "--control", sv.control)
    assert r.returncode == 0, r.stderr
    line = [l for l in r.stdout.splitlines() if l.startswith("processes a control signal")]
    shown = ", ".join(f"{s} {n}" for s, n in full.items() if n)
    assert line == ([f"processes a control signal would kill: {shown} "
                     "(handled by their leader or an earlier generation; see sigvisor signals)"] if shown else []), \
        r.stdout


def check_leader_warnings(sv, port, workers, kids_of):
    """Each leader's first child is named once, with the leader as its parent."""
    for w in workers:
        lines = sv.wait_log(rf"warn: worker {w['id']} \(pid (\d+), generation 1\): USR2 would "
                            rf"kill it \(default action\); its parent pid {w['pid']} handles "
                            r"USR2: see sigvisor signals")
        assert len(lines) == 1 and int(lines[0]) in kids_of[w["pid"]], sv.text()
    killable_in_status(sv, {"USR2": 4})
    assert metrics(port) == {s: 4 if s == "USR2" else 0 for s in KILLABLE}
    assert "HUP would kill" not in sv.text() and "USR1 would kill" not in sv.text()


def test_preload_leader_provenance_and_warning(bpf):
    sv = bpf.start("-w", "2", "--ready-mode", "notify", "--metrics", "127.0.0.1:0",
                   command=[PYTHON, LEADER, "2"])
    port = metrics_port(sv)
    workers = sv.wait_workers(2, "ready")
    leaders = {w["pid"] for w in workers}

    def told():
        d = signals_json(sv)
        kids = [p for p in d["processes"] if p["parent"] in leaders]
        if len(kids) == 4 and all("USR2" in p.get("provenance", {}) for p in kids):
            return d
        return None
    d = wait_for(told, what="the provenance of every child's USR2")
    assert d["provenance"] == {"available": True}
    kids_of = {l: [] for l in leaders}
    for p in d["processes"]:
        pv = p["provenance"]
        if p["pid"] in leaders:
            # The leader set its handlers itself, after sigvisor forked it.
            for s in ("HUP", "USR1", "USR2"):
                assert pv[s]["set"]["kind"] == "handler", pv
                assert pv[s]["set"]["after_fork_ms"] > 0, pv
                assert pv[s]["text"].startswith("handler set by this process "), pv
            continue
        kids_of[p["parent"]].append(p["pid"])
        u = pv["USR2"]
        assert u["inherited"]["from"] == p["parent"] and u["inherited"]["kind"] == "handler", u
        assert u["inherited"]["set_before_fork_ms"] > 0, u
        assert u["set"]["kind"] == "default" and u["set"]["after_fork_ms"] > 0, u
        assert re.fullmatch(rf"handler inherited from pid {p['parent']} \(set {DUR} before "
                            rf"fork\), reset to default by this process {DUR} after fork",
                            u["text"]), u
        # HUP stays the leader's: inherited, never reset.
        assert pv["HUP"]["inherited"]["from"] == p["parent"] and "set" not in pv["HUP"], pv

    text = signals(sv)
    assert "Under a process: who set each disposition and when" in text
    for leader, kids in kids_of.items():
        for k in kids:
            # the sentence right under the child's row
            assert re.search(rf"^! +{k} +{leader} .*\n(?: +\w+ .*\n)*? +USR2 handler inherited "
                             rf"from pid {leader} \(set {DUR} before fork\), reset to default "
                             rf"by this process {DUR} after fork$", text, re.M), text
    assert text.strip().splitlines()[-1].startswith("! 4 processes die on a signal"), text

    check_leader_warnings(sv, port, workers, kids_of)
    bpf.stop(sv)


def test_probes_off_no_provenance_the_warning_still_works(start):
    # conftest starts sigvisor with --bpf off
    sv = start("-w", "2", "--ready-mode", "notify", "--metrics", "127.0.0.1:0",
               command=[PYTHON, LEADER, "2"])
    port = metrics_port(sv)
    workers = sv.wait_workers(2, "ready")
    d = signals_json(sv)
    assert d["provenance"] == {"available": False,
                               "reason": "the eBPF probes are off (--bpf off)"}
    assert all("provenance" not in p for p in d["processes"]), d
    text = signals(sv)
    lines = text.splitlines()
    assert lines[1] == ("No provenance (who set each disposition, when): the eBPF probes "
                        "are off (--bpf off)"), text
    assert text.count("No provenance") == 1 and "inherited" not in text, text
    kids_of = {w["pid"]: [p["pid"] for p in d["processes"] if p["parent"] == w["pid"]]
               for w in workers}
    check_leader_warnings(sv, port, workers, kids_of)


def test_builtin_worker_is_not_warned_about(start):
    sv = start("-w", "2", "--metrics", "127.0.0.1:0")
    port = metrics_port(sv)
    sv.wait_workers(2, "ready")
    # A look has run (null before the first), and found nothing.
    wait_for(lambda: sv.status()["signal_killable_processes"] is not None,
             what="the first look")
    killable_in_status(sv, {})
    assert metrics(port) == {s: 0 for s in KILLABLE}
    r = run_sigvisor("status", "--control", sv.control)
    assert "processes a control signal would kill" not in r.stdout, r.stdout
    assert "would kill" not in sv.text() and "look at /proc" not in sv.text(), sv.text()


def test_status_is_null_before_the_first_look(start):
    sv = start("-w", "1", "--ready-mode", "notify", wait_ready=False,
               command=[PYTHON, "-c", "import time; time.sleep(60)"])
    wait_for(lambda: os.path.exists(sv.control), what="control socket")
    wait_for(lambda: sv.workers("booting"), what="a booting worker")
    assert sv.status()["signal_killable_processes"] is None


@pytest.mark.skipif(not shutil.which("gunicorn"), reason="gunicorn is not installed")
def test_gunicorn_preload_provenance_and_warning(bpf):
    """gunicorn --preload: the app's import-time USR2 handler, then the master's own,
    both set before the fork; each worker's init_signals resets HUP and USR2."""
    sv = bpf.start("-w", "1", "--ready-mode", "auto", "--graceful-timeout", "5",
                   "--metrics", "127.0.0.1:0",
                   command=[shutil.which("gunicorn"), "--preload", "-w", "2",
                            "--chdir", WORKERS, "preload_app:app"])
    port = metrics_port(sv)
    master = sv.wait_workers(1, "ready")[0]["pid"]

    def told():
        # The dispositions are read from /proc when asked, their provenance comes from
        # the probes' ring buffer as the arbiter reads it: a worker's ABRT handler can
        # show before the event of its USR2 reset has been read. Wait for both resets.
        ps = signals_json(sv)["processes"]
        kids = [p for p in ps if p["parent"] == master]
        if len(kids) == 2 and all(k["signals"].get("ABRT") == "handler" and
                                  all("reset to default" in
                                      k.get("provenance", {}).get(s, {}).get("text", "")
                                      for s in ("HUP", "USR2")) for k in kids):
            return kids
        return None
    kids = wait_for(told, timeout=30, what="gunicorn's workers set up, their resets seen")
    for k in kids:
        for s in ("HUP", "USR2"):
            t = k["provenance"][s]["text"]
            assert re.fullmatch(rf"handler inherited from pid {master} \(set {DUR} before "
                                rf"fork\), reset to default by this process {DUR} after fork",
                                t), (s, t)
    text = signals(sv)
    for k in kids:
        assert re.search(rf"^ +USR2 handler inherited from pid {master} \(set {DUR} before "
                         rf"fork\), reset to default by this process {DUR} after fork$",
                         text, re.M), text

    # The warning: once per signal for worker 0, whichever gunicorn worker came first.
    kid_pids = {k["pid"] for k in kids}
    for s in ("HUP", "USR2"):
        m = sv.wait_log(rf"warn: worker 0 \(pid (\d+), generation 1\): {s} would kill it "
                        rf"\(default action\); its parent pid {master} handles {s}: see "
                        r"sigvisor signals", timeout=15)
        assert len(m) == 1 and int(m[0]) in kid_pids, sv.text()
    killable_in_status(sv, {"HUP": 2, "USR2": 2})
    assert metrics(port) == {s: 2 if s in ("HUP", "USR2") else 0 for s in KILLABLE}

    # The warning was right: a USR2 kills a gunicorn worker.
    victim = kids[0]["pid"]
    os.kill(victim, signal.SIGUSR2)
    wait_for(lambda: not alive(victim), what="the gunicorn worker to die of USR2")
    assert alive(master)
    bpf.stop(sv)


def test_a_handler_the_earlier_generation_had_is_warned_about(start, tmpdir_short):
    flag = os.path.join(tmpdir_short, "handle-usr2")
    open(flag, "w").close()
    sv = start("-w", "1", "--ready-mode", "notify", "--metrics", "127.0.0.1:0",
               command=[PYTHON, os.path.join(WORKERS, "usr2_if_flag.py"), flag])
    port = metrics_port(sv)
    old = sv.wait_workers(1, "ready")[0]
    killable_in_status(sv, {})  # generation 1 handles USR2
    os.unlink(flag)
    sv.kill(signal.SIGHUP)
    new = wait_for(lambda: [w for w in sv.workers("ready") if w["generation"] == 2],
                   what="generation 2 ready")[0]
    sv.wait_log(rf"warn: worker {new['id']} \(pid {new['pid']}, generation 2\): USR2 would kill "
                rf"it \(default action\); its earlier generation \(pid {old['pid']}, "
                r"generation 1\) handled USR2: see sigvisor signals")
    killable_in_status(sv, {"USR2": 1})
    assert metrics(port)["USR2"] == 1
    assert sv.text().count("USR2 would kill") == 1


def test_a_look_that_never_finishes_is_killed_at_its_deadline(start):
    """The look runs in a child; one that does not finish (a worker whose /proc does not
    answer; here a test hook makes it sleep) is killed at 1 s, tried twice more 2 s
    apart, then given up until the workers change. The arbiter answers throughout."""
    sv = start("-w", "1", env={"SIGVISOR_TEST_KILLABLE_STALL": "1"})
    sv.wait_workers(1, "ready")
    first = sv.wait_log(r"info: signals: the look at /proc for processes a control signal "
                        r"would kill did not finish in 1\.0 s; killed it \(pid (\d+)\), "
                        r"looking again in 2\.0 s")
    # While a look hangs, the arbiter's loop does not.
    t0 = time.monotonic()
    assert sv.status()["signal_killable_processes"] is None
    assert time.monotonic() - t0 < 0.5
    last = sv.wait_log(r"warn: signals: the look at /proc for processes a control signal "
                       r"would kill did not finish in 1\.0 s, 3 times \(a worker's /proc does "
                       r"not answer\); killed it \(pid (\d+)\), not looking again until the "
                       r"workers change", timeout=15)
    looks = [int(p) for p in sv.wait_log(r"killed it \(pid (\d+)\)", count=3)]
    assert len(set(looks)) == 3 and int(first[0]) == looks[0] and int(last[0]) == looks[2]
    # Each killed look is reaped (no zombie left), and no other starts.
    for p in looks:
        wait_for(lambda: proc_status(p) is None, what=f"look {p} reaped")
    assert children(sv.pid) == [w["pid"] for w in sv.workers()]
    assert sv.text().count("killed it (pid") == 3
