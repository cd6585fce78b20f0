"""A COMMAND worker that says READY=1 and then leaves: a crash loop that sd_notify
alone would hide. It waits until sigvisor has read its READY=1 (a BARRIER=1 after it,
as sd_notify_barrier() and systemd-notify --ready do: sigvisor closes the passed fd
once it has read both), so the exit is always seen after the readiness, then lives
--live seconds more and exits with --status.

--only-generation G: misbehave only in generation G; other generations stay up.
--hold-slot ID: in that generation, worker ID never says READY=1 (it stays booting)."""
import argparse
import os
import select
import socket
import time

p = argparse.ArgumentParser()
p.add_argument("--live", type=float, default=0.0, help="seconds to live after READY=1")
p.add_argument("--status", type=int, default=0, help="exit status")
p.add_argument("--only-generation", type=int)
p.add_argument("--hold-slot", type=int)
args = p.parse_args()
mine = args.only_generation is None or \
    int(os.environ["SIGVISOR_GENERATION"]) == args.only_generation
if mine and args.hold_slot == int(os.environ["SIGVISOR_WORKER_ID"]):
    while True:
        time.sleep(3600)  # TERM (the default action) ends it

addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
    s.connect(addr)
    s.send(b"READY=1")
    r, w = os.pipe()
    socket.send_fds(s, [b"BARRIER=1"], [w])
    os.close(w)
    # EOF once sigvisor closed its copy: both messages were read, in order.
    select.select([r], [], [], 10)
    os.close(r)

if not mine:
    while True:
        time.sleep(3600)  # TERM (the default action) ends it
time.sleep(args.live)
os._exit(args.status)
