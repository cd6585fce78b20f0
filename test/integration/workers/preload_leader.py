"""A pre-fork leader with gunicorn's preload bug, for test_dispositions.py.

At "import" it sets the handlers a master has (HUP, USR1, USR2); then it forks
children (argv[1], default 2) that inherit them and, in their own signal set-up,
reset USR2 to SIG_DFL: a USR2 sent to a child kills it. The children serve fd 3
(LISTEN_FDS); the leader says READY=1 once every child's set-up is done, and on TERM
stops them and exits."""
import ctypes
import os
import signal
import socket
import sys


def on_signal(sig, frame):
    pass


# What the application module does at import time, in the leader.
for s in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(s, on_signal)

assert os.environ["LISTEN_PID"] == str(os.getpid())
listener = socket.socket(fileno=3)
listener.setblocking(True)
r, w = os.pipe()
pids = []
for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 2):
    pid = os.fork()
    if pid == 0:
        os.close(r)
        # The leader may die by SIGKILL: its children must not outlive it.
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        # The worker's own signal init: the preload bug.
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
        os.close(w)  # this child's set-up is done
        while True:
            conn, _ = listener.accept()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
            conn.close()
    pids.append(pid)
os.close(w)
os.read(r, 1)  # EOF: every child has closed its end, its USR2 reset


def on_term(sig, frame):
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os._exit(0)


signal.signal(signal.SIGTERM, on_term)
addr = os.environ.get("NOTIFY_SOCKET", "")
if addr:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"READY=1", "\0" + addr[1:] if addr.startswith("@") else addr)
while True:
    try:
        os.wait()  # a child killed by USR2 is reaped here; the leader stays
    except ChildProcessError:
        signal.pause()
