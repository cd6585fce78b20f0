"""`sigvisor signals`: what each control signal would do, now, to every process of every
worker's tree, read from /proc by the command (the arbiter only names its workers).

The founding story: a pre-fork leader that sets a USR2 handler at import time, whose
children reset USR2 to SIG_DFL in their own signal set-up (gunicorn's preload_app): a
`kill -USR2 <child>` kills it. `sigvisor signals` shows it before it fires."""
import json
import os
import re
import shutil
import signal

import pytest

from conftest import alive, proc_status, run_sigvisor, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
WORKERS = os.path.join(HERE, "workers")
LEADER = os.path.join(WORKERS, "preload_leader.py")
PYTHON = "/usr/bin/python3"


def signals(sv, *extra):
    r = run_sigvisor("signals", "--control", sv.control, *extra)
    assert r.returncode == 0, r.stderr
    return r.stdout


def signals_json(sv):
    return json.loads(signals(sv, "--json"))["processes"]


def test_preload_leader_children_die_on_usr2_and_are_marked(start):
    sv = start("-w", "2", "--ready-mode", "notify", command=[PYTHON, LEADER, "2"])
    workers = sv.wait_workers(2, "ready")
    procs = signals_json(sv)
    assert all(set(p) == {"pid", "worker", "generation", "parent", "comm", "signals"}
               for p in procs), procs
    by_pid = {p["pid"]: p for p in procs}
    kids = []
    for w in workers:
        leader = by_pid[w["pid"]]
        assert (leader["worker"], leader["generation"], leader["parent"]) == \
            (w["id"], 1, sv.pid)
        # The leader handles what it set at import; its children reset USR2 only.
        assert leader["signals"]["USR2"] == "handler"
        assert leader["signals"]["HUP"] == "handler"
        children = [p for p in procs if p["parent"] == w["pid"]]
        assert len(children) == 2, procs
        for c in children:
            assert (c["worker"], c["generation"]) == (w["id"], 1)
            assert c["signals"]["USR2"] == "default: kills"
            assert c["signals"]["HUP"] == "handler"
            assert c["signals"]["WINCH"] == "default: ignored"
            assert c["signals"]["TTIN"] == "default: stops"
            assert c["signals"]["TTOU"] == "default: stops"
        kids += [c["pid"] for c in children]
    assert len(procs) == 6 and len(by_pid) == 6  # each process once

    # The text view: one row a process, the children marked, the leaders not.
    text = signals(sv)
    for w in workers:
        assert f"worker {w['id']}, generation 1:" in text
        assert re.search(rf"^  +{w['pid']} +{sv.pid} ", text, re.M), text
    for k in kids:
        assert re.search(rf"^! +{k} +\d+ .*handler +handler +kills +kills +handler +kills ",
                         text, re.M), text
    closing = text.strip().splitlines()[-1]
    assert closing.startswith("! 4 processes die on a signal meant to control them:"), text
    for k in kids:
        assert re.search(rf"pid {k} \(worker \d, python3[.\d]*\) on USR2(;|$)", closing), text

    # What it said is what happens: USR2 kills a child, and the leader handles it.
    os.kill(kids[0], signal.SIGUSR2)
    wait_for(lambda: not alive(kids[0]), what="the child to die of USR2")
    os.kill(workers[0]["pid"], signal.SIGUSR2)
    assert alive(workers[0]["pid"])
    assert kids[0] not in {p["pid"] for p in signals_json(sv)}


@pytest.mark.skipif(not shutil.which("gunicorn"), reason="gunicorn is not installed")
def test_gunicorn_preload_workers_die_on_usr2(start):
    """gunicorn --preload with an app that sets a USR2 handler at import: the master's
    own signal set-up replaces it, and each worker's init_signals resets HUP and USR2
    (among others) to SIG_DFL and sets its own QUIT, TERM, INT, WINCH, USR1 and ABRT
    handlers, keeping the master's TTIN and TTOU."""
    sv = start("-w", "1", "--ready-mode", "auto", "--graceful-timeout", "5",
               command=[shutil.which("gunicorn"), "--preload", "-w", "2",
                        "--chdir", WORKERS, "preload_app:app"])
    master = sv.wait_workers(1, "ready")[0]["pid"]

    def workers_set_up():
        # ABRT is the one handler a gunicorn worker has and its master has not: it is
        # set last in the worker's init_signals.
        ps = signals_json(sv)
        kids = [p for p in ps if p["parent"] == master]
        if len(kids) == 2 and all(k["signals"].get("ABRT") == "handler" for k in kids):
            return ps
        return None
    procs = wait_for(workers_set_up, timeout=30, what="gunicorn's workers set up")
    assert len(procs) == 3
    top = procs[0]
    assert (top["pid"], top["worker"], top["generation"], top["parent"], top["comm"]) == \
        (master, 0, 1, sv.pid, "gunicorn")
    assert all(v == "handler" for v in top["signals"].values()), top
    assert top["signals"]["CHLD"] == "handler"
    for k in procs[1:]:
        assert (k["worker"], k["generation"], k["parent"], k["comm"]) == \
            (0, 1, master, "gunicorn")
        assert k["signals"] == {
            "HUP": "default: kills", "INT": "handler", "QUIT": "handler",
            "TERM": "handler", "USR1": "handler", "USR2": "default: kills",
            "WINCH": "handler", "TTIN": "handler", "TTOU": "handler", "ABRT": "handler"}, k
    text = signals(sv)
    for k in procs[1:]:
        assert re.search(rf"^! +{k['pid']} +{master} gunicorn ", text, re.M), text
        assert re.search(rf"pid {k['pid']} \(worker 0, gunicorn\) on HUP USR2", text), text
    assert re.search(rf"^  +{master} +{sv.pid} gunicorn .* CHLD$", text, re.M), text

    # And so it is: a USR2 to a worker kills it (its master starts another).
    victim = procs[1]["pid"]
    os.kill(victim, signal.SIGUSR2)
    wait_for(lambda: not alive(victim), what="the gunicorn worker to die of USR2")
    assert alive(master)


