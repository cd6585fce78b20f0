"""Fixtures for the integration tests: start the real sigvisor binary, wait for
events with bounded deadlines (never a fixed sleep), and clean up only the
processes a test started."""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

import pytest

SIGVISOR = os.environ.get("SIGVISOR") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "sigvisor")
SIGVISOR = os.path.abspath(SIGVISOR)
DEADLINE = 10.0
# The ASan+UBSan build (make asan-test): LeakSanitizer checks leaks at every exit,
# its quarantine inflates RSS, and valgrind cannot run it.
SANITIZED = os.environ.get("SIGVISOR_SANITIZED") == "1"


def wait_for(pred, timeout=DEADLINE, what="condition", interval=0.01):
    """Poll pred() until it returns a truthy value or the deadline passes."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def proc_status(pid):
    """/proc/PID/status as a dict, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except (FileNotFoundError, ProcessLookupError):
        return None


def proc_environ(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        items = f.read().split(b"\0")
    return dict(i.decode().split("=", 1) for i in items if b"=" in i)


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def wait_idle(pid, quiet=0.2, timeout=DEADLINE):
    """Wait until pid sleeps in its event wait (epoll_wait 232 or io_uring_enter 426)
    and its voluntary context switches stay put for `quiet` seconds: a completion
    still in flight (a status connection's cancel under io_uring) may wake it once."""
    def quiet_now():
        if open(f"/proc/{pid}/syscall").read().split()[0] not in ("232", "426"):
            return None
        before = proc_status(pid)["voluntary_ctxt_switches"]
        time.sleep(quiet)
        return proc_status(pid)["voluntary_ctxt_switches"] == before
    wait_for(quiet_now, timeout, "the arbiter to be idle")


def lowest_free_fd(pid):
    """The fd pid's next open would get. A soft open-files limit at it leaves no fd free,
    one above it one: the fds counted would not say, as the workers' fds are numbered
    from 256 up (doc/RUNBOOK.md, open files) and the low ones have holes."""
    fds = {int(x) for x in os.listdir(f"/proc/{pid}/fd")}
    return next(i for i in range(1 << 20) if i not in fds)


def alive(pid):
    st = proc_status(pid)
    return st is not None and not st["State"].startswith("Z")


def free_port():
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path="/", timeout=10.0, host="127.0.0.1"):
    """One GET on a fresh connection: (status, body)."""
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


