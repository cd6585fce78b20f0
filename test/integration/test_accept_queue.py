"""A graceful stop resets no connection the kernel has accepted: every connection that
completed its handshake is answered, every other one is refused (clients retry a
refusal; a reset is a lost request). Many short connections, each a new one, are
opened without pause through the moment a listener closes, again and again."""
import errno
import os
import selectors
import signal
import socket
import threading
import time

import pytest

from conftest import SANITIZED, free_port, wait_for
from test_reload import wait_reloaded
from test_upgrade import start_from

RUNS = 20
IN_FLIGHT = 32  # connections open at once: enough to keep the accept queue busy
REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


class Hammer(threading.Thread):
    """Keeps IN_FLIGHT connections in flight, each a fresh connect, one GET, read to
    EOF. Counts answers, refusals (the connect failed: never accepted) and losses (a
    connect that succeeded and then got a reset, or EOF, or nothing, instead of an
    answer). After stop() it opens nothing new and lets what is in flight finish."""

    def __init__(self, addr):
        super().__init__(daemon=True)
        self.addr = addr
        self.family = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
        self.ok = self.refused = self.slow_refused = 0
        self.lost = []
        self.stopping = threading.Event()
        self.sel = selectors.DefaultSelector()

    def open_one(self):
        s = socket.socket(self.family, socket.SOCK_STREAM)
        s.setblocking(False)
        t = time.monotonic()
        r = s.connect_ex(self.addr)
        if r in (0, errno.EINPROGRESS):
            self.sel.register(s, selectors.EVENT_WRITE, [t, "connecting", b""])
            return
        s.close()
        if r in (errno.ECONNREFUSED, errno.ENOENT, errno.EAGAIN):
            self.count_refusal(t)
        else:
            self.lost.append(f"connect: {errno.errorcode.get(r, r)}")

    def count_refusal(self, t):
        self.refused += 1
        if time.monotonic() - t > 0.5:
            self.slow_refused += 1  # its SYN was dropped: refused on the retry

    def finish(self, s, what=None, t=None):
        self.sel.unregister(s)
        s.close()
        if what == "refused":
            self.count_refusal(t)
        elif what:
            self.lost.append(what)

    def step(self, key, events):
        s, (t, state, buf) = key.fileobj, key.data
        if state == "connecting":
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == errno.ECONNREFUSED:
                return self.finish(s, "refused", t)
            if err:
                return self.finish(s, f"connect: {errno.errorcode.get(err, err)}")
            try:
                s.send(REQUEST)  # small: one send never blocks on a fresh socket
            except OSError as e:
                return self.finish(s, f"send after connect: {e!r}")
            key.data[1] = "reading"
            self.sel.modify(s, selectors.EVENT_READ, key.data)
            return
        try:
            chunk = s.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            return self.finish(s, f"accepted, then {e!r} after {len(buf)} bytes")
        if chunk:
            key.data[2] = buf + chunk
            return
        if buf.startswith(b"HTTP/1.1 200 "):
            self.ok += 1
            return self.finish(s)
        return self.finish(s, f"accepted, then EOF after {buf[:40]!r}")

    def run(self):
        while True:
            if not self.stopping.is_set():
                for _ in range(IN_FLIGHT - len(self.sel.get_map())):
                    self.open_one()
            elif not self.sel.get_map():
                return
            for key, events in self.sel.select(0.1):
                self.step(key, events)
            now = time.monotonic()
            for key in list(self.sel.get_map().values()):
                if now - key.data[0] > 8:  # the 1 s and 3 s SYN retries are long past
                    self.finish(key.fileobj, f"no answer in 8 s ({key.data[1]})")

    def stop(self, timeout=10):
        self.stopping.set()
        self.join(timeout)
        assert not self.is_alive(), "connections still in flight"


# Reported once at the end of the module: refusals are expected, counted, not failures.
TOTALS = {}


@pytest.fixture(scope="module")
def totals(request):
    yield TOTALS
    plugins = request.config.pluginmanager
    tr, capman = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if not (tr and capman and TOTALS):
        return
    with capman.global_and_fixture_disabled():
        tr.write_line("")
        for k, v in sorted(TOTALS.items()):
            tr.write_line(f"accept queue, {k}: {v['runs']} runs, {v['ok']} answered, "
                          f"{v['lost']} lost, {v['refused']} refused ({v['slow']} after a "
                          f"dropped SYN's retry)")


