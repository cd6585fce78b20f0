"""TTIN/TTOU scale exactly with the probes on: N signals sent by another process in a
tight loop of kill(2) add (remove) N workers, though the kernel merges most of them into
one pending signal; also while a HUP's reload or a USR2's upgrade is under way. With the
probes off the count may merge, and status says so.

The probes need root and BPF: a skip locally, a failure under CI=true (test_bpf.py)."""
import os
import re
import signal
import subprocess

import pytest

from conftest import wait_for
from test_bpf import PYTHON, bpf  # noqa: F401 (the fixture)

SENDER = ("import os, sys\n"
          "pid, sig, n = map(int, sys.argv[1:])\n"
          "sys.stdin.readline()\n"
          "for _ in range(n):\n"
          "    os.kill(pid, sig)\n")


class Sender:
    """A separate process, started ahead (Python takes tens of ms to start), that sends
    n signals as fast as it can call kill(2) once fired."""

    def __init__(self, pid, sig, n):
        self.p = subprocess.Popen([PYTHON, "-c", SENDER, str(pid), str(int(sig)), str(n)],
                                  stdin=subprocess.PIPE)

    def fire(self):
        self.p.stdin.write(b"go\n")
        self.p.stdin.close()
        assert self.p.wait(30) == 0


def send(pid, sig, n):
    Sender(pid, sig, n).fire()


def all_read(sv):
    """Wait until the arbiter has read every TTIN/TTOU sent so far: a WINCH (ignored
    without --daemon) sent now is read only once no lower-numbered signal is pending,
    and the signalfd hands out the lowest first (TTIN 21, TTOU 22, WINCH 28)."""
    n = sv.text().count("received SIGWINCH")
    sv.kill(signal.SIGWINCH)
    sv.wait_log(r"received SIGWINCH", count=n + 1)


def settled(sv, n, timeout=60):
    """The pool's target is n and n workers are ready, none other left."""
    def ok():
        try:
            st = sv.status()
        except OSError:
            return None  # busy starting workers: a reconcile starts all it lacks at once
        ws = st["workers"]
        if (st["target"] == n and not st["reloading"] and len(ws) == n and
                all(w["state"] == "ready" for w in ws)):
            return st
        return None
    return wait_for(ok, timeout, f"{n} workers ready\n--- log:\n" + sv.text()[-3000:])


@pytest.mark.parametrize("n", [10, 50])
def test_n_ttin_add_n_workers(bpf, n):  # noqa: F811
    sv = bpf.start("-w", "1")
    sv.wait_workers(1)
    send(sv.pid, signal.SIGTTIN, n)
    all_read(sv)
    assert sv.status()["target"] == 1 + n, sv.text()[-3000:]
    st = settled(sv, 1 + n)
    assert (st["scale_signals"]["exact"], st["scale_signals"]["counting"]) == (
        True, "exact (probes)")
    t = st["signals"]["TTIN"]
    assert t["generated"] == n
    # What the kernel merged was applied all the same: counted beyond one per read.
    assert t["received"] + t["coalesced"] == n
    assert st["scale_signals"]["merged"] == t["coalesced"], (st["scale_signals"], t)
    assert re.search(r"TTIN x\d+ \(counted by the probes\): \d+ -> %d workers" % (1 + n),
                     sv.text())
    bpf.stop(sv)


def test_n_ttou_remove_n_workers_down_to_one(bpf):  # noqa: F811
    sv = bpf.start("-w", "12")
    sv.wait_workers(12)
    send(sv.pid, signal.SIGTTOU, 10)
    all_read(sv)
    assert sv.status()["target"] == 2, sv.text()[-3000:]
    settled(sv, 2)
    # Never fewer than one: ten more take it to 1, not below.
    send(sv.pid, signal.SIGTTOU, 10)
    all_read(sv)
    assert sv.status()["target"] == 1
    settled(sv, 1)
    sv.wait_log(r"TTOU x\d+ \(counted by the probes\): \d+ -> 1 workers \(never fewer than "
                r"one\)")
    bpf.stop(sv)


def test_exact_through_a_hup_in_flight(bpf):  # noqa: F811
    sv = bpf.start("-w", "2")
    sv.wait_workers(2)
    first, second = Sender(sv.pid, signal.SIGTTIN, 20), Sender(sv.pid, signal.SIGTTIN, 20)
    sv.kill(signal.SIGHUP)
    first.fire()  # while the config file is read, or the new generation starts
    sv.wait_log(r"reload: starting generation 2")
    second.fire()  # while the new generation is on trial
    all_read(sv)
    assert sv.status()["target"] == 42, sv.text()[-3000:]
    st = settled(sv, 42)
    assert st["generation"] == 2
    assert {w["generation"] for w in st["workers"]} == {2}
    sv.wait_log(r"reload complete: generation 2 serving")
    bpf.stop(sv)


def test_exact_through_a_usr2_in_flight(bpf):  # noqa: F811
    sv = bpf.start("-w", "2")
    sv.wait_workers(2)
    senders = [Sender(sv.pid, signal.SIGTTIN, 15) for _ in range(3)]
    sv.kill(signal.SIGUSR2)
    # During the new binary's --check (the old image reads them) ...
    senders[0].fire()
    # ... and around the exec: pending while no image reads, then read by the new one,
    # which carries on counting from what the old one applied.
    sv.wait_log(r"upgrade: exec .* in place \(pid %d stays\), the BPF probes handed over"
                % sv.pid)
    senders[1].fire()
    sv.wait_log(r"upgraded in place")
    senders[2].fire()  # during the new image's reload
    all_read(sv)
    assert sv.status()["target"] == 47, sv.text()[-3000:]
    st = settled(sv, 47)
    assert st["scale_signals"]["exact"] is True
    assert st["signals"]["TTIN"]["generated"] == 45
    # TTOU after the upgrade: still exact.
    send(sv.pid, signal.SIGTTOU, 40)
    all_read(sv)
    assert sv.status()["target"] == 7
    settled(sv, 7)
    bpf.stop(sv)