@pytest.mark.skipif(not shutil.which("gunicorn"), reason="gunicorn is not installed")
@pytest.mark.parametrize("hook,usr2", [("post_fork", "default: kills"),
                                       ("post_worker_init", "handler")])
def test_gunicorn_post_fork_is_too_early_post_worker_init_is_not(start, hook, usr2):
    """The advice for the preload trap is to register the handler again in post_fork.
    In gunicorn (20.1) post_fork runs in the worker before init_signals, which resets
    USR2: the handler is gone again. post_worker_init runs after it and keeps it. What
    README.md's walk-through says, as `sigvisor signals` shows it."""
    sv = start("-w", "1", "--ready-mode", "auto", "--graceful-timeout", "5",
               env={"PRELOAD_HOOK": hook},
               command=[shutil.which("gunicorn"), "-c",
                        os.path.join(WORKERS, "preload_hooks.py"), "-w", "2",
                        "--chdir", WORKERS, "preload_app:app"])
    master = sv.wait_workers(1, "ready")[0]["pid"]

    def workers_set_up():
        kids = [p for p in signals_json(sv) if p["parent"] == master]
        if len(kids) == 2 and all(k["signals"].get("ABRT") == "handler" for k in kids):
            return kids
        return None
    kids = wait_for(workers_set_up, timeout=30, what="gunicorn's workers set up")
    if usr2 == "handler":
        # post_worker_init runs after the app is loaded: wait until it has run too.
        kids = wait_for(lambda: (lambda ks: ks if all(
            k["signals"]["USR2"] == "handler" for k in ks) else None)(workers_set_up()),
            timeout=30, what="post_worker_init to run")
    for k in kids:
        assert k["signals"]["USR2"] == usr2, k
    victim = kids[0]["pid"]
    os.kill(victim, signal.SIGUSR2)
    if usr2 == "handler":
        bit = 1 << (signal.SIGUSR2 - 1)

        def taken():  # no longer pending: delivered, to its handler
            st = proc_status(victim)
            return st is None or not (int(st["SigPnd"], 16) | int(st["ShdPnd"], 16)) & bit
        wait_for(taken, what="the USR2 to be taken")
        assert alive(victim)
        assert victim in {p["pid"] for p in signals_json(sv)}
    else:
        wait_for(lambda: not alive(victim), what="the gunicorn worker to die of USR2")


def test_builtin_worker_blocks_what_it_reads_from_its_signalfd(start):
    sv = start("-w", "1")
    w = sv.wait_workers(1, "ready")[0]
    procs = signals_json(sv)
    assert len(procs) == 1
    p = procs[0]
    assert (p["pid"], p["worker"], p["generation"], p["parent"]) == (w["pid"], 0, 1, sv.pid)
    # It reads these from a signalfd: blocked, and a default action behind the block.
    for sig in ("HUP", "INT", "QUIT", "TERM"):
        assert p["signals"][sig] == "blocked (then: default: kills)", p
    # The arbiter's own signals do nothing to it: read and ignored, never their default
    # (USR2 would kill it, TTIN and TTOU stop it).
    for sig in ("USR2", "TTIN", "TTOU"):
        assert p["signals"][sig].startswith("blocked (then: "), p
    text = signals(sv)
    assert re.search(rf"^  +{w['pid']} +{sv.pid} \S+ +b:kills +b:kills +b:kills +b:kills ",
                     text, re.M), text  # no "!": nothing meant to control it kills it
    os.kill(w["pid"], signal.SIGUSR2)
    os.kill(w["pid"], signal.SIGTTIN)
    assert sv.get("/")[0] == 200
    assert [x["pid"] for x in sv.wait_workers(1, "ready")] == [w["pid"]]
    assert "exited" not in sv.text() and "killed by" not in sv.text()


def test_usage_and_no_arbiter(tmpdir_short):
    r = run_sigvisor("signals", "--bogus")
    assert r.returncode == 2 and "usage: sigvisor signals" in r.stderr
    r = run_sigvisor("signals", "--control", os.path.join(tmpdir_short, "none.sock"),
                     "--timeout", "1")
    assert r.returncode == 1 and r.stderr.startswith("sigvisor signals: cannot connect"), r.stderr
