"""`sigvisor status` and the control socket."""
import json
import os
import re
import signal
import socket
import stat
import subprocess
import threading
import time

from conftest import DEADLINE, SIGVISOR, children, free_port, run_sigvisor, wait_for


def test_status_text_and_json(start):
    sv = start("-w", "2")
    ws = sv.wait_workers(2)
    out = subprocess.run([SIGVISOR, "status", "--control", sv.control], capture_output=True,
                         text=True, check=True).stdout
    assert "workers: 2 wanted, 2 ready, generation 1" in out
    for w in ws:
        assert str(w["pid"]) in out
    js = json.loads(subprocess.run([SIGVISOR, "status", "--control", sv.control, "--json"],
                                   capture_output=True, text=True, check=True).stdout)
    assert js["pid"] == sv.pid and js["ready"] is True and js["loop"] == (os.environ.get("SIGVISOR_TEST_LOOP") or "epoll")
    assert js["listeners"] == [f"127.0.0.1:{sv.port}"]


def test_a_workers_row_shows_its_status_escaped_in_json_and_as_sent_in_text(start):
    """The worker table's rows are formatted by hand (status.c): a STATUS= with a quote,
    a backslash, a UTF-8 character and a byte that is no UTF-8 is a JSON string with
    the escapes and U+FFFD, and the text row has the columns printf's widths gave
    (id 4, pid 8, generation 4, state 9, uptime 8) and the bytes as sent."""
    sent = r'say "hi" \\ caf\303\251 \377'
    script = (f"systemd-notify --ready --status=\"$(printf '{sent}')\" || exit 1; "
              "exec sleep 600")
    sv = start("-w", "2", "--ready-mode", "notify", "--notify-access", "all",
               "--ready-timeout", "20", command=["sh", "-c", script])
    sv.wait_workers(2)
    wait_for(lambda: all(w["status"] for w in sv.workers()), what="both statuses shown")
    ws = sv.workers()
    assert [w["status"] for w in ws] == ['say "hi" \\ caf\u00e9 \ufffd'] * 2
    raw = subprocess.run([SIGVISOR, "status", "--control", sv.control],
                         capture_output=True, check=True).stdout
    for w in ws:
        row = re.compile(rb"^  %-4d %-8d %-4d %-9s \d+\.\ds +%s$" % (
            w["id"], w["pid"], w["generation"], w["state"].encode(),
            re.escape(b'say "hi" \\ caf\xc3\xa9 \xff')), re.M)
        assert row.search(raw), raw


def test_each_answer_is_whole_and_only_itself_on_the_kept_buffer(start):
    """Answers are rendered into a buffer kept from one request to the next: a text
    status after a longer JSON one is only the text, a JSON one asked while another
    connection still holds its answer unread is whole, and both parse."""
    sv = start("-w", "3")
    sv.wait_workers(3)
    for _ in range(3):
        held = connect(sv.control)
        held.sendall(b"status json\n")
        js = json.loads(subprocess.run([SIGVISOR, "status", "--json", "--control", sv.control],
                                       capture_output=True, text=True, check=True).stdout)
        assert len(js["workers"]) == 3
        text = subprocess.run([SIGVISOR, "status", "--control", sv.control],
                              capture_output=True, text=True, check=True).stdout
        assert "workers: 3 wanted, 3 ready" in text and "{" not in text
        assert json.loads(b"".join(iter(lambda: held.recv(65536), b"")))["pid"] == sv.pid
        held.close()


def test_control_socket_is_private(start):
    sv = start("-w", "1")
    assert stat.S_IMODE(os.stat(sv.control).st_mode) == 0o600
    sv.kill(15)
    sv.wait_exit()
    assert not os.path.exists(sv.control)