class Sigvisor:
    """A running sigvisor started by a test, with its log in a file."""

    def __init__(self, tmpdir, args, env=None, command=None, wrap=None, wait_ready=True,
                 bind=True, output=None):
        self.tmpdir = tmpdir
        self.log_path = os.path.join(tmpdir, "sigvisor.log")
        self.control = os.path.join(tmpdir, "control.sock")
        argv = [SIGVISOR]
        if bind:
            argv += ["-b", "127.0.0.1:0"]
        argv += ["--control", self.control] + list(args)
        # test/run.sh runs the whole suite once more with SIGVISOR_TEST_LOOP=io_uring;
        # a test that names its own --loop keeps it.
        # The probes are tested in test_bpf.py with pins of their own; elsewhere they
        # would only share the default pin directory between concurrent arbiters.
        if not any(str(a).startswith("--bpf") for a in args):
            argv += ["--bpf", "off"]
        test_loop = os.environ.get("SIGVISOR_TEST_LOOP")
        if test_loop and not any(a == "--loop" or str(a).startswith("--loop=") for a in args):
            argv += ["--loop", test_loop]
        if command:
            argv += ["--"] + list(command)
        if wrap:
            argv = list(wrap) + argv
        e = dict(os.environ)
        e.pop("SIGVISOR_ARGS", None)
        if env:
            e.update(env)
        self.log = open(self.log_path, "ab")
        # output: an fd to log to instead of the file (then there is no log to read).
        out = self.log if output is None else output
        self.proc = subprocess.Popen(argv, stdout=out, stderr=out, env=e,
                                     stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        self.port = None
        try:
            if wait_ready and output is None:
                self.wait_serving()
            elif wait_ready:
                wait_for(lambda: os.path.exists(self.control), what="control socket")
        except BaseException:
            # Not handed to the fixture yet: stop it here, or it outlives the test.
            self.cleanup()
            raise

    # -- log -----------------------------------------------------------------
    def text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_log(self, pattern, timeout=DEADLINE, count=1):
        rx = re.compile(pattern)

        def found():
            m = rx.findall(self.text())
            return m if len(m) >= count else None
        return wait_for(found, timeout, f"log line /{pattern}/ x{count}\n--- log:\n" +
                        self.text()[-3000:])

    # -- control -------------------------------------------------------------
    def status(self):
        """status --json through the real control socket protocol."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(self.control)
            s.sendall(b"status json\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        return json.loads(data)

    def workers(self, state=None):
        ws = self.status()["workers"]
        return [w for w in ws if state is None or w["state"] == state]

    def wait_workers(self, n, state="ready", timeout=DEADLINE):
        """Wait until exactly n workers are in state and no other worker exists."""
        def ok():
            try:
                ws = self.status()["workers"]
            except (OSError, ValueError):
                return None
            if len(ws) == n and all(w["state"] == state for w in ws):
                return [ws]  # wrapped: an empty pool is a valid answer
            return None
        return wait_for(ok, timeout, f"{n} workers {state}")[0]

    def wait_serving(self):
        m = self.wait_log(r"listening on http://127\.0\.0\.1:(\d+)")
        self.port = int(m[0])
        wait_for(lambda: os.path.exists(self.control), what="control socket")
        return self

    def get(self, path="/", timeout=10.0):
        return http_get(self.port, path, timeout)

    # -- lifecycle -----------------------------------------------------------
    def kill(self, sig):
        os.kill(self.pid, sig)

    def wait_exit(self, timeout=DEADLINE):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("sigvisor did not exit in time\n--- log:\n" +
                                 self.text()[-3000:])

    def cleanup(self):
        if self.proc.poll() is None:
            kids = children(self.pid)
            self.proc.kill()
            self.proc.wait(10)
            # Workers have PDEATHSIG=TERM; make sure, by pid, that ours are gone.
            for k in kids:
                try:
                    wait_for(lambda: not alive(k), 5, f"worker {k} to exit")
                except AssertionError:
                    os.kill(k, signal.SIGKILL)
        self.log.close()


def build_c_worker(name, *libs):
    """Compile test/integration/workers/NAME.c into a fresh directory anyone may read
    (workers may run under --user): a generator for a module-scoped fixture, which
    yields the program's path and removes it afterwards."""
    d = tempfile.mkdtemp(prefix=f"sv-{name}-", dir="/tmp")
    os.chmod(d, 0o755)
    exe = os.path.join(d, name)
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers", name + ".c")
    r = subprocess.run(["cc", "-O1", "-o", exe, src, *libs], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, f"building {name}.c failed:\n{r.stderr}"
    try:
        yield exe
    finally:
        subprocess.run(["rm", "-rf", d])


@pytest.fixture
def tmpdir_short():
    # Short paths: unix socket names are limited to 108 bytes.
    d = tempfile.mkdtemp(prefix="sv-", dir="/tmp")
    yield d
    subprocess.run(["rm", "-rf", d])


@pytest.fixture
def start(tmpdir_short):
    """start(args..., env=, command=, wrap=) -> Sigvisor; stopped after the test."""
    started = []

    def _start(*args, **kw):
        sv = Sigvisor(tmpdir_short, args, **kw)
        started.append(sv)
        return sv
    yield _start
    for sv in started:
        sv.cleanup()


def run_sigvisor(*args, env=None, timeout=DEADLINE):
    """Run sigvisor to completion (for errors and --check): CompletedProcess."""
    e = dict(os.environ)
    e.pop("SIGVISOR_ARGS", None)
    if env:
        e.update(env)
    return subprocess.run([SIGVISOR] + list(args), capture_output=True, text=True, env=e,
                          timeout=timeout, stdin=subprocess.DEVNULL)
