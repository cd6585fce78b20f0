"""sigvisor as PID 1 in its own PID namespace, the way a container runs it."""
import os
import signal

from conftest import children, proc_status, wait_for


def arbiter_in_ns(sv):
    """unshare --fork's child is sigvisor, PID 1 inside the namespace."""
    return wait_for(lambda: children(sv.pid) and children(sv.pid)[0], what="PID 1")


def test_pid1_term_from_outside_exits_0(start):
    sv = start("-w", "2", wrap=["unshare", "--pid", "--fork", "--mount-proc"])
    st = sv.status()
    assert st["pid"] == 1
    arb = arbiter_in_ns(sv)
    os.kill(arb, signal.SIGTERM)
    assert sv.wait_exit() == 0  # unshare passes on its child's status
    sv.wait_log(r"received SIGTERM from pid 0 \(outside our PID namespace\)")


def test_pid1_reaps_orphans(start):
    sv = start("-w", "2", command=["sh", "-c", "for i in 1 2 3 4 5; do (sleep 0.05 &); done; "
                                   "exec sleep 600"],
               wrap=["unshare", "--pid", "--fork", "--mount-proc"])
    arb = arbiter_in_ns(sv)
    wait_for(lambda: sv.status()["counters"]["orphans_reaped"] >= 10, what="10 orphans reaped")
    # Every child is reaped as it exits: a zombie may be seen for the moment between its
    # exit and the arbiter's next turn (a readiness look's child is one), never for long.
    wait_for(lambda: not [c for c in children(arb)
                          if (proc_status(c) or {"State": ""})["State"].startswith("Z")],
             timeout=5, what="no zombie child")
    os.kill(arb, signal.SIGTERM)
    assert sv.wait_exit() == 0


def test_pid1_ttin_scales(start):
    sv = start("-w", "1", wrap=["unshare", "--pid", "--fork", "--mount-proc"])
    sv.wait_workers(1)
    arb = arbiter_in_ns(sv)
    os.kill(arb, signal.SIGTTIN)
    sv.wait_workers(2)
    os.kill(arb, signal.SIGTERM)
    assert sv.wait_exit() == 0
