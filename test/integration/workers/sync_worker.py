"""A sync worker, as gunicorn's sync worker or a PHP-FPM child: it serves its inherited
listening socket (fd 3) one request at a time and takes WORK_MS (argv[1], default 200)
over each. On TERM (a retirement) it finishes the request in hand and exits, and exits
at once when it has none. Used by test_autoscale.py and scripts/bench/autoscale.sh."""
import os
import signal
import socket
import sys
import time

work = int(sys.argv[1]) / 1000 if len(sys.argv) > 1 else 0.2
busy = stopping = False


def stop(*_):
    global stopping
    stopping = True
    if not busy:
        os._exit(0)


signal.signal(signal.SIGTERM, stop)
s = socket.socket(fileno=3)
while not stopping:
    c, _ = s.accept()
    busy = True
    head = b""
    while b"\r\n\r\n" not in head:
        got = c.recv(4096)
        if not got:
            break
        head += got
    time.sleep(work)
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
    c.close()
    busy = False