def test_status_finds_the_socket_in_runtime_directory(start, tmpdir_short):
    rd = os.path.join(tmpdir_short, "rt")
    os.mkdir(rd, 0o700)
    from conftest import Sigvisor
    sv = Sigvisor.__new__(Sigvisor)
    # start without --control: the default path is $RUNTIME_DIRECTORY/PID.sock
    p = subprocess.Popen([SIGVISOR, "-b", "127.0.0.1:0", "-w", "1", "--bpf", "off"],
                         env=dict(os.environ, RUNTIME_DIRECTORY=rd),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sock = os.path.join(rd, f"{p.pid}.sock")
        wait_for(lambda: os.path.exists(sock), what="default control socket")
        out = subprocess.run([SIGVISOR, "status", "--json"], capture_output=True, text=True,
                             env=dict(os.environ, RUNTIME_DIRECTORY=rd))
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["pid"] == p.pid
    finally:
        p.terminate()
        assert p.wait(10) == 0
    assert sv is not None


def test_status_without_a_server_says_so(tmpdir_short):
    r = subprocess.run([SIGVISOR, "status", "--control", os.path.join(tmpdir_short, "x.sock")],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "cannot connect" in r.stderr


def status_cli(*args, env=None):
    return subprocess.run([SIGVISOR, "status", *args], capture_output=True, text=True,
                          env=env, timeout=DEADLINE)


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(DEADLINE)
    s.connect(path)
    return s


def timer_armed(pid):
    """Whether the arbiter's deadline timerfd is armed (/proc/PID/fdinfo says)."""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:[timerfd]":
                continue
            info = open(f"/proc/{pid}/fdinfo/{fd}").read()
        except FileNotFoundError:
            continue
        return re.search(r"it_value: \((\d+), (\d+)\)", info).groups() != ("0", "0")
    raise AssertionError(f"pid {pid} has no timerfd")


def refused(path):
    try:
        connect(path).close()
    except ConnectionRefusedError:
        return True
    return False


def stale_socket(path):
    """A socket file nobody listens on, as an arbiter killed with SIGKILL leaves."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()


def test_idle_connections_never_lock_status_out(start):
    """20 connections that never send a request: each one past 16 pushes the oldest out,
    and `sigvisor status` is answered."""
    sv = start("-w", "1")
    sv.wait_workers(1)
    idle = [connect(sv.control) for _ in range(20)]
    try:
        r = status_cli("--control", sv.control)
        assert r.returncode == 0, r.stderr
        assert "workers: 1 wanted, 1 ready" in r.stdout
        # The oldest idle ones made room: an end of file, not a reset.
        for s in idle[:4]:
            assert s.recv(1) == b""
        sv.wait_log(r"control socket: 16 connections open, closed the oldest idle one for "
                    r"a new client", count=4)
        # The newest still work.
        idle[-1].sendall(b"status json\n")
        assert json.loads(b"".join(iter(lambda: idle[-1].recv(65536), b"")))["pid"] == sv.pid
    finally:
        for s in idle:
            s.close()


def test_idle_connection_times_out_on_the_deadline_timer(start):
    """A connection that sends nothing is closed after 5 s by the arbiter's deadline
    timer, which is armed only while a control connection is open."""
    sv = start("-w", "1", "--timeout", "0")
    sv.wait_workers(1)
    wait_for(lambda: not timer_armed(sv.pid), what="no deadline armed")
    t0 = time.monotonic()
    s = connect(sv.control)
    try:
        wait_for(lambda: timer_armed(sv.pid), what="the connection's deadline armed")
        assert s.recv(1) == b""  # the arbiter closed it (DEADLINE is 10 s)
        assert time.monotonic() - t0 >= 4.9
    finally:
        s.close()
    sv.wait_log(r"control socket: closed a connection idle for 5 s \(no request came\)")
    wait_for(lambda: not timer_armed(sv.pid), what="the timer disarmed")
    assert sv.status()["pid"] == sv.pid
    wait_for(lambda: not timer_armed(sv.pid), what="the timer disarmed after a request")


def test_status_says_why_when_the_connection_is_reset_or_dropped(tmpdir_short):
    path = os.path.join(tmpdir_short, "fake.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen()

    def serve(read_request):
        c, _ = srv.accept()
        with c:
            c.settimeout(DEADLINE)
            if read_request:
                c.recv(64)
            else:
                c.recv(1, socket.MSG_PEEK)  # closing with unread data resets

    for read_request, why in ((False, "Connection reset by peer"),
                              (True, "the arbiter closed the connection without answering")):
        t = threading.Thread(target=serve, args=(read_request,))
        t.start()
        r = status_cli("--control", path)
        t.join(DEADLINE)
        assert r.returncode == 1
        assert f"sigvisor status: {path}: " in r.stderr and why in r.stderr, r.stderr
    srv.close()  # the file stays: now a stale socket
    r = status_cli("--control", path)
    assert r.returncode == 1
    assert f"cannot connect to {path}: Connection refused (a stale socket" in r.stderr, r.stderr


def test_status_of_a_stopped_arbiter_gives_up_after_its_timeout(start):
    """An arbiter that is stopped (SIGSTOP, a debugger) or hung must not hang the probe
    that asks: `sigvisor status --timeout` bounds the wait (10 s by default)."""
    sv = start("-w", "1")
    sv.wait_workers(1)
    os.kill(sv.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = status_cli("--control", sv.control, "--timeout", "0.5")
        took = time.monotonic() - t0
    finally:
        os.kill(sv.pid, signal.SIGCONT)
    assert r.returncode == 1, r.stderr
    assert "no answer within 0.5 s (is the arbiter stopped or hung?" in r.stderr, r.stderr
    assert took < 5, took
    # continued, it answers again (and the abandoned connection did not hurt it)
    r = status_cli("--control", sv.control, "--timeout", "5")
    assert r.returncode == 0 and "running" in r.stdout, r.stderr
    assert status_cli("--control", sv.control, "--timeout", "soon").returncode == 2


def test_a_stale_control_socket_is_replaced_at_start(start, tmpdir_short):
    stale_socket(os.path.join(tmpdir_short, "control.sock"))  # the path start() passes
    sv = start("-w", "1")
    sv.wait_log(r"removed the stale control socket %s: nothing listened on it" %
                re.escape(sv.control))
    assert sv.status()["pid"] == sv.pid


def test_the_control_socket_appears_only_once_it_answers(tmpdir_short):
    """The control socket is bound under a temporary name beside its path and linked
    there once it listens: whoever waits for the file and connects at once is answered,
    never refused (a refusal reads as a stale socket, to `sigvisor status` and to another
    arbiter starting). strace holds the arbiter 0.5 s in each listen(): bound at its path,
    the socket was there all that time, refusing."""
    ctl = os.path.join(tmpdir_short, "control.sock")
    argv = ["strace", "-qq", "-o", "/dev/null", "-e", "trace=listen",
            "-e", "inject=listen:delay_enter=500000",
            SIGVISOR, "-b", f"127.0.0.1:{free_port()}", "--bpf", "off", "-w", "1",
            "--control", ctl]
    if os.environ.get("SIGVISOR_TEST_LOOP"):
        argv += ["--loop", os.environ["SIGVISOR_TEST_LOOP"]]
    # LeakSanitizer cannot run under ptrace: at exit it would fail the run.
    env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + DEADLINE
        while not os.path.exists(ctl):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no control socket"
            time.sleep(0.001)
        s = connect(ctl)  # ConnectionRefusedError when the file came before listen()
        s.sendall(b"status json\n")
        js = json.loads(b"".join(iter(lambda: s.recv(65536), b"")))
        s.close()
        assert os.listdir(tmpdir_short) == ["control.sock"]  # no temporary name left
        assert children(proc.pid) == [js["pid"]]  # the arbiter, strace's child
        os.kill(js["pid"], signal.SIGTERM)
        assert proc.wait(DEADLINE) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            for pid in children(proc.pid):  # strace killed would leave it running
                os.kill(pid, signal.SIGKILL)
            proc.kill()
            proc.wait(DEADLINE)


def test_a_live_or_foreign_file_at_the_control_path_is_left_alone(tmpdir_short):
    path = os.path.join(tmpdir_short, "live.sock")
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(path)
    live.listen()
    try:
        r = run_sigvisor("-b", "127.0.0.1:0", "--bpf", "off", "--control", path)
        assert r.returncode == 1
        assert f"control socket {path}: something answers there (another sigvisor?)" in r.stderr
        connect(path).close()  # still ours
    finally:
        live.close()
    path = os.path.join(tmpdir_short, "file")
    open(path, "w").close()
    r = run_sigvisor("-b", "127.0.0.1:0", "--bpf", "off", "--control", path)
    assert r.returncode == 1
    assert f"control socket {path}: the file exists and is not a socket" in r.stderr
    assert os.path.isfile(path)


def test_socket_of_a_killed_pid1_arbiter_is_ignored_and_replaced(tmpdir_short):
    """A PID-1 arbiter killed in its own PID namespace leaves RUNTIME_DIRECTORY/1.sock:
    pid 1 is alive here, so only a connection shows it is stale. status skips it, and
    the next PID-1 arbiter removes it and binds its own."""
    rd = os.path.join(tmpdir_short, "rt")
    os.mkdir(rd, 0o700)
    sock = os.path.join(rd, "1.sock")
    env = dict(os.environ, RUNTIME_DIRECTORY=rd)
    env.pop("SIGVISOR_ARGS", None)
    argv = ["unshare", "--pid", "--fork", "--mount-proc", SIGVISOR, "-b", "127.0.0.1:0",
            "-w", "1", "--bpf", "off"]
    if os.environ.get("SIGVISOR_TEST_LOOP"):
        argv += ["--loop", os.environ["SIGVISOR_TEST_LOOP"]]
    log_path = os.path.join(tmpdir_short, "second.log")
    procs = []

    def running():
        r = status_cli("--json", env=env)
        return r.returncode == 0 and json.loads(r.stdout)["pid"] == 1

    try:
        first = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(first)
        wait_for(running, what="the first PID-1 arbiter answering")
        os.kill(wait_for(lambda: children(first.pid) and children(first.pid)[0],
                         what="PID 1"), signal.SIGKILL)
        first.wait(DEADLINE)
        assert os.path.exists(sock)  # left behind
        # io_uring's teardown outlives the process a little, and holds the socket open
        wait_for(lambda: refused(sock), what="nothing listening on the socket")
        r = status_cli(env=env)
        assert r.returncode == 1 and "no running sigvisor found" in r.stderr, r.stderr

        with open(log_path, "w") as log:
            second = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=log)
        procs.append(second)
        wait_for(running, what="the second PID-1 arbiter answering")
        assert "removed the stale control socket %s" % sock in open(log_path).read()
        os.kill(children(second.pid)[0], signal.SIGTERM)
        assert second.wait(DEADLINE) == 0
        assert not os.path.exists(sock)
    finally:
        for p in procs:
            if p.poll() is None:
                for k in children(p.pid):
                    os.kill(k, signal.SIGKILL)
                p.kill()
                p.wait(DEADLINE)


ROOT_FINDS_ANY = r'''
exec 8>>"$LOG" 9<"$SV"
# /run as on a real system (root's, 0755): a tmpfs is 1777 by default, and nobody's
# arbiter would then make /run/sigvisor its own instead of /tmp/sigvisor-65534.
mount -t tmpfs tmpfs /tmp && mount -t tmpfs -o mode=0755 tmpfs /run || exit 90
sv=/proc/self/fd/9
# A decoy: an arbiter of root's answering in a directory whose name claims uid 4242.
mkdir -m 0700 /tmp/sigvisor-4242
$sv -b 127.0.0.1:0 -w 1 --bpf off $LOOP --control /tmp/sigvisor-4242/77.sock >&8 2>&8 &
decoy=$!
setpriv --reuid 65534 --regid 65534 --clear-groups \
    $sv -b 127.0.0.1:0 -w 1 --bpf off $LOOP >&8 2>&8 &
pid=$!
n=0
until [ -S /tmp/sigvisor-65534/$pid.sock ] && [ -S /tmp/sigvisor-4242/77.sock ]; do
    n=$((n + 1)); [ $n -lt 1000 ] || { kill $pid $decoy; exit 91; }; sleep 0.01
done
# A stale socket in a directory of root's own is skipped too.
mkdir -m 0700 /tmp/sigvisor-0
python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind("/tmp/sigvisor-0/5.sock")'
$sv status --json > /tmp/out; rc=$?
kill -TERM $pid $decoy; wait $pid; a=$?; wait $decoy; b=$?
echo "$rc $a $b $pid"; cat /tmp/out
'''


def test_root_status_finds_an_arbiter_of_any_user(tmpdir_short):
    """root's `sigvisor status` looks in every /tmp/sigvisor-UID that uid owns, not only
    its own; a stale socket, or a directory whose owner is not its uid, is skipped. In a
    mount namespace with /tmp and /run of its own, so no other arbiter counts."""
    env = {k: v for k, v in os.environ.items() if k not in ("RUNTIME_DIRECTORY",
                                                            "SIGVISOR_ARGS")}
    loop = os.environ.get("SIGVISOR_TEST_LOOP")
    env.update(SV=SIGVISOR, LOG=os.path.join(tmpdir_short, "log"),
               LOOP=f"--loop {loop}" if loop else "")
    r = subprocess.run(["unshare", "--mount", "sh", "-c", ROOT_FINDS_ANY], env=env,
                       capture_output=True, text=True, timeout=DEADLINE,
                       stdin=subprocess.DEVNULL)
    log = open(env["LOG"]).read()
    assert r.returncode == 0, (r, log)
    first, out = r.stdout.split("\n", 1)
    rc, a, b, pid = first.split()
    assert (rc, a, b) == ("0", "0", "0"), (r, log)
    assert json.loads(out)["pid"] == int(pid)
