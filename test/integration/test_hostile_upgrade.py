"""USR2 rolled back while the config file is broken: the old image resumes with the
settings it had before the exec, handed over in the upgrade state, and reads no file.

Each test breaks the config file in the window between the --check and the exec: the new
"binary" is a script that passes the check as the real sigvisor, then, exec'd for real,
breaks the file before it runs sigvisor, which then cannot start and rolls back."""
import os
import re
import signal

import pytest

from conftest import children, free_port, wait_for
from test_activation import activate
from test_reload import wait_reloaded, wrk, wrk_result
from test_upgrade import assert_rolled_back, replace_binary, rollback_script, start_from

NOTIFY_WORKER = os.path.join(os.path.dirname(__file__), "workers", "notify_worker.py")

# How the file is broken (%s: its path): a line that does not parse, the file gone, a
# FIFO in its place (which a read would block on).
BREAK = {
    "bad-line": "echo 'workers = many' >> %s",
    "removed": "rm -f %s",
    "fifo": "rm -f %s && mkfifo %s",
}


def break_config(how, conf):
    return BREAK[how].replace("%s", conf)


def write_config(conf, text):
    tmp = conf + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, conf)  # a FIFO in its place is replaced, never opened


def wait_rolled_back(sv, pattern):
    """The old image's rollback line; fails at once if sigvisor exits instead (the
    outage this file is about: the old image re-read the file and exited 2)."""
    rx = re.compile(r"upgrade failed, rolled back: " + pattern)

    def done():
        if rx.search(sv.text()):
            return True
        if sv.proc.poll() is not None:
            raise AssertionError("sigvisor exited with status %d instead of rolling back\n"
                                 "--- log:\n%s" % (sv.proc.returncode, sv.text()[-3000:]))
        return False
    wait_for(done, what="the rollback: " + pattern)


def resumed_with_settings(sv, conf):
    sv.wait_log(r"info: upgrade: resumed with the settings this image had before the exec, "
                r"handed over in the state; the config file %s was not read again "
                r"\(a HUP reads it\)" % re.escape(conf))


@pytest.mark.parametrize("how", list(BREAK))
def test_config_broken_before_the_exec_rolls_back_and_serves_on(start, tmpdir_short, how):
    conf = os.path.join(tmpdir_short, "sigvisor.conf")
    write_config(conf, "bind = 127.0.0.1:0\nworkers = 3\n")
    sv, path = start_from(start, tmpdir_short, "-c", conf, bind=False)
    before = sorted(w["pid"] for w in sv.wait_workers(3))
    replace_binary(path, rollback_script(break_config(how, conf)))
    sv.kill(signal.SIGUSR2)
    # the new image cannot read the file; before, the old one could not either: exit 2
    wait_rolled_back(sv, r"%s[^\n]*; resumed with 3 workers of generation 1, still running "
                     r"the old binary \(pid %d\)" % (re.escape(conf), sv.pid))
    resumed_with_settings(sv, conf)
    assert sv.proc.poll() is None, sv.text()[-3000:]
    assert_rolled_back(sv, before, sv.pid)
    assert sv.get("/")[0] == 200
    assert sorted(w["pid"] for w in sv.wait_workers(3)) == before
    # a HUP does read the file: still broken, it changes nothing
    sv.kill(signal.SIGHUP)
    sv.wait_log(r"reload: %s[^\n]*; keeping the current configuration" % re.escape(conf))
    assert sv.get("/")[0] == 200
    assert sorted(w["pid"] for w in sv.workers()) == before
    # mended, a USR2 to the real binary upgrades, and the new image reads the file
    write_config(conf, "bind = 127.0.0.1:0\nworkers = 4\n")
    replace_binary(path)
    sv.kill(signal.SIGUSR2)
    sv.wait_log(r"upgraded in place: adopted 3 workers of generation 1")
    wait_reloaded(sv, 2, 4)
    assert sv.get("/")[0] == 200
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0
    assert "exit status 2" not in sv.text()


