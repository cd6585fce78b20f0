"""A lone worker for test_dispositions_probes.py: it handles USR2 while the file named by
argv[1] exists when it starts, else leaves USR2 at its default; it says READY=1 and
waits. Generation 1 with the file, generation 2 without: the handler its earlier
generation had is gone."""
import os
import signal
import socket
import sys

if os.path.exists(sys.argv[1]):
    signal.signal(signal.SIGUSR2, lambda sig, frame: None)
addr = os.environ.get("NOTIFY_SOCKET", "")
if addr:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"READY=1", "\0" + addr[1:] if addr.startswith("@") else addr)
while True:
    signal.pause()
