"""The open-files limit at scale (issue 29): the arbiter holds a pidfd and a notify
socket per worker, so a pool of hundreds needs more fds than the soft limit of 1,024
many containers start with. It raises its own soft limit to the hard one, gives each
worker the limit it was started with, keeps that across an in-place upgrade, and
says once when even the hard limit is too low for --workers."""
import os
import re
import resource
import signal

from conftest import wait_for
from test_reload import wait_reloaded
from test_upgrade import start_from

SOFT = 1024


def nofile(pid):
    """(soft, hard) of pid's RLIMIT_NOFILE, from /proc/PID/limits."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError(f"no open files line in /proc/{pid}/limits")


def hard_limit():
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def under_limit(soft, hard=None):
    return ["prlimit", f"--nofile={soft}:{hard or hard_limit()}", "--"]


def test_600_workers_start_under_a_soft_limit_of_1024(start):
    hard = hard_limit()
    if hard < 4096:
        raise AssertionError(f"the test needs a hard open files limit >= 4096, not {hard}")
    sv = start("-w", "600", "--ready-timeout", "60", wrap=under_limit(SOFT))
    ws = sv.wait_workers(600, timeout=90)
    assert nofile(sv.pid) == (hard, hard)
    # Every worker sees the limit the arbiter was given, not the raised one.
    for w in ws[:: len(ws) // 10] + ws[-1:]:
        assert nofile(w["pid"]) == (SOFT, hard), w
    assert "Too many open files" not in sv.text()
    assert "open files limit" not in sv.text()


def test_the_limit_given_survives_an_upgrade(start, tmpdir_short):
    hard = hard_limit()
    sv, _ = start_from(start, tmpdir_short, "-w", "2", wrap=under_limit(SOFT))
    old = {w["pid"] for w in sv.wait_workers(2)}
    sv.kill(signal.SIGUSR2)
    wait_reloaded(sv, 2, 2)
    ws = sv.workers()
    assert not old & {w["pid"] for w in ws}
    assert nofile(sv.pid) == (hard, hard)
    for w in ws:
        assert nofile(w["pid"]) == (SOFT, hard), w
    # A TTIN after the upgrade too: the new image's own spawns.
    sv.kill(signal.SIGTTIN)
    ws = sv.wait_workers(3)
    for w in ws:
        assert nofile(w["pid"]) == (SOFT, hard), w


def test_a_hard_limit_too_low_for_the_workers_is_said_once(start):
    sv = start("-w", "600", wrap=under_limit(SOFT, SOFT), wait_ready=True)
    sv.wait_log(r"the open files limit is 1024 \(hard\), 600 workers need about \d+")
    # Still serving what fits; said once, not per failed start.
    wait_for(lambda: sv.get("/")[0] == 200, what="serving")
    assert sv.text().count("open files limit") == 1


def fd_links(pid):
    """fd -> what /proc/PID/fd/FD links to."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            pass
    return out


def listening_fds(pid, port):
    """The arbiter's fds of the TCP socket listening on 127.0.0.1:port: its inode from
    /proc/net/tcp (state 0A, listening), then the fds that link to it."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            col = line.split()
            if col[1].endswith(f":{port:04X}") and col[3] == "0A":
                inodes.add(col[9])
    return {fd for fd, what in fd_links(pid).items()
            if re.fullmatch(r"socket:\[(\d+)\]", what) and what[8:-1] in inodes}


def test_a_reloads_listening_sockets_stay_below_every_workers_fds(start):
    """A new worker copies the arbiter's fds below its highest listening socket and its
    exec closes them again: the copies a reload makes of the listening sockets must not
    land above the workers' pidfds and notify sockets (they did, every other HUP: each
    new worker of 4,096 copied and closed 8,000 fds). Two HUPs: both placements."""
    sv = start("-w", "40")
    sv.wait_workers(40)
    for gen in (2, 3):
        sv.kill(signal.SIGHUP)
        wait_reloaded(sv, gen, 40)
        links = fd_links(sv.pid)
        pidfds = [fd for fd, what in links.items() if what == "anon_inode:[pidfd]"]
        assert len(pidfds) >= 40, links
        listen = listening_fds(sv.pid, sv.port)
        assert listen, f"no listening fd of pid {sv.pid} on port {sv.port}"
        assert max(listen) < min(pidfds), (gen, sorted(listen), sorted(pidfds)[:5])
