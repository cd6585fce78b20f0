"""USR2: in-place binary upgrade (same PID, new image, new workers), also as PID 1."""
import os
import shutil
import signal
import time

from conftest import SIGVISOR, children, wait_for
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
