"""A COMMAND worker for the tests: serves HTTP on the socket sigvisor hands over (fd 3,
LISTEN_FDS) and speaks sd_notify over NOTIFY_SOCKET, with knobs to misbehave."""
import argparse
import http.server
import os
import signal
import socket
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("--no-ready-if", help="do not send READY=1 while this file exists")
p.add_argument("--pings", type=int, default=-1,
               help="send this many WATCHDOG=1 pings, then go silent (-1: forever)")
p.add_argument("--first-ping-after", type=float, default=0,
               help="wait this long after READY=1 before the first WATCHDOG=1")
p.add_argument("--term-log", help="append '<pid> TERM' here for every TERM received")
p.add_argument("--status", default="", help="send STATUS=<this> once ready")
args = p.parse_args()


def notify(msg):
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(msg.encode(), addr)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = f"python worker pid={os.getpid()} gen={os.environ.get('SIGVISOR_GENERATION')}\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *a):
        pass


assert os.environ["LISTEN_PID"] == str(os.getpid())
assert int(os.environ["LISTEN_FDS"]) >= 1
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
server.socket.close()
server.socket = socket.socket(fileno=3)
# The listening socket is shared by every worker: when one connection wakes several of
# them, only one accept() succeeds. A blocking accept would hang the others.
server.socket.setblocking(False)
server.daemon_threads = True


def drain_and_exit():
    server.shutdown()
    time.sleep(0.3)  # a second TERM in this window would be logged by on_term
    os._exit(0)


def on_term(signum, frame):
    if args.term_log:
        with open(args.term_log, "a") as f:
            f.write(f"{os.getpid()} TERM\n")
    threading.Thread(target=drain_and_exit, daemon=True).start()


signal.signal(signal.SIGTERM, on_term)

if not (args.no_ready_if and os.path.exists(args.no_ready_if)):
    notify("READY=1" + (f"\nSTATUS={args.status}" if args.status else ""))

if args.pings != 0 and os.environ.get("WATCHDOG_USEC"):
    interval = int(os.environ["WATCHDOG_USEC"]) / 2e6

    def pinger():
        time.sleep(args.first_ping_after)
        n = args.pings
        while n != 0:
            notify("WATCHDOG=1")
            n -= 1
            time.sleep(interval)
    threading.Thread(target=pinger, daemon=True).start()

server.serve_forever()
while True:  # drain_and_exit() ends the process
    time.sleep(1)
