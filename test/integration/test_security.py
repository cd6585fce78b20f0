"""Who may talk to sigvisor, and what a worker may do."""
import os
import pwd
import signal
import socket
import subprocess

from conftest import proc_status, wait_for


def test_control_socket_checks_the_peer_even_when_the_file_mode_would_allow(start,
                                                                          tmpdir_short):
    sv = start("-w", "1")
    os.chmod(tmpdir_short, 0o755)
    os.chmod(sv.control, 0o666)  # only the SO_PEERCRED check stands in the way now
    code = ("import socket,sys\n"
            "s=socket.socket(socket.AF_UNIX)\n"
            f"s.connect({sv.control!r})\n"
            "try:\n"
            "    s.sendall(b'status json\\n')\n"
            "    sys.stdout.write(repr(s.recv(100)))\n"
            "except (BrokenPipeError, ConnectionResetError):\n"
            "    sys.stdout.write('reset')\n")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "/usr/bin/python3", "-c", code], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    # closed without an answer, or with only why (the refusal, no status)
    assert r.stdout in ("b''", "reset", repr(b"error: refused: not allowed: uid 65534 is "
                                            b"neither root nor the arbiter's uid (0)\n"))
    sv.wait_log(r"control socket: refused a client with uid 65534")
    assert sv.status()["counters"]["control_rejected"] == 1


def test_workers_drop_privileges_for_good(start, tmpdir_short):
    os.chmod(tmpdir_short, 0o777)
    out = os.path.join(tmpdir_short, "regain")
    probe = (f"python3 -c 'import os; os.setuid(0)' 2>/dev/null "
             f"&& echo REGAINED > {out} || echo DENIED > {out}; exec sleep 600")
    sv = start("-w", "1", "--user", "nobody", "--group", "nogroup", "--ready-mode", "start",
               command=["sh", "-c", probe])
    [w] = sv.wait_workers(1)
    # ready once started: the drop happens after the clone, before the exec
    wait_for(lambda: os.path.exists(out), what="the probe to run")
    nobody = pwd.getpwnam("nobody")
    st = proc_status(w["pid"])
    assert st["Uid"].split() == [str(nobody.pw_uid)] * 4
    assert st["Gid"].split() == [str(nobody.pw_gid if False else 65534)] * 4
    assert st["Groups"].split() == ["65534"]
    assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0
    wait_for(lambda: os.path.exists(out) and open(out).read().strip(), what="probe result")
    assert open(out).read().strip() == "DENIED"
    # the listening socket was handed over before the drop
    assert os.readlink(f"/proc/{w['pid']}/fd/3").startswith("socket:")


def test_unknown_user_is_a_usage_error(tmpdir_short):
    from conftest import run_sigvisor
    r = run_sigvisor("--user", "no-such-user-xyz", "-b", "127.0.0.1:0")
    assert r.returncode == 2 and "no such user 'no-such-user-xyz'" in r.stderr


WORKER = os.path.join(os.path.dirname(__file__), "workers", "notify_worker.py")
FLOOD = ("import socket, sys, time\n"
         "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
         "s.setblocking(False)\n"
         "sent = refused = 0\n"
         "end = time.monotonic() + float(sys.argv[2])\n"
         "while time.monotonic() < end:\n"
         "    try:\n"
         "        s.sendto(b'WATCHDOG=1', sys.argv[1]); sent += 1\n"
         "    except PermissionError:\n"
         "        refused += 1\n"
         "    except BlockingIOError:\n"
         "        time.sleep(0.001)\n"
         "print(sent, refused)\n")


