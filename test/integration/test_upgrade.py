"""USR2: in-place binary upgrade (same PID, new image, new workers), also as PID 1."""
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

from conftest import DEADLINE, SIGVISOR, children, wait_for
from test_bpf import bpf  # noqa: F401 (a fixture)
from test_reload import wait_reloaded, wrk, wrk_result


def install_copy(tmpdir):
    """A copy of the binary to start from, so the test can replace it on disk."""
    path = os.path.join(tmpdir, "sigvisor")
    shutil.copy2(SIGVISOR, path)
    return path


def replace_binary(path, content=None):
    """Replace the file at path with a new inode, as a package upgrade does."""
    tmp = path + ".new"
    if content is None:
        shutil.copy2(SIGVISOR, tmp)
    else:
        with open(tmp, "w") as f:
            f.write(content)
        os.chmod(tmp, 0o755)
    os.rename(tmp, path)


def start_from(start, tmpdir, *args, **kw):
    import conftest
    path = install_copy(tmpdir)
    saved = conftest.SIGVISOR
    conftest.SIGVISOR = path  # Sigvisor() reads it at construction
    try:
        return start(*args, **kw), path
    finally:
        conftest.SIGVISOR = saved


def test_usr2_under_load_keeps_pid_and_replaces_every_worker(start, tmpdir_short):
    sv, path = start_from(start, tmpdir_short, "-w", "4", "--graceful-timeout", "10")
    old = {w["pid"] for w in sv.wait_workers(4)}
    replace_binary(path)
    load = wrk(sv.port, 3)
    wait_for(lambda: sv.get("/")[0] == 200, what="serving")
    sv.kill(signal.SIGUSR2)
    wait_reloaded(sv, 2, 4)
    requests, errors, non2xx, out = wrk_result(load)
    st = sv.status()
    assert st["pid"] == sv.pid
    assert not old & {w["pid"] for w in st["workers"]}
    assert requests > 1000 and errors is None and non2xx is None, out
    sv.wait_log(r"upgrade: exec %s in place \(pid %d stays\)" % (path, sv.pid))
    sv.wait_log(r"upgraded in place: adopted 4 workers of generation 1")
    # counters survive the exec
    assert st["counters"]["spawned"] == 8
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0


def test_broken_new_binary_is_refused_and_old_keeps_serving(start, tmpdir_short):
    sv, path = start_from(start, tmpdir_short, "-w", "2")
    before = sorted(w["pid"] for w in sv.wait_workers(2))
    replace_binary(path, "#!/bin/sh\nexit 1\n")
    sv.kill(signal.SIGUSR2)
    sv.wait_log(r"upgrade refused: %s --check exited with status 1; still running the old "
                r"binary" % path)
    st = sv.status()
    assert st["generation"] == 1 and sorted(w["pid"] for w in st["workers"]) == before
    assert sv.get("/")[0] == 200


def test_new_binary_whose_check_hangs_is_refused(start, tmpdir_short):
    sv, path = start_from(start, tmpdir_short, "-w", "1", "--ready-timeout", "0.5")
    sv.wait_workers(1)
    replace_binary(path, "#!/bin/sh\nexec sleep 600\n")
    sv.kill(signal.SIGUSR2)
    sv.wait_log(r"upgrade refused: the new binary's --check did not finish in time")
    assert sv.status()["generation"] == 1
    assert sv.get("/")[0] == 200


def test_usr2_twice_and_hup_during_an_upgrade(start, tmpdir_short):
    sv, path = start_from(start, tmpdir_short, "-w", "2")
    sv.wait_workers(2)
    replace_binary(path)
    sv.kill(signal.SIGUSR2)
    sv.kill(signal.SIGUSR2)
    sv.kill(signal.SIGHUP)

    def settled():
        st = sv.status()
        ws = st["workers"]
        return (not st["reloading"] and st["generation"] >= 2 and len(ws) == 2 and
                all(w["generation"] == st["generation"] and w["state"] == "ready"
                    for w in ws))
    wait_for(settled, 20, "a settled pool after USR2, USR2, HUP")
    sv.wait_log(r"upgraded in place")
    assert sv.status()["pid"] == sv.pid
    assert sv.get("/")[0] == 200


def test_usr2_as_pid1(start, tmpdir_short):
    sv, path = start_from(start, tmpdir_short, "-w", "2",
                          wrap=["unshare", "--pid", "--fork", "--mount-proc"])
    sv.wait_workers(2)
    arb = wait_for(lambda: children(sv.pid) and children(sv.pid)[0], what="PID 1")
    replace_binary(path)
    os.kill(arb, signal.SIGUSR2)
    wait_reloaded(sv, 2, 2)
    st = sv.status()
    assert st["pid"] == 1
    assert children(sv.pid) == [arb]  # still the same process
    assert sv.get("/")[0] == 200
    os.kill(arb, signal.SIGTERM)
    assert sv.wait_exit() == 0


