"""What other users and the workers' own children can do to sigvisor (issue 23): sockets
planted where root's `sigvisor status` looks, a flood of refused control clients, and
processes a worker started that outlive it."""
import os
import re
import subprocess
import time

from conftest import wait_for

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

FLOOD = r'''
import socket, sys
n = 0
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    s.close()
    n += 1
print(n)
'''


def test_refused_control_clients_are_logged_once_a_second_with_a_count(start, tmpdir_short):
    """2,000 connections from a uid the socket refuses: every one is counted, the log
    gets a line a second at most, and the lines add up to all of them, the last ones
    in a summary written on the timer once the flood stops."""
    sv = start("-w", "1")
    sv.wait_workers(1)
    os.chmod(tmpdir_short, 0o755)
    os.chmod(sv.control, 0o666)  # only the SO_PEERCRED check stands in the way now
    t0 = time.monotonic()
    r = subprocess.run(NOBODY + ["/usr/bin/python3", "-c", FLOOD, sv.control, "2000"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "2000", r.stderr
    wait_for(lambda: sv.status()["counters"]["control_rejected"] == 2000,
             what="2000 refusals counted")
    sv.wait_log(r"control socket: refused \d+ more clients of another uid since the last "
                r"such line")
    took = time.monotonic() - t0
    text = sv.text()
    lines = re.findall(r"control socket: refused a client with uid 65534"
                       r"(?: \(and (\d+) more since the last such line\))?", text)
    summaries = [int(x) for x in re.findall(r"control socket: refused (\d+) more clients of "
                                            r"another uid since the last such line", text)]
    assert 1 <= len(lines) + len(summaries) <= took + 2, (len(lines), took)
    assert len(lines) + sum(int(x or 0) for x in lines) + sum(summaries) == 2000, text[-2000:]
    # and the timer goes quiet again: no summary is due
    assert sv.status()["counters"]["control_rejected"] == 2000