def test_exact_through_a_usr2_rolled_back(bpf, tmpdir_short):  # noqa: F811
    """The new image fails in its set-up after the exec (its pidfile's directory is
    gone) and the old one resumes, its probes handed back: still exact."""
    import conftest
    from test_upgrade import install_copy, replace_binary
    piddir = os.path.join(tmpdir_short, "run")
    os.mkdir(piddir)
    path = install_copy(tmpdir_short)
    saved, conftest.SIGVISOR = conftest.SIGVISOR, path
    try:
        sv = bpf.start("-w", "2", "--pid", os.path.join(piddir, "sigvisor.pid"))
    finally:
        conftest.SIGVISOR = saved
    sv.wait_workers(2)
    # test_upgrade's rollback_script, in Python: a shell unblocks every signal before it
    # runs a command, and the TTIN pending across the exec would stop the process.
    replace_binary(path, "#!%s\n"
                   "import os, shutil, sys\n"
                   "if '--check' not in sys.argv:\n"
                   "    shutil.rmtree(%r)\n"
                   "os.execv(%r, [%r] + sys.argv[1:])\n"
                   % (PYTHON, piddir, conftest.SIGVISOR, conftest.SIGVISOR))
    senders = [Sender(sv.pid, signal.SIGTTIN, 15) for _ in range(3)]
    sv.kill(signal.SIGUSR2)
    senders[0].fire()
    sv.wait_log(r"upgrade: exec .* in place \(pid %d stays\), the BPF probes handed over"
                % sv.pid)
    senders[1].fire()
    sv.wait_log(r"upgrade failed, rolled back: ")
    senders[2].fire()
    all_read(sv)
    assert sv.status()["target"] == 47, sv.text()[-3000:]
    st = settled(sv, 47)
    assert st["scale_signals"]["exact"] is True
    assert st["counters"]["upgrade_rollbacks"] == 1
    sv.wait_log(r"BPF probes kept from the image before the upgrade")
    bpf.stop(sv)


def test_probes_off_says_counts_may_merge(start):
    sv = start("-w", "1")  # conftest: --bpf off
    sv.wait_workers(1)
    st = sv.status()
    assert st["scale_signals"] == {"exact": False,
                                   "counting": "signals may merge (probes off)",
                                   "merged": 0}
    send(sv.pid, signal.SIGTTIN, 10)
    all_read(sv)
    # One worker per signal read; how many reads the kernel made of ten is its business.
    got = sv.status()["target"]
    assert 2 <= got <= 11
    assert "counted by the probes" not in sv.text()
    r = subprocess.run([sv.proc.args[0], "status", "--control", sv.control],
                       capture_output=True, text=True, timeout=10)
    assert "TTIN/TTOU: signals may merge (probes off)" in r.stdout, r.stdout


def test_the_terminals_ttin_stays_ignored_with_the_probes_on(bpf, tmpdir_short):  # noqa: F811
    """The tty layer's TTIN (SI_KERNEL, to a background process group that reads the
    terminal) is not counted: the probes count what processes send. Five TTIN from a
    process after it add exactly five."""
    import pty
    import time
    from conftest import SIGVISOR
    log = os.path.join(tmpdir_short, "tty.log")
    pid, fd = pty.fork()
    if pid == 0:  # session leader with the pty as controlling terminal
        try:
            arb = os.fork()
            if arb == 0:
                os.setpgid(0, 0)
                out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(out, 1)
                os.dup2(out, 2)
                os.execv(SIGVISOR, [SIGVISOR, "-b", "127.0.0.1:0", "-w", "1", "--bpf", "on",
                                    "--bpf-pin", bpf.pin, "--control",
                                    os.path.join(tmpdir_short, "tty.sock")])
            os.setpgid(arb, arb)

            def wait_text(needle):
                end = time.monotonic() + 10
                while time.monotonic() < end:
                    if os.path.exists(log) and needle in open(log).read():
                        return
                    time.sleep(0.01)
            wait_text("started")
            reader = os.fork()
            if reader == 0:
                os.setpgid(0, arb)
                os.read(0, 1)  # background read: the kernel sends TTIN to the group
                os._exit(0)
            wait_text("sent by the terminal")
            os.kill(reader, signal.SIGKILL)
            os.waitpid(reader, 0)
            for _ in range(5):
                os.kill(arb, signal.SIGTTIN)
            wait_text("-> 6 workers")
            os.kill(arb, signal.SIGTERM)
            _, st = os.waitpid(arb, 0)
            os._exit(0 if os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0 else 1)
        except BaseException:
            os._exit(2)
    _, st = os.waitpid(pid, 0)
    os.close(fd)
    text = open(log).read()
    assert "BPF probes on" in text, text
    assert "received SIGTTIN from the kernel: ignored, sent by the terminal" in text, text
    counted = [int(n) for n in re.findall(r"TTIN x(\d+) \(counted by the probes\)", text)]
    assert sum(counted) == 5, text
    assert re.search(r"-> 6 workers", text) and not re.search(r"-> [7-9] workers", text), text
    assert os.WEXITSTATUS(st) == 0, text
