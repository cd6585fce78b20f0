#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""scripts/bench/scale.py - the measuring half of scale.sh (which sets up, prints
the table and draws the plot): what a pool of N workers costs its arbiter, for
sigvisor (--bpf off and auto), gunicorn (sync) and nginx, one server at a time.

Every server is judged the same way, from /proc: "ready" means exactly N children
of the arbiter (master), each blocked in one of the server's waiting syscalls (as
probe.c does); "gone" means reaped (no /proc entry, or no longer the arbiter's
child). CPU time is the arbiter's own (all its threads, /proc/PID/task/*/schedstat,
in ns), not its workers'. Writes "SERVER N METRIC VALUE" lines to stdout.

Usage: scale.py OUTDIR "SERVER..." N [N...]   (SERVER: sv_off sv_auto gu ngx floor; at
       each N the servers take turns, run by run, in a rotating order)
       scale.py --report SAMPLES DATADIR  (the table, the targets, the plot's data)
Environment: see scale.sh."""
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time

SIGVISOR = os.environ.get("SIGVISOR", "sigvisor")
GUNICORN = os.environ.get("GUNICORN", "/usr/bin/gunicorn")
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = os.environ.get("PROBE", "probe")
RUNS = int(os.environ.get("SCALE_RUNS", "3"))
TTINS = int(os.environ.get("SCALE_TTINS", "5"))
IDLE_S = float(os.environ.get("SCALE_IDLE_SECONDS", "60"))
STATUS_RUNS = int(os.environ.get("SCALE_STATUS_RUNS", "10"))
# A server that takes longer than this for a start or a HUP at some N is not run at
# larger N (its cells say why).
BUDGET_S = float(os.environ.get("SCALE_BUDGET_SECONDS", "150"))
TIMEOUT_S = float(os.environ.get("SCALE_TIMEOUT_SECONDS", "300"))
# The incumbents' runs at each N: one by default (gunicorn takes about a minute to
# start 1,024 workers here).
INC_RUNS = int(os.environ.get("SCALE_INCUMBENT_RUNS", "1"))
INC_MAX = int(os.environ.get("SCALE_INCUMBENT_MAX", "1024"))
SV_MAX = 4096  # SETTINGS_MAX_WORKERS

ARCH = platform.machine()
NR = {
    "x86_64": {"epoll_wait": 232, "epoll_pwait": 281, "epoll_pwait2": 441, "select": 23,
               "pselect6": 270, "poll": 7, "ppoll": 271, "accept": 43, "accept4": 288},
    "aarch64": {"epoll_pwait": 22, "epoll_pwait2": 441, "pselect6": 72, "ppoll": 73,
                "accept": 202, "accept4": 242},
}[ARCH]


def nrs(*names):
    return {str(NR[n]) for n in names if n in NR}


SV_READY = nrs("epoll_wait", "epoll_pwait", "epoll_pwait2")
GU_READY = nrs("select", "pselect6", "poll", "ppoll", "epoll_wait", "epoll_pwait", "accept",
               "accept4")
NGX_READY = nrs("epoll_wait", "epoll_pwait", "epoll_pwait2")


def out(server, n, metric, value):
    print(f"{server} {n} {metric} {value}", flush=True)


def note(msg):
    print(f"bench: scale: {msg}", file=sys.stderr, flush=True)


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def n_children(pid):
    """How many children, without making numbers of them: a poll's cost at 4,096."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            return f.read().count(b" ")
    except OSError:
        return 0


def pause(t0):
    """The wait between two polls: 5 ms, growing to 0.5 % of the time waited so far.
    A poll reads N pids, and polling a 4,096-worker start every 5 ms took 15 % of this
    2-CPU machine from the server measured (perf); this way the error stays under
    0.5 % of what is measured."""
    time.sleep(max(0.005, (time.monotonic() - t0) / 200))


def cpu_ns(pid):
    total = 0
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass
    except OSError:
        pass
    return total


def waiting(pid, ready):
    try:
        with open(f"/proc/{pid}/syscall") as f:
            return f.read().split(" ", 1)[0] in ready
    except OSError:
        return False


def gone(pid, parent):
    """Reaped: no /proc entry, or no longer parent's child (a reused pid)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read().rsplit(")", 1)[1].split()
        return int(st[1]) != parent
    except OSError:
        return True


class Pool:
    """Waits on a pool through /proc, remembering the workers already seen waiting
    (a worker once ready stays so here): a poll costs a read of the children and a
    look at the ones not yet seen."""

    def __init__(self, pid, ready):
        self.pid, self.ready, self.seen = pid, ready, set()

    def wait_ready(self, n, deadline, exclude=frozenset(), alive=None, t0=None):
        t0 = time.monotonic() if t0 is None else t0
        while time.monotonic() < deadline:
            if alive and alive.poll() is not None:
                return None
            if not exclude and n_children(self.pid) != n:
                pause(t0)
                continue
            kids = children(self.pid)
            fresh = [k for k in kids if k not in exclude]
            if len(fresh) == n and len(kids) == n:
                pending = [k for k in fresh if k not in self.seen]
                self.seen.update(k for k in pending if waiting(k, self.ready))
                if all(k in self.seen for k in fresh):
                    return time.monotonic()
            pause(t0)
        return None


def median(v):
    v = sorted(v)
    if not v:
        return None
    m = len(v) // 2
    return v[m] if len(v) % 2 else (v[m - 1] + v[m]) / 2


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def control(path, line, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(line)
        data = b""
        while True:
            c = s.recv(1 << 20)
            if not c:
                return data
            data += c
    finally:
        s.close()


def http_get(port, path, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while True:
            c = s.recv(65536)
            if not c:
                return data
            data += c
    finally:
        s.close()


class Server:
    def __init__(self, kind, n, tmp):
        self.kind, self.n, self.tmp = kind, n, tmp
        self.port = free_port()
        self.ctl = os.path.join(tmp, f"{kind}-{n}.sock")
        self.mport = None
        self.log = open(os.path.join(tmp, f"{kind}-{n}.log"), "ab")
        if kind.startswith("sv"):
            self.mport = free_port()
            argv = [SIGVISOR, "-b", f"127.0.0.1:{self.port}", "-w", str(n), "--control", self.ctl,
                    "--metrics", f"127.0.0.1:{self.mport}", "--bpf", kind[3:],
                    "--ready-timeout", str(int(TIMEOUT_S)), "--graceful-timeout", "30"]
            self.ready = SV_READY
            self.ready_names = "epoll_wait,epoll_pwait,epoll_pwait2"
        elif kind == "floor":
            # What this machine's fork and exec alone cost: N do-nothing workers (a C
            # program exec'd, blocked in epoll_wait on the socket), HUP one for one.
            argv = [PROBE, "exec-responder", "--port", str(self.port), "--workers", str(n)]
            self.ready = SV_READY
            self.ready_names = "epoll_wait,epoll_pwait,epoll_pwait2"
        elif kind == "gu":
            argv = [GUNICORN, "--chdir", HERE, "app:app", "-w", str(n), "-b",
                    f"127.0.0.1:{self.port}", "--graceful-timeout", "30", "--timeout",
                    str(int(TIMEOUT_S))]
            self.ready = GU_READY
            self.ready_names = "select,pselect6,poll,ppoll,epoll_wait,epoll_pwait,accept,accept4"
        else:
            conf = os.path.join(tmp, f"nginx-{n}.conf")
            with open(conf, "w") as f:
                f.write(f"""worker_processes {n};
pid {tmp}/nginx-{n}.pid;
error_log {tmp}/nginx-{n}.err warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/ngx-body; proxy_temp_path {tmp}/ngx-proxy;
    fastcgi_temp_path {tmp}/ngx-fcgi; uwsgi_temp_path {tmp}/ngx-uwsgi;
    scgi_temp_path {tmp}/ngx-scgi;
    server {{ listen 127.0.0.1:{self.port}; return 200 "nginx worker pid=$pid\\n"; }}
}}
""")
            argv = [NGINX, "-p", tmp, "-c", conf, "-g", "daemon off;"]
            self.ready = NGX_READY
            self.ready_names = "epoll_wait,epoll_pwait,epoll_pwait2"
        env = dict(os.environ)
        env.pop("SIGVISOR_ARGS", None)
        env.pop("GUNICORN_CMD_ARGS", None)
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log, env=env,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.proc.pid
        self.pool = Pool(self.pid, self.ready)

    def stop(self):
        if self.proc.poll() is None:
            kids = children(self.pid)
            self.proc.send_signal(signal.SIGTERM if self.kind != "ngx" else signal.SIGQUIT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            end = time.monotonic() + 10
            for k in kids:
                while not gone(k, self.pid) and time.monotonic() < end:
                    time.sleep(0.01)
                if not gone(k, self.pid) and not gone(k, 1):
                    try:
                        os.kill(k, signal.SIGKILL)
                    except OSError:
                        pass
        self.log.close()


def during_start(s, name, n):
    """status, /healthz and a signal (WINCH, seen counted in status) answered while
    the generation starts: each asked every 100 ms until all are ready."""
    st_t, hz_t, sig_t = [], [], []
    pool = Pool(s.pid, s.ready)
    deadline = time.monotonic() + TIMEOUT_S
    while not os.path.exists(s.ctl) and time.monotonic() < deadline:
        time.sleep(0.005)
    done = False
    while not done and time.monotonic() < deadline:
        a = time.monotonic()
        try:
            control(s.ctl, b"status\n")
            st_t.append(time.monotonic() - a)
        except OSError:
            pass
        a = time.monotonic()
        try:
            if b" 200 " in http_get(s.mport, "/healthz").split(b"\r\n", 1)[0]:
                hz_t.append(time.monotonic() - a)
        except OSError:
            pass
        try:
            before = json.loads(control(s.ctl, b"status json\n"))["signals"]["WINCH"]["received"]
            a = time.monotonic()
            os.kill(s.pid, signal.SIGWINCH)
            while time.monotonic() - a < 5:
                st = json.loads(control(s.ctl, b"status json\n"))
                if st["signals"]["WINCH"]["received"] > before:
                    sig_t.append(time.monotonic() - a)
                    break
        except (OSError, ValueError, KeyError):
            pass
        done = pool.wait_ready(n, time.monotonic() + 0.1) is not None
    for m, v in (("busy_status", st_t), ("busy_healthz", hz_t), ("busy_signal", sig_t)):
        if v:
            out(name, n, m + "_p50_ms", f"{median(v) * 1000:.2f}")
            out(name, n, m + "_max_ms", f"{max(v) * 1000:.2f}")
            out(name, n, m + "_count", len(v))
    return done


def one_run(kind, n, run, tmp, first):
    """Start -> ready, TTIN, status, idle, HUP; False when a step took over BUDGET_S."""
    s = Server(kind, n, tmp)
    ok = True
    try:
        deadline = time.monotonic() + TIMEOUT_S
        t = s.pool.wait_ready(n, deadline, alive=s.proc, t0=s.t0)
        if t is None:
            note(f"{kind} at {n}: not all {n} workers ready within {TIMEOUT_S:.0f} s")
            out(kind, n, "fail", "start")
            return False
        start_s = t - s.t0
        out(kind, n, "start_s", f"{start_s:.3f}")
        out(kind, n, "start_cpu_ms_per_worker", f"{cpu_ns(s.pid) / 1e6 / n:.4f}")
        if start_s > BUDGET_S:
            ok = False
        time.sleep(1)
        # TTIN -> the new worker visible, then waiting; TTOU back (not nginx: none).
        # probe scale times the new worker by the kernel's fork event (the proc
        # connector): a reading of /proc children grows with N, the event does not.
        if kind not in ("ngx", "floor") and TTINS > 0:
            # At sigvisor's maximum a TTIN is refused: timed from one below it.
            base = n
            if kind.startswith("sv") and n >= SV_MAX:
                base = n - 1
                os.kill(s.pid, signal.SIGTTOU)
                end = time.monotonic() + 30
                while len(children(s.pid)) != base and time.monotonic() < end:
                    time.sleep(0.01)
            r = subprocess.run([PROBE, "scale", "--pid", str(s.pid), "--workers", str(base),
                                "--ready", s.ready_names, "--count", str(TTINS),
                                "--timeout", "30", "--settle", "0.2"],
                               capture_output=True, text=True)
            for line in r.stdout.splitlines():
                f = line.split()
                if len(f) == 2 and f[0] in ("ttin_visible", "ttin_ready", "ttou_reaped"):
                    out(kind, n, f[0] + "_ms", f"{float(f[1]) / 1000:.3f}")
            if r.returncode:
                note(f"{kind} at {n}: probe scale: {r.stderr.strip()[-300:]}")
            if base != n:
                os.kill(s.pid, signal.SIGTTIN)
                s.pool.wait_ready(n, time.monotonic() + 60)
        if kind.startswith("sv"):
            # Timed by probe runs (C: vfork, exec, wait), as a shell runs it: Python's own
            # fork and pipes added a third of a millisecond.
            c0 = cpu_ns(s.pid)
            r = subprocess.run([PROBE, "runs", "--count", str(STATUS_RUNS), "--", SIGVISOR,
                                "status", "--json", "--control", s.ctl],
                               capture_output=True, text=True)
            ts = [float(x.split()[1]) / 1e6 for x in r.stdout.splitlines()
                  if x.startswith("run_us ")]
            if r.returncode or len(ts) != STATUS_RUNS:
                note(f"{kind} at {n}: status --json failed: {r.stderr.strip()[-300:]}")
                out(kind, n, "fail", "status")
            else:
                out(kind, n, "status_json_ms", f"{median(ts) * 1000:.2f}")
            out(kind, n, "status_json_cpu_ms", f"{(cpu_ns(s.pid) - c0) / 1e6 / STATUS_RUNS:.3f}")
        if first and kind != "floor":
            time.sleep(1)
            c0 = cpu_ns(s.pid)
            time.sleep(IDLE_S)
            out(kind, n, "idle_cpu_ms_per_min", f"{(cpu_ns(s.pid) - c0) / 1e6 * 60 / IDLE_S:.2f}")
        # HUP -> the old generation gone and n new workers waiting
        old = set(children(s.pid))
        c0 = cpu_ns(s.pid)
        a = time.monotonic()
        os.kill(s.pid, signal.SIGHUP)
        end = a + TIMEOUT_S
        t_gone = None
        left = sorted(old)  # the old workers not yet seen gone: each looked at till then
        while time.monotonic() < end:
            while left and gone(left[-1], s.pid):
                left.pop()
            if not left:
                t_gone = time.monotonic()
                break
            pause(a)
        t_ready = s.pool.wait_ready(n, end, exclude=old, t0=a) if t_gone else None
        if t_gone is None or t_ready is None:
            left = len(children(s.pid))
            note(f"{kind} at {n}: HUP: {'old generation still there' if t_gone is None else 'no ' + str(n) + ' new workers waiting'}"
                 f" after {TIMEOUT_S:.0f} s ({left} children)")
            out(kind, n, "fail", "hup")
            out(kind, n, "hup_children_left", left)
            return False
        hup_s = max(t_gone, t_ready) - a
        out(kind, n, "hup_s", f"{hup_s:.3f}")
        out(kind, n, "hup_cpu_ms_per_worker", f"{(cpu_ns(s.pid) - c0) / 1e6 / n:.4f}")
        if hup_s > BUDGET_S:
            ok = False
        return ok
    finally:
        s.stop()


def main():
    # TERM (timeout(1), scale.sh's trap) as an exception: the servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp, kinds = sys.argv[1], sys.argv[2].split()
    ns = [int(x) for x in sys.argv[3:]]
    top = max(ns)
    stopped = {}  # server -> why it is not run at the larger N
    for n in ns:
        todo = []
        for kind in kinds:
            if kind in stopped:
                out(kind, n, "skipped", stopped[kind])
            elif kind in ("gu", "ngx") and n > INC_MAX:
                out(kind, n, "skipped", f"not run (> {INC_MAX} workers: minutes per run at {INC_MAX})")
            else:
                todo.append(kind)
        runs = {k: RUNS if k.startswith("sv") or k == "floor" else INC_RUNS for k in todo}
        note(f"{n} workers: {', '.join(f'{k} x{runs[k]}' for k in todo)};"
             f" load average {open('/proc/loadavg').read().split()[0]}")
        over = set()
        for r in range(max(runs.values(), default=0)):
            # The servers take turns, each run in another order: the one measured last
            # in a run is measured on a machine the others have warmed (and loaded), and
            # that is not to be always the same one.
            order = todo[r % len(todo):] + todo[:r % len(todo)]
            for kind in order:
                if r < runs[kind] and kind not in over and not one_run(kind, n, r, tmp, r == 0):
                    over.add(kind)
        for kind in todo:
            if kind.startswith("sv") and n == top:
                # signals, status and /healthz while a generation of n starts
                s = Server(kind, n, tmp)
                try:
                    during_start(s, kind, n)
                finally:
                    s.stop()
        for kind in over:
            stopped[kind] = f"not run (> {BUDGET_S:.0f} s at {n})"


METRICS = [  # metric, label, decimals, target text (sigvisor, at the largest N) or ""
    ("start_s", "start → all ready, s", 2),
    ("start_cpu_ms_per_worker", "arbiter CPU per worker, start, ms", 3),
    ("hup_s", "HUP → old generation gone, new all ready, s", 2),
    ("hup_cpu_ms_per_worker", "arbiter CPU per worker, HUP, ms", 3),
    ("ttin_visible_ms", "TTIN → new worker visible, ms (at 4096: from 4095)", 3),
    ("ttin_ready_ms", "TTIN → new worker ready, ms", 2),
    ("ttou_reaped_ms", "TTOU → worker reaped, ms", 2),
    ("status_json_ms", "`sigvisor status --json`, ms (wall, the command)", 2),
    ("status_json_cpu_ms", "  arbiter CPU per `status --json`, ms", 2),
    ("idle_cpu_ms_per_min", "arbiter CPU idle, ms per minute", 2),
    ("busy_status_max_ms", "while N start: `status` answered, max ms", 1),
    ("busy_healthz_max_ms", "while N start: /healthz answered, max ms", 1),
    ("busy_signal_max_ms", "while N start: WINCH → counted in status, max ms", 1),
]
TITLES = {"sv_off": "sigvisor --bpf off", "sv_auto": "sigvisor --bpf auto",
          "gu": "gunicorn 20.1 sync", "ngx": "nginx",
          "floor": "floor: do-nothing exec'd workers"}


def report(samples, datadir):
    vals, skipped, fails = {}, {}, {}
    servers, ns = [], []
    for line in open(samples):
        f = line.split(None, 3)
        if len(f) < 4:
            continue
        srv, n, m, v = f[0], int(f[1]), f[2], f[3].strip()
        if srv not in servers:
            servers.append(srv)
        if n not in ns:
            ns.append(n)
        if m == "skipped":
            skipped[(srv, n)] = v
        elif m == "fail":
            fails.setdefault((srv, n), []).append(v)
        else:
            vals.setdefault((srv, n, m), []).append(float(v))
    ns.sort()

    def cell(srv, n, m, d):
        v = vals.get((srv, n, m))
        if v:
            c = f"{median(v):.{d}f}"
            if len(v) > 1:
                c += f" ({min(v):.{d}f}–{max(v):.{d}f}, {len(v)})"
            return c
        if (srv, n) in skipped:
            return skipped[(srv, n)]
        if (srv, n) in fails:
            return "FAILED (" + ", ".join(fails[(srv, n)]) + ")"
        return "—"
    head = ["metric", "N"] + [TITLES.get(s, s) for s in servers]
    rows = []
    for m, label, d in METRICS:
        for n in ns:
            if not any((s, n, m) in vals for s in servers):
                continue
            rows.append([label, str(n)] + [cell(s, n, m, d) for s in servers])
    w = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(c + " " * (w[i] - len(c)) for i, c in enumerate(r)) + " |"
    print(line(head))
    print("| " + " | ".join("-" * x for x in w) + " |")
    for r in rows:
        print(line(r))

    def med(srv, n, m):
        v = vals.get((srv, n, m))
        return median(v) if v else None

    # the targets of issue 29, judged on --bpf off and auto
    top = max(ns)
    fl = lambda m: med("floor", top, m)
    for s in (x for x in servers if x.startswith("sv")):
        g = lambda n, m: med(s, n, m)
        checks = [
            ("HUP rollover at %d ≤ 10 s" % top, g(top, "hup_s"), lambda v: v <= 10, "%.2f s"),
            ("start at %d ≤ 5 s" % top, g(top, "start_s"), lambda v: v <= 5, "%.2f s"),
        ]
        for m, what in (("start_cpu_ms_per_worker", "start"), ("hup_cpu_ms_per_worker", "HUP")):
            a, b = g(256, m), g(top, m)
            checks.append((f"arbiter CPU per worker, {what}, at {top} ≤ 1.5× at 256",
                           b / a if a and b else None, lambda v: v <= 1.5, "%.2f×"))
        a, b = g(min(ns), "ttin_visible_ms"), g(top, "ttin_visible_ms")
        checks.append((f"TTIN → visible at {top} ≤ 2× at {min(ns)}", b / a if a and b else None,
                       lambda v: v <= 2, "%.2f×"))
        checks.append((f"status --json at {top} ≤ 5 ms (wall of the command)",
                       g(top, "status_json_ms"), lambda v: v <= 5, "%.2f ms"))
        worst = max((g(n, "idle_cpu_ms_per_min") or 0) for n in ns)
        checks.append(("idle CPU ≤ 2 ms/minute at every N", worst, lambda v: v <= 2, "%.2f ms/min (worst N)"))
        busy = [g(top, m) for m in ("busy_status_max_ms", "busy_healthz_max_ms", "busy_signal_max_ms")]
        checks.append((f"signals, status, /healthz answered ≤ 50 ms while {top} start",
                       max(busy) if all(x is not None for x in busy) else None, lambda v: v <= 50,
                       "%.1f ms (worst max)"))
        print()
        print(f"Targets ({TITLES.get(s, s)}): " + "; ".join(
            f"{what}: {'not measured' if v is None else (fmt % v) + (' met' if ok(v) else ' MISSED')}"
            for what, v, ok, fmt in checks))
        cpu = g(top, "status_json_cpu_ms")
        if cpu is not None:
            print(f"  of the status --json at {top}: {cpu:.2f} ms the arbiter's CPU, the rest"
                  " the client's (its exec, reading the answer)")
        if fl("start_s") and g(top, "start_s"):
            hup = (f", HUP {g(top, 'hup_s') / fl('hup_s'):.2f}× its {fl('hup_s'):.2f} s"
                   if fl("hup_s") and g(top, "hup_s") else "")
            print(f"  against the floor (do-nothing workers exec'd one for one, same run) at {top}:"
                  f" start {g(top, 'start_s') / fl('start_s'):.2f}× its {fl('start_s'):.2f} s{hup}")
    # one data file per metric and server for the plot: N median
    for m, _, _ in METRICS:
        for s in servers:
            pts = [(n, median(vals[(s, n, m)])) for n in ns if vals.get((s, n, m))]
            with open(os.path.join(datadir, f"{m}.{s}.dat"), "w") as f:
                for n, v in pts:
                    f.write(f"{n} {v}\n")


if __name__ == "__main__":
    if sys.argv[1] == "--report":
        report(sys.argv[2], sys.argv[3])
    else:
        main()