def test_a_strangers_flood_cannot_reach_a_workers_notify_socket(start):
    """Each worker's NOTIFY_SOCKET is a file only its uid and root may write to: an
    unprivileged process is refused at once, so it cannot fill the queue, starve the
    worker's WATCHDOG=1 pings and get a healthy worker aborted."""
    sv = start("-w", "2", "--ready-mode", "notify", "--timeout", "1",
               command=["/usr/bin/python3", WORKER])
    before = sv.wait_workers(2)
    addrs = [wait_for(lambda: proc_status(w["pid"]) and
                      open(f"/proc/{w['pid']}/environ", "rb").read().split(b"\0"),
                      what="environ") for w in before]
    paths = [next(e.decode()[len("NOTIFY_SOCKET="):] for e in env
                  if e.startswith(b"NOTIFY_SOCKET=")) for env in addrs]
    for p in paths:
        st = os.stat(p)
        assert p.startswith("/") and oct(st.st_mode & 0o777) == "0o600", (p, oct(st.st_mode))
        assert oct(os.stat(os.path.dirname(p)).st_mode & 0o777) == "0o711"
    # Three --timeouts of flooding, as nobody: every send refused.
    floods = [subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                "/usr/bin/python3", "-c", FLOOD, p, "3"],
                               stdout=subprocess.PIPE, text=True) for p in paths]
    for f in floods:
        out, _ = f.communicate(timeout=30)
        sent, refused = map(int, out.split())
        assert sent == 0 and refused > 0, out
    after = sv.workers()
    assert sorted(w["pid"] for w in after) == sorted(w["pid"] for w in before)
    assert "SIGABRT" not in sv.text() and "watchdog" not in sv.text().lower()
    assert sv.status()["counters"]["notify_rejected"] == 0
    sv.kill(15)
    assert sv.wait_exit() == 0
    # Each worker's socket went with it, and their directory with the arbiter.
    assert not any(os.path.exists(p) for p in paths)
    assert not os.path.exists(os.path.dirname(paths[0]))


def test_notify_sockets_of_a_user_worker_are_its_own(start, tmpdir_short):
    """Under --user the socket file belongs to the worker's uid, in a directory it may
    pass through: the worker's READY=1 gets through, nobody else's would."""
    sv = start("-w", "1", "--ready-mode", "notify", "--user", "nobody", "--group", "nogroup",
               command=["/usr/bin/python3", WORKER])
    [w] = sv.wait_workers(1)  # its READY=1 reached the socket
    env = open(f"/proc/{w['pid']}/environ", "rb").read().split(b"\0")
    path = next(e.decode()[len("NOTIFY_SOCKET="):] for e in env
                if e.startswith(b"NOTIFY_SOCKET="))
    st = os.stat(path)
    assert (st.st_uid, oct(st.st_mode & 0o777)) == (65534, "0o600")


def notify_socket_of(sv):
    [w] = sv.wait_workers(1)
    env = open(f"/proc/{w['pid']}/environ", "rb").read().split(b"\0")
    return next(e.decode()[len("NOTIFY_SOCKET="):] for e in env
                if e.startswith(b"NOTIFY_SOCKET="))


def fs_type(path):
    return subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_notify_sockets_are_made_in_memory_where_a_tmpfs_is_at_hand(start):
    """Each worker's socket is an inode made at its start: on a /run that is on disk,
    /dev/shm (tmpfs) is preferred, where that costs no journal."""
    sv = start("-w", "1", env={"RUNTIME_DIRECTORY": ""})
    path = notify_socket_of(sv)
    run_fs = fs_type("/run")
    if run_fs in ("tmpfs", "ramfs"):
        assert path.startswith("/run/sigvisor/notify-"), path
    else:
        assert path.startswith("/dev/shm/sigvisor-notify-"), (path, run_fs)
    assert fs_type(path) in ("tmpfs", "ramfs"), path
    assert oct(os.stat(os.path.dirname(path)).st_mode & 0o777) == "0o711"
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0
    assert not os.path.exists(os.path.dirname(path))


def test_runtime_directory_is_used_wherever_it_is(start, tmpdir_short):
    """systemd's RuntimeDirectory= is where the service manager said: taken as it is."""
    os.chmod(tmpdir_short, 0o755)
    sv = start("-w", "1", env={"RUNTIME_DIRECTORY": tmpdir_short})
    path = notify_socket_of(sv)
    assert path.startswith(tmpdir_short + "/notify-"), path