def control_connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(DEADLINE)
    s.connect(path)
    return s


def read_to_end(s):
    return b"".join(iter(lambda: s.recv(65536), b""))


def test_control_connections_open_across_usr2_are_answered_by_the_new_image(
        start, tmpdir_short):
    sv, path = start_from(start, tmpdir_short, "-w", "1")
    sv.wait_workers(1)
    idle = control_connect(sv.control)  # accepted, no request yet
    half = control_connect(sv.control)
    half.sendall(b"status")  # part of a request
    try:
        # One accept loop takes the queue in order: once this is answered, the old
        # image has accepted both.
        assert sv.status()["generation"] == 1
        sv.kill(signal.SIGUSR2)
        sv.wait_log(r"upgraded in place")
        idle.sendall(b"status json\n")
        half.sendall(b" json\n")
        for s in (idle, half):
            st = json.loads(read_to_end(s))
            assert st["pid"] == sv.pid and st["generation"] == 2  # the new image's
    finally:
        idle.close()
        half.close()
    wait_reloaded(sv, 2, 1)


def test_control_requests_never_fail_across_usr2(start, tmpdir_short):
    """Status requests in tight loops, raw and through `sigvisor status`, while the
    arbiter execs itself 4 times: every one is answered, none is reset."""
    sv, path = start_from(start, tmpdir_short, "-w", "2")
    sv.wait_workers(2)
    stop = threading.Event()
    answered, failures = [], []

    def raw(req):
        while not stop.is_set():
            try:
                s = control_connect(sv.control)
                with s:
                    for part in req:  # a split request: the exec may fall in between
                        s.sendall(part)
                    st = json.loads(read_to_end(s))
                assert st["pid"] == sv.pid, st
                answered.append("raw")
            except Exception as e:  # a reset, a truncated answer, a wrong pid
                failures.append(f"raw {req}: {e!r}")

    def cli():
        while not stop.is_set():
            r = subprocess.run([SIGVISOR, "status", "--control", sv.control],
                               capture_output=True, text=True, timeout=DEADLINE)
            if r.returncode == 0 and "workers: 2 wanted" in r.stdout:
                answered.append("cli")
            else:
                failures.append(f"cli: status {r.returncode}: {r.stderr!r} {r.stdout!r}")

    threads = [threading.Thread(target=raw, args=([b"status json\n"],)),
               threading.Thread(target=raw, args=([b"status", b" json\n"],)),
               threading.Thread(target=cli)]
    for t in threads:
        t.start()
    try:
        for gen in range(2, 6):
            raw_before, cli_before = answered.count("raw"), answered.count("cli")
            sv.kill(signal.SIGUSR2)
            wait_reloaded(sv, gen, 2)
            # both kinds of client kept going through this upgrade (counted, not
            # timed: a `sigvisor status` process is slow on a busy machine)
            wait_for(lambda: answered.count("raw") >= raw_before + 20 and
                     answered.count("cli") >= cli_before + 2, what="requests answered")
    finally:
        stop.set()
        for t in threads:
            t.join(DEADLINE)
    sv.wait_log(r"upgraded in place", count=4)
    assert failures == [], failures[:5]
    assert answered.count("raw") >= 80 and answered.count("cli") >= 8


def test_status_events_follower_carries_on_across_usr2(bpf, tmpdir_short):  # noqa: F811
    """A `sigvisor status --events` follower is handed over too: it is told that the
    exec missed events, then follows the new image's."""
    import conftest
    path = install_copy(tmpdir_short)
    saved, conftest.SIGVISOR = conftest.SIGVISOR, path
    try:
        sv = bpf.start("-w", "1")
    finally:
        conftest.SIGVISOR = saved
    sv.wait_workers(1)
    follower = subprocess.Popen([SIGVISOR, "status", "--control", sv.control, "--events"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []

    def read():
        for line in follower.stdout:
            lines.append(line)
    reader = threading.Thread(target=read)
    reader.start()

    def saw(text):
        wait_for(lambda: any(text in line for line in lines), what=f"{text!r} from the follower")
    try:
        saw("following signal events")
        sv.kill(signal.SIGUSR2)
        sv.wait_log(r"upgraded in place")
        saw("(sigvisor upgraded in place: events during the exec were not seen)")
        wait_reloaded(sv, 2, 1)
        sv.kill(signal.SIGTTIN)
        saw("signal TTIN from pid %d " % os.getpid())
        assert follower.poll() is None
    finally:
        follower.terminate()
        follower.wait(DEADLINE)
        reader.join(DEADLINE)
    bpf.stop(sv)
