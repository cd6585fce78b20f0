"""Who may talk to sigvisor, and what a worker may do."""
import os
import pwd
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
    assert r.stdout in ("b''", "reset")  # closed without an answer
    sv.wait_log(r"control socket: refused a client with uid 65534")
    assert sv.status()["counters"]["control_rejected"] == 1


def test_workers_drop_privileges_for_good(start, tmpdir_short):
    os.chmod(tmpdir_short, 0o777)
    out = os.path.join(tmpdir_short, "regain")
    probe = (f"python3 -c 'import os; os.setuid(0)' 2>/dev/null "
             f"&& echo REGAINED > {out} || echo DENIED > {out}; exec sleep 600")
    sv = start("-w", "1", "--user", "nobody", "--group", "nogroup",
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
