"""What other users and the workers' own children can do to sigvisor (issue 23): sockets
planted where root's `sigvisor status` looks, a flood of refused control clients, and
processes a worker started that outlive it."""
import json
import os
import re
import signal
import subprocess
import time

from conftest import DEADLINE, SIGVISOR, alive, proc_status, wait_for

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

# As nobody, in nobody's own /tmp/sigvisor-65534 (which root's `status` searches): a
# socket that accepts and never answers, one that sends without end, one that accepts
# and closes, one whose listen queue is full, and a symlink to root's real arbiter.
# Prints "ready", then on stdin's end how many bytes the endless one sent.
HOSTILE = r'''
import os, socket, sys, threading
d = "/tmp/sigvisor-65534"
os.mkdir(d, 0o700)
sent = [0]
def serve(name, what):
    s = socket.socket(socket.AF_UNIX)
    s.bind(f"{d}/{name}.sock")
    s.listen(0 if what == "full" else 16)
    if what == "full":
        for _ in range(8):   # fill the queue: connect() to it now says EAGAIN
            c = socket.socket(socket.AF_UNIX); c.setblocking(False)
            try:
                c.connect(f"{d}/{name}.sock")
            except BlockingIOError:
                break
        return s
    def loop():
        held = []
        while True:
            c, _ = s.accept()
            if what == "silent":
                held.append(c)
            elif what == "closer":
                c.close()
            else:
                chunk = b"x" * 65536
                try:
                    while True:
                        sent[0] += c.send(chunk)
                except OSError:
                    c.close()
    threading.Thread(target=loop, daemon=True).start()
    return s
keep = [serve("1", "silent"), serve("2", "endless"), serve("3", "closer"), serve("4", "full")]
os.symlink(sys.argv[1], f"{d}/5.sock")
print("ready", flush=True)
sys.stdin.read()
print(sent[0], flush=True)
'''

# In a mount namespace with /tmp and /run of its own (so no other arbiter on the
# machine counts, and nothing planted is left behind): root's arbiter in /run/sigvisor,
# nobody's sockets, then root's plain `sigvisor status`, then one --control at the
# endless socket. JSON on stdout.
DRIVER = r'''
import json, os, subprocess, sys, time
sv, loop = sys.argv[1], sys.argv[2:]
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/tmp"], check=True)
subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"], check=True)
env = {k: v for k, v in os.environ.items() if k not in ("RUNTIME_DIRECTORY", "SIGVISOR_ARGS")}
log = open("/run/arbiter.log", "w")
arb = subprocess.Popen([sv, "-b", "127.0.0.1:0", "-w", "1", "--bpf", "off"] + loop, env=env,
                       stdout=log, stderr=log, stdin=subprocess.DEVNULL)
out = {"pid": arb.pid}
hostile = None
try:
    real = f"/run/sigvisor/{arb.pid}.sock"
    end = time.monotonic() + 10
    while not os.path.exists(real) and time.monotonic() < end:
        time.sleep(0.01)
    hostile = subprocess.Popen(NOBODY + ["/usr/bin/python3", "-c", HOSTILE, real],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    out["hostile_ready"] = hostile.stdout.readline().strip()

    def status(*args):
        t0 = time.monotonic()
        try:
            r = subprocess.run([sv, "status", "--timeout", "3"] + list(args), env=env,
                               capture_output=True, text=True, timeout=15)
        except subprocess.TimeoutExpired as e:
            return {"rc": "still running after 15 s", "stdout": "", "took": 15,
                    "stderr": (e.stderr or b"")[-1000:].decode(errors="replace")}
        return {"rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr,
                "took": time.monotonic() - t0}
    out["search"] = status("--json")
    out["named"] = status("--json", "--control", "/tmp/sigvisor-65534/2.sock")
    hostile.stdin.close()
    out["endless_sent"] = int(hostile.stdout.readline())
finally:
    if hostile and hostile.poll() is None:
        hostile.kill()
    arb.terminate()
    out["arbiter_exit"] = arb.wait(10)
    out["log"] = open("/run/arbiter.log").read()
print(json.dumps(out))
'''


