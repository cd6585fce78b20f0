"""The Python worker doc/USAGE.md shows, taken from the page as it is: it serves, and
through three HUPs under load (a bounded client of four threads) no request fails."""
import http.client
import os
import re
import signal
import threading
import time

from conftest import free_port, http_get, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
USAGE = os.path.join(HERE, "..", "..", "doc", "USAGE.md")


def sample():
    text = open(USAGE).read()
    m = re.search(r"A complete worker in Python:\n\n```python\n(.*?)```", text, re.S)
    assert m, "doc/USAGE.md has no Python worker sample"
    return m.group(1)


def test_the_documented_python_worker_loses_nothing_through_hups(start, tmpdir_short):
    path = os.path.join(tmpdir_short, "hello.py")
    with open(path, "w") as f:
        f.write(sample())
    port = free_port()
    sv = start("-w", "2", "-b", f"127.0.0.1:{port}", bind=False,
               command=["/usr/bin/python3", path])
    sv.wait_workers(2)
    code, body = http_get(port, "/", timeout=5)[:2]
    assert code == 200 and body.startswith("hello from "), (code, body)

    stop = threading.Event()
    results = {"ok": 0, "failed": []}
    lock = threading.Lock()

    def client():
        while not stop.is_set():
            try:
                c, b = http_get(port, "/", timeout=10)[:2]
                ok = c == 200 and b.startswith("hello from ")
                err = None if ok else f"{c} {b!r}"
            except (OSError, http.client.HTTPException) as e:
                err = repr(e)
            with lock:
                if err:
                    results["failed"].append(err)
                else:
                    results["ok"] += 1
    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in (1, 2, 3):
            sv.kill(signal.SIGHUP)
            wait_for(lambda: (lambda s: s["counters"]["reloads"] >= i and not s["reloading"]
                              and s["generation"] == i + 1)(sv.status()),
                     timeout=60, what=f"reload {i}")
        sv.wait_workers(2)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert results["ok"] > 0
    assert results["failed"] == [], results["failed"][:5]
    assert sv.status()["counters"]["exited_signal"] == 0  # each old worker left cleanly
