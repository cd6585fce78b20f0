"""An unmodified socket-activated worker for the readiness tests: it never speaks
sd_notify (NOTIFY_SOCKET is dropped), sleeps before it serves the socket sigvisor hands
over at fd 3, then serves it the way real servers do (--style):

  accept  dup() fd 3 (as gunicorn does) and block in accept
  epoll   register it with an epoll set (selectors), as asyncio, uvicorn, node do
  select  wait in select() on it, then accept (gunicorn's sync worker)
  child   fork a child that serves it like accept (gunicorn's master and worker)
  none    never touch it (a worker that does not serve the sockets)

Each answer names the serving pid and the generation."""
import argparse
import ctypes
import os
import select
import selectors
import signal
import socket
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--style", default="accept")
p.add_argument("--delay-file", help="seconds to sleep before serving, read from this file")
p.add_argument("--delay", type=float, default=0.0)
args = p.parse_args()
os.environ.pop("NOTIFY_SOCKET", None)
busy = False      # answering a request
stopping = False  # TERM came while busy: exit once it is answered


def on_term(*_):
    """Like a real server's graceful stop: idle, exit at once; with a request in hand,
    answer it first (exiting then would reset a connection a test is reading)."""
    global stopping
    if not busy:
        os._exit(0)
    stopping = True


signal.signal(signal.SIGTERM, on_term)

delay = args.delay
if args.delay_file:
    with open(args.delay_file) as f:
        delay = float(f.read().strip() or 0)
time.sleep(delay)


def answer(conn):
    global busy
    busy = True
    try:
        respond(conn)
    finally:
        busy = False
        if stopping:
            os._exit(0)


def respond(conn):
    with conn:
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        body = f"late worker pid={os.getpid()} gen={os.environ.get('SIGVISOR_GENERATION')}\n"
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                     f"{body}".encode())


def accept_loop(sock):
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            continue
        answer(conn)


def main():
    if args.style == "none":
        while True:
            time.sleep(3600)
    if args.style == "child":
        pid = os.fork()
        if pid == 0:
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: never outlive it
            if os.getppid() == 1:
                os._exit(0)
            accept_loop(socket.socket(fileno=os.dup(3)))
        def stop(*_):  # as gunicorn's master: the child finishes its request first
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
            os._exit(0)
        signal.signal(signal.SIGTERM, stop)
        os.waitpid(pid, 0)
        return
    sock = socket.socket(fileno=os.dup(3))
    os.close(3)
    if args.style == "accept":
        accept_loop(sock)
    sock.setblocking(False)
    if args.style == "epoll":
        sel = selectors.EpollSelector()
        sel.register(sock, selectors.EVENT_READ)
        while True:
            for _ in sel.select():
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(True)
                answer(conn)
    if args.style == "select":
        while True:
            r, _, _ = select.select([sock], [], [], 30)
            if r:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(True)
                answer(conn)
    sys.exit(f"unknown style {args.style}")


main()