def test_root_status_skips_planted_sockets_and_answers_within_its_deadline():
    """nobody plants sockets in /tmp/sigvisor-65534, which root's `sigvisor status`
    searches: they are connected to without waiting, skipped with a reason because
    what listens there is not sigvisor, and root's real arbiter answers well within
    the one --timeout. Named with --control, the endless one is read only up to the
    bound."""
    loop = os.environ.get("SIGVISOR_TEST_LOOP")
    driver = (f"NOBODY = {NOBODY!r}\nHOSTILE = {HOSTILE!r}\n" + DRIVER)
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "/usr/bin/python3",
                        "-c", driver, SIGVISOR] + (["--loop", loop] if loop else []),
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["hostile_ready"] == "ready", out
    s = out["search"]
    assert s["rc"] == 0, (s, out["log"])
    assert json.loads(s["stdout"])["pid"] == out["pid"]
    assert s["took"] < 2.0, s  # nothing was waited for but the real arbiter's answer
    d = "/tmp/sigvisor-65534"
    for n in (1, 2, 3):
        assert re.search(rf"sigvisor status: skipped {d}/{n}\.sock: the process listening "
                         rf"there \(pid \d+\) runs /\S*python\S*, not this sigvisor",
                         s["stderr"]), s["stderr"]
    assert (f"sigvisor status: skipped {d}/4.sock: its listen queue is full (a stopped or "
            f"hung process?)") in s["stderr"], s["stderr"]
    assert f"sigvisor status: skipped {d}/5.sock: not a socket" in s["stderr"], s["stderr"]
    assert "several arbiters" not in s["stderr"]
    # Asked by name, the endless one is trusted, but read only up to 4 MiB: what it
    # could send is that plus what the socket buffers hold.
    n = out["named"]
    assert n["rc"] == 1, n
    assert f"sigvisor status: {d}/2.sock: the answer is larger than 4 MiB: not a " \
           f"sigvisor's, giving up" in n["stderr"], n
    assert n["took"] < 3.0, n
    assert out["endless_sent"] <= (4 << 20) + (2 << 20), out["endless_sent"]
    assert out["arbiter_exit"] == 0, out["log"]


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


# The worker: a child that ignores TERM, a grandchild that double-forks away from the
# worker (an orphan the arbiter adopts as subreaper) and ignores TERM too, and a child
# that leaves on TERM, writing a mark. Their pids go to a file; then it waits.
LEAVES = r'''
import os, signal, sys, time
out = sys.argv[1]
# Each child says it is ready only once its SIGTERM disposition is set: a TERM that
# came before would find the default and prove nothing about the arbiter.
ready_r, ready_w = os.pipe()
def child(ignore, mark=None):
    pid = os.fork()
    if pid:
        return pid
    if ignore:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif mark:
        def leave(*_):
            open(mark, "w").close()
            os._exit(0)
        signal.signal(signal.SIGTERM, leave)
    os.write(ready_w, str(os.getpid()).encode() + b"\n")
    while True:
        time.sleep(60)
def ready(pid):
    line = b""
    while not line.endswith(b"\n"):
        line += os.read(ready_r, 1)
    assert int(line) == pid, (line, pid)
stubborn = child(True)
ready(stubborn)
mid = os.fork()
if mid == 0:
    child(True)
    os._exit(0)
os.waitpid(mid, 0)
line = b""
while not line.endswith(b"\n"):
    line += os.read(ready_r, 1)
orphan = int(line)
polite = child(False, out + ".termed")
ready(polite)
with open(out + ".tmp", "w") as f:
    f.write(f"{stubborn} {orphan} {polite}\n")
os.rename(out + ".tmp", out)
while True:
    time.sleep(60)
'''


def test_nothing_a_worker_started_outlives_the_arbiter(start, tmpdir_short):
    """Not PID 1, sigvisor is its workers' children's subreaper: once the workers have
    exited on TERM, what they left gets TERM, and KILL at the graceful deadline; the
    arbiter exits only when none of it runs."""
    pids_file = os.path.join(tmpdir_short, "pids")
    sv = start("-w", "1", "--ready-mode", "start", "--graceful-timeout", "3",
               command=["/usr/bin/python3", "-c", LEAVES, pids_file])
    [w] = sv.wait_workers(1)
    wait_for(lambda: os.path.exists(pids_file), what="the worker's children")
    pids = [int(p) for p in open(pids_file).read().split()]
    stubborn, orphan, polite = pids
    try:
        assert sv.pid != 1
        # The double-forked grandchild came to the arbiter: it is a subreaper.
        wait_for(lambda: proc_status(orphan)["PPid"] == str(sv.pid),
                 what="the orphan adopted by the arbiter")
        assert proc_status(stubborn)["PPid"] == str(w["pid"])
        t0 = time.monotonic()
        sv.kill(signal.SIGTERM)
        assert sv.wait_exit() == 0
        took = time.monotonic() - t0
        for p in pids:
            assert not alive(p), (p, proc_status(p), sv.text()[-2000:])
        assert os.path.exists(pids_file + ".termed")  # TERM came first
        assert 2.9 <= took < 3 + 3, took  # KILL at the graceful deadline
        sv.wait_log(r"\d+ processes the workers started still run after their workers "
                    r"exited: sent SIGTERM, SIGKILL in \d+\.\d s")
        sv.wait_log(r"2 processes the workers started still run at the graceful deadline: "
                    r"sent SIGKILL")
    finally:
        for p in pids:
            if alive(p):
                os.kill(p, signal.SIGKILL)