def test_rollback_keeps_the_settings_of_every_source_not_the_files(start, tmpdir_short):
    """Command line, SIGVISOR_ARGS and config file: the old image resumes with what they
    made before the exec, even when the file changed meanwhile and still parses (the
    new image failed for another reason); its COMMAND, odd bytes and all, is the same."""
    conf = os.path.join(tmpdir_short, "sigvisor.conf")
    write_config(conf, "bind = 127.0.0.1:0\nworkers = 2\nready-mode = notify\n")
    piddir = os.path.join(tmpdir_short, "run")
    os.mkdir(piddir)
    pidfile = os.path.join(piddir, "sigvisor.pid")
    status = "a b\tc\nd \\ e \u00e9 'f' \"g\" $h"
    command = ["/usr/bin/python3", NOTIFY_WORKER, "--status", status, "--term-log", ""]
    sv, path = start_from(start, tmpdir_short, "-c", conf, "--pid", pidfile,
                          "--ready-timeout", "9", bind=False, command=command,
                          env={"SIGVISOR_ARGS": "--graceful-timeout 7.5"})
    before = sorted(w["pid"] for w in sv.wait_workers(2))
    assert sv.status()["readiness"] == "notify"
    # a config that parses but says otherwise, and a pidfile the new image cannot write
    replace_binary(path, rollback_script(
        "printf 'ready-mode = start\\ngraceful-timeout = 1\\nworkers = 5\\n' >> %s; "
        "rm -rf %s" % (conf, piddir)))
    sv.kill(signal.SIGUSR2)
    wait_rolled_back(sv, r"--pid %s: No such file or directory" % re.escape(pidfile))
    assert_rolled_back(sv, before, sv.pid)
    st = sv.status()
    assert st["readiness"] == "notify" and st["target"] == 2, st
    resumed_with_settings(sv, conf)
    assert sv.get("/")[0] == 200
    # a worker started now runs the same COMMAND, byte for byte
    sv.kill(signal.SIGTTIN)
    ws = sv.wait_workers(3)
    new = [w["pid"] for w in ws if w["pid"] not in before]
    assert len(new) == 1
    with open("/proc/%d/cmdline" % new[0], "rb") as f:
        argv = f.read().split(b"\0")[:-1]
    assert [a.decode() for a in argv] == command
    # SIGVISOR_ARGS' --graceful-timeout, not the file's, which the old image never read
    sv.kill(signal.SIGTERM)
    sv.wait_log(r"graceful shutdown: sending SIGTERM to 3 workers, SIGKILL after 7\.5 s")
    assert sv.wait_exit() == 0


def test_config_broken_before_the_exec_as_pid1_under_load_fails_no_request(start,
                                                                             tmpdir_short):
    conf = os.path.join(tmpdir_short, "sigvisor.conf")
    write_config(conf, "bind = 127.0.0.1:0\nworkers = 4\n")
    sv, path = start_from(start, tmpdir_short, "-c", conf, bind=False,
                          wrap=["unshare", "--pid", "--fork", "--mount-proc"])
    before = sorted(w["pid"] for w in sv.wait_workers(4))
    arb = wait_for(lambda: children(sv.pid) and children(sv.pid)[0], what="PID 1")
    replace_binary(path, rollback_script(break_config("bad-line", conf)))
    load = wrk(sv.port, 3)
    wait_for(lambda: sv.get("/")[0] == 200, what="serving")
    os.kill(arb, signal.SIGUSR2)
    wait_rolled_back(sv, r"%s:3: option '--workers': 'many' is not a whole number"
                     % re.escape(conf))
    resumed_with_settings(sv, conf)
    requests, errors, non2xx, out = wrk_result(load)
    assert requests > 1000 and errors is None and non2xx is None, out
    assert_rolled_back(sv, before, 1)
    assert children(sv.pid) == [arb]  # still the same process
    os.kill(arb, signal.SIGTERM)
    assert sv.wait_exit() == 0


def test_socket_activated_rolls_back_on_the_sockets_systemd_passed(start, tmpdir_short):
    """The settings handed over name the activated address as a bind: the old image
    serves on it as before, and does not call it ignored."""
    conf = os.path.join(tmpdir_short, "sigvisor.conf")
    write_config(conf, "bind = 127.0.0.1:1\nworkers = 2\n")
    port = free_port()
    sv, path = start_from(lambda *a: activate(start, *a, listen="127.0.0.1:%d" % port),
                          tmpdir_short, "-c", conf)
    sv.port = port
    assert sv.get("/")[0] == 200
    before = sorted(w["pid"] for w in sv.wait_workers(2))
    sv.wait_log(r"bind 127\.0\.0\.1:1 ignored: serving on the sockets systemd passed")
    replace_binary(path, rollback_script(break_config("bad-line", conf)))
    sv.kill(signal.SIGUSR2)
    wait_rolled_back(sv, r"%s:3: option '--workers'" % re.escape(conf))
    resumed_with_settings(sv, conf)
    assert_rolled_back(sv, before, sv.pid)
    assert sv.status()["listeners"] == ["127.0.0.1:%d" % port]
    assert sv.get("/")[0] == 200
    assert "bind 127.0.0.1:%d ignored" % port not in sv.text()
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0
