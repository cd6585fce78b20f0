"""COMMAND workers: clean signal state, socket activation environment, orphans."""
import os
import signal

from conftest import alive, children, proc_environ, proc_status, wait_for


def test_command_worker_starts_with_clean_signal_state(start):
    sv = start("-w", "2", "--ready-mode", "start", command=["sleep", "600"])
    ws = sv.wait_workers(2)
    for w in ws:
        # ready once started: wait for the exec, the post-fork setup runs before it
        wait_for(lambda: open(f"/proc/{w['pid']}/comm").read().strip() == "sleep",
                 what="worker to exec")
        st = proc_status(w["pid"])
        assert st["SigBlk"] == "0000000000000000", st
        assert st["SigIgn"] == "0000000000000000", st
        assert st["SigCgt"] == "0000000000000000", st


def test_command_worker_gets_listen_fds(start):
    sv = start("-w", "1", "--ready-mode", "start", command=["sleep", "600"])
    [w] = sv.wait_workers(1)
    # ready once started: wait until the exec'd environment is there
    env = wait_for(lambda: (lambda e: e if "LISTEN_PID" in e else None)(proc_environ(w["pid"])),
                   what="the worker's exec'd environment")
    assert env["LISTEN_FDS"] == "1"
    assert env["LISTEN_PID"] == str(w["pid"])
    assert env["LISTEN_FDNAMES"] == f"127.0.0.1-{sv.port}"
    assert env["SIGVISOR_WORKER_ID"] == "0"
    assert env["SIGVISOR_GENERATION"] == "1"
    assert env["SIGVISOR_ARBITER_PID"] == str(sv.pid)
    assert os.readlink(f"/proc/{w['pid']}/fd/3").startswith("socket:")
    # nothing else of the arbiter's leaks past 3 (all its own fds are O_CLOEXEC). The
    # kernel shows the new environment before execve has closed the close-on-exec fds
    # (postfork's temporary copies): wait for the end of the exec, not only its start.
    def fds():
        return sorted(int(x) for x in os.listdir(f"/proc/{w['pid']}/fd"))
    try:
        wait_for(lambda: fds() == [0, 1, 2, 3], timeout=5, what="fds 0-3 only")
    except AssertionError:
        assert fds() == [0, 1, 2, 3]


def test_two_binds_hand_over_two_sockets(start, tmpdir_short):
    path = os.path.join(tmpdir_short, "app.sock")
    sv = start("-w", "1", "-b", "unix:" + path, "--ready-mode", "start", command=["sleep", "600"])
    [w] = sv.wait_workers(1)
    # ready once started: wait until the exec'd environment is there
    env = wait_for(lambda: (lambda e: e if "LISTEN_PID" in e else None)(proc_environ(w["pid"])),
                   what="the worker's exec'd environment")
    assert env["LISTEN_FDS"] == "2"
    assert env["LISTEN_FDNAMES"].endswith(":unix-" + path)
    assert oct(os.stat(path).st_mode)[-3:] != "000"
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0
    assert not os.path.exists(path), "unix socket not removed on exit"


def test_orphans_are_reaped_as_subreaper(start):
    # Each worker leaves an orphan that exits after its parent is gone.
    sv = start("-w", "1", "--ready-mode", "start",
               command=["sh", "-c", "(sleep 0.2 &); exec sleep 600"])
    sv.wait_workers(1)
    wait_for(lambda: sv.status()["counters"]["orphans_reaped"] >= 1, what="orphan reaped")
    zombies = [c for c in children(sv.pid)
               if (proc_status(c) or {"State": ""})["State"].startswith("Z")]
    assert zombies == []


def test_worker_arbiter_death_takes_workers_down(start):
    sv = start("-w", "2")
    ws = sv.wait_workers(2)
    sv.proc.kill()
    sv.proc.wait()
    for w in ws:
        wait_for(lambda: not alive(w["pid"]), what="worker to follow its arbiter")