def add(totals, kind, h):
    t = totals.setdefault(kind, {"runs": 0, "ok": 0, "lost": 0, "refused": 0, "slow": 0})
    t["runs"] += 1
    t["ok"] += h.ok
    t["lost"] += len(h.lost)
    t["refused"] += h.refused
    t["slow"] += h.slow_refused


def check(h, kind, sv):
    assert not h.lost, (f"{kind}: {len(h.lost)} lost of {h.ok + len(h.lost)} accepted: "
                        f"{h.lost[:5]}\n--- log:\n{sv.text()[-3000:]}")


@pytest.mark.parametrize("run", range(RUNS))
def test_term_resets_no_accepted_connection(start, tmpdir_short, totals, run):
    """Odd runs go through --shutdown-delay; runs 2, 3, 6, 7, ... also hammer a unix
    socket at the same time."""
    args = ["-w", "2", "--graceful-timeout", "5"]
    if run % 2:
        args += ["--shutdown-delay", "100ms"]
    unix = os.path.join(tmpdir_short, "app.sock") if run % 4 >= 2 else None
    if unix:
        args += ["-b", f"unix:{unix}"]
    sv = start(*args)
    sv.wait_workers(2)
    hammers = [Hammer(("127.0.0.1", sv.port))] + ([Hammer(unix)] if unix else [])
    for h in hammers:
        h.start()
    # ASan makes the workers slower, not the kernel: fewer answers per second.
    wait_for(lambda: all(h.ok >= (20 if SANITIZED else 100) for h in hammers),
             what="load running")
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0
    # Everything is closed now: new connections are refused at once. What is still in
    # flight finishes (a dropped SYN is retried after 1 s and refused then).
    for h in hammers:
        h.stop()
    for h, kind in zip(hammers, ["tcp", "unix"]):
        add(totals, kind, h)
        check(h, kind, sv)
        assert h.ok > 0
    assert "graceful shutdown" in sv.text()


@pytest.mark.parametrize("run", range(5))
@pytest.mark.parametrize("sig", ["HUP", "USR2"])
def test_removed_bind_resets_no_accepted_connection(start, tmpdir_short, totals, sig, run):
    """A HUP (or a USR2 upgrade) whose configuration drops a TCP and a unix address:
    the old generation serves what those queued, later connections are refused."""
    conf = os.path.join(tmpdir_short, "b.conf")
    unix = os.path.join(tmpdir_short, "app.sock")
    port = free_port()
    with open(conf, "w") as f:
        f.write(f"bind = 127.0.0.1:0\nbind = 127.0.0.1:{port}\nbind = unix:{unix}\n")
    args = ["-c", conf, "-w", "2", "--graceful-timeout", "5"]
    sv = start_from(start, tmpdir_short, *args, bind=False)[0] if sig == "USR2" else \
        start(*args, bind=False)
    sv.wait_workers(2)
    hammers = [Hammer(("127.0.0.1", port)), Hammer(unix)]
    for h in hammers:
        h.start()
    wait_for(lambda: all(h.ok >= (20 if SANITIZED else 100) for h in hammers),
             what="load running")
    with open(conf, "w") as f:
        f.write("bind = 127.0.0.1:0\n")
    sv.kill(getattr(signal, "SIG" + sig))
    if sig == "USR2":  # status is asked through the control socket: not across the exec
        sv.wait_log(r"upgraded in place: adopted \d+ workers")
    wait_reloaded(sv, 2, 2)
    # Closed once the last old worker has taken what they queued: refused from then on.
    wait_for(lambda: not os.path.exists(unix), what="the unix socket removed")
    refused = [h.refused for h in hammers]
    wait_for(lambda: all(h.refused > r for h, r in zip(hammers, refused)),
             what="both removed addresses refusing")
    for h in hammers:
        h.stop()
    for h, kind in zip(hammers, ["tcp", "unix"]):
        add(totals, f"{sig} removing a {kind} bind", h)
        check(h, f"{sig} {kind}", sv)
    assert sv.get("/")[0] == 200

