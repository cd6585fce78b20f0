"""`docker run --init` / `podman run --init` put a small init in front of sigvisor as
PID 1: `kill -TTIN 1` then reaches the init, not sigvisor. tini and catatonit pass TERM
on but not TTIN; dumb-init turns TTIN into SIGSTOP for sigvisor's process group. With
the real inits, in a PID namespace as a container has: sigvisor says so once at start,
and what it says is what they do."""
import os
import shutil
import signal

import pytest

from conftest import children, proc_status, wait_for

NS = ["unshare", "--pid", "--fork", "--mount-proc"]


def need(init):
    path = shutil.which(init)
    if not path:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{init} is not installed (scripts/deps.sh installs it)")
        pytest.skip(f"{init} is not installed (scripts/deps.sh installs it)")
    return path


def the_init(sv):
    """unshare's child: the init, PID 1 of the namespace (its host pid)."""
    return wait_for(lambda: children(sv.pid) and children(sv.pid)[0], what="PID 1")


@pytest.mark.parametrize("init", ["tini", "catatonit"])
def test_an_init_that_drops_ttin_is_named_and_ttin_to_it_does_nothing(start, init):
    sv = start("-w", "1", wrap=NS + [need(init), "--"])
    sv.wait_workers(1)
    sv.wait_log(rf"PID 1 is {init} \(docker/podman --init\?\), not sigvisor: it passes "
                r"TTIN and TTOU on to nobody; send TTIN/TTOU to pid 2, use `sigvisor "
                r"workers`")
    pid1 = the_init(sv)
    arbiter = children(pid1)[0]
    # TTIN, then WINCH, to the init: it passes WINCH on (the arbiter logs it), so a TTIN
    # it passed on would have been passed first.
    os.kill(pid1, signal.SIGTTIN)
    os.kill(pid1, signal.SIGWINCH)
    sv.wait_log(r"received SIGWINCH from pid 1 ")
    assert sv.status()["target"] == 1, "the init passed a TTIN on"
    assert "received SIGTTIN" not in open(sv.log_path).read()
    os.kill(arbiter, signal.SIGTTIN)  # to sigvisor itself, as the warning says
    wait_for(lambda: sv.status()["target"] == 2, what="the arbiter's own TTIN")
    os.kill(pid1, signal.SIGTERM)  # and TERM it does pass on
    assert sv.wait_exit() == 0
    assert open(sv.log_path).read().count("PID 1 is") == 1


def test_dumb_init_is_named_with_what_its_ttin_does(start):
    sv = start("-w", "1", wrap=NS + [need("dumb-init")])
    sv.wait_workers(1)
    sv.wait_log(r"PID 1 is dumb-init \(docker/podman --init\?\), not sigvisor: it turns "
                r"TTIN and TTOU into SIGSTOP for our process group")
    pid1 = the_init(sv)
    arbiter = children(pid1)[0]
    worker = children(arbiter)[0]
    # What the warning says: a TTIN to PID 1 stops sigvisor and its workers.
    os.kill(pid1, signal.SIGTTIN)
    try:
        for p in (arbiter, worker):
            wait_for(lambda: proc_status(p)["State"].startswith("T"), what=f"{p} stopped")
    finally:
        for p in (arbiter, worker):
            os.kill(p, signal.SIGCONT)
    os.kill(pid1, signal.SIGTERM)
    assert sv.wait_exit() == 0


def test_sigvisor_as_pid1_says_nothing_of_an_init(start):
    sv = start("-w", "1", wrap=NS)
    sv.wait_workers(1)
    sv.wait_log(r"started: pid 1")
    assert "PID 1 is" not in open(sv.log_path).read()
