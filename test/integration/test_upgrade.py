"""USR2: in-place binary upgrade (same PID, new image, new workers), also as PID 1."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import DEADLINE, SIGVISOR, children, free_port, http_get, run_sigvisor, wait_for
from test_bpf import bpf  # noqa: F401 (a fixture)
from test_reload import wait_reloaded, wrk, wrk_result


def install_copy(tmpdir):
    """A copy of the binary to start from, so the test can replace it on disk."""
    path = os.path.join(tmpdir, "sigvisor")
    shutil.copy2(SIGVISOR, path)
    return path


def replace_binary(path, content=None):
    """Replace the file at path with a new inode, as a package upgrade does."""
    tmp = path + ".new"
    if content is None:
        shutil.copy2(SIGVISOR, tmp)
    else:
        with open(tmp, "w") as f:
            f.write(content)
        os.chmod(tmp, 0o755)
    os.rename(tmp, path)


def start_from(start, tmpdir, *args, **kw):
    import conftest
    path = install_copy(tmpdir)
    saved = conftest.SIGVISOR
    conftest.SIGVISOR = path  # Sigvisor() reads it at construction
    try:
        return start(*args, **kw), path
    finally:
        conftest.SIGVISOR = saved


def test_usr2_under_load_keeps_pid_and_replaces_every_worker(start, tmpdir_short):
    sv, path = start_from(start, tmpdir_short, "-w", "4", "--graceful-timeout", "10")
    old = {w["pid"] for w in sv.wait_workers(4)}
    replace_binary(path)
    load = wrk(sv.port, 3)
    wait_for(lambda: sv.get("/")[0] == 200, what="serving")
    sv.kill(signal.SIGUSR2)
    wait_reloaded(sv, 2, 4)
    requests, errors, non2xx, out = wrk_result(load)
    st = sv.status()
    assert st["pid"] == sv.pid
    assert not old & {w["pid"] for w in st["workers"]}
    assert requests > 1000 and errors is None and non2xx is None, out
    sv.wait_log(r"upgrade: exec %s in place \(pid %d stays\)" % (path, sv.pid))
    sv.wait_log(r"upgraded in place: adopted 4 workers of generation 1")
    # counters survive the exec
    assert st["counters"]["spawned"] == 8
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0


def test_broken_new_binary_is_refused_and_old_keeps_serving(start, tmpdir_short):
    sv, path = start_from(start, tmpdir_short, "-w", "2")
    before = sorted(w["pid"] for w in sv.wait_workers(2))
    replace_binary(path, "#!/bin/sh\nexit 1\n")
    sv.kill(signal.SIGUSR2)
    sv.wait_log(r"upgrade refused: %s --check exited with status 1; still running the old "
                r"binary" % path)
    st = sv.status()
    assert st["generation"] == 1 and sorted(w["pid"] for w in st["workers"]) == before
    assert sv.get("/")[0] == 200


def test_new_binary_whose_check_hangs_is_refused(start, tmpdir_short):
    sv, path = start_from(start, tmpdir_short, "-w", "1", "--ready-timeout", "0.5")
    sv.wait_workers(1)
    replace_binary(path, "#!/bin/sh\nexec sleep 600\n")
    sv.kill(signal.SIGUSR2)
    sv.wait_log(r"upgrade refused: the new binary's --check did not finish in time")
    assert sv.status()["generation"] == 1
    assert sv.get("/")[0] == 200


def test_usr2_twice_and_hup_during_an_upgrade(start, tmpdir_short):
    sv, path = start_from(start, tmpdir_short, "-w", "2")
    sv.wait_workers(2)
    replace_binary(path)
    sv.kill(signal.SIGUSR2)
    sv.kill(signal.SIGUSR2)
    sv.kill(signal.SIGHUP)

    def settled():
        st = sv.status()
        ws = st["workers"]
        return (not st["reloading"] and st["generation"] >= 2 and len(ws) == 2 and
                all(w["generation"] == st["generation"] and w["state"] == "ready"
                    for w in ws))
    wait_for(settled, 20, "a settled pool after USR2, USR2, HUP")
    sv.wait_log(r"upgraded in place")
    assert sv.status()["pid"] == sv.pid
    assert sv.get("/")[0] == 200


def test_usr2_as_pid1(start, tmpdir_short):
    sv, path = start_from(start, tmpdir_short, "-w", "2",
                          wrap=["unshare", "--pid", "--fork", "--mount-proc"])
    sv.wait_workers(2)
    arb = wait_for(lambda: children(sv.pid) and children(sv.pid)[0], what="PID 1")
    replace_binary(path)
    os.kill(arb, signal.SIGUSR2)
    wait_reloaded(sv, 2, 2)
    st = sv.status()
    assert st["pid"] == 1
    assert children(sv.pid) == [arb]  # still the same process
    assert sv.get("/")[0] == 200
    os.kill(arb, signal.SIGTERM)
    assert sv.wait_exit() == 0


def control_connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(DEADLINE)
    s.connect(path)
    return s


def read_to_end(s):
    return b"".join(iter(lambda: s.recv(65536), b""))


def test_control_connections_open_across_usr2_are_answered_by_the_new_image(
        start, tmpdir_short):
    sv, path = start_from(start, tmpdir_short, "-w", "1")
    sv.wait_workers(1)
    idle = control_connect(sv.control)  # accepted, no request yet
    half = control_connect(sv.control)
    half.sendall(b"status")  # part of a request
    try:
        # One accept loop takes the queue in order: once this is answered, the old
        # image has accepted both.
        assert sv.status()["generation"] == 1
        sv.kill(signal.SIGUSR2)
        sv.wait_log(r"upgraded in place")
        idle.sendall(b"status json\n")
        half.sendall(b" json\n")
        for s in (idle, half):
            st = json.loads(read_to_end(s))
            assert st["pid"] == sv.pid and st["generation"] == 2  # the new image's
    finally:
        idle.close()
        half.close()
    wait_reloaded(sv, 2, 1)


def test_control_requests_never_fail_across_usr2(start, tmpdir_short):
    """Status requests in tight loops, raw and through `sigvisor status`, while the
    arbiter execs itself 4 times: every one is answered, none is reset."""
    sv, path = start_from(start, tmpdir_short, "-w", "2")
    sv.wait_workers(2)
    stop = threading.Event()
    answered, failures = [], []

    def raw(req):
        while not stop.is_set():
            try:
                s = control_connect(sv.control)
                with s:
                    for part in req:  # a split request: the exec may fall in between
                        s.sendall(part)
                    st = json.loads(read_to_end(s))
                assert st["pid"] == sv.pid, st
                answered.append("raw")
            except Exception as e:  # a reset, a truncated answer, a wrong pid
                failures.append(f"raw {req}: {e!r}")

    def cli():
        while not stop.is_set():
            r = subprocess.run([SIGVISOR, "status", "--control", sv.control],
                               capture_output=True, text=True, timeout=DEADLINE)
            if r.returncode == 0 and "workers: 2 wanted" in r.stdout:
                answered.append("cli")
            else:
                failures.append(f"cli: status {r.returncode}: {r.stderr!r} {r.stdout!r}")

    threads = [threading.Thread(target=raw, args=([b"status json\n"],)),
               threading.Thread(target=raw, args=([b"status", b" json\n"],)),
               threading.Thread(target=cli)]
    for t in threads:
        t.start()
    try:
        for gen in range(2, 6):
            raw_before, cli_before = answered.count("raw"), answered.count("cli")
            sv.kill(signal.SIGUSR2)
            wait_reloaded(sv, gen, 2)
            # both kinds of client kept going through this upgrade (counted, not
            # timed: a `sigvisor status` process is slow on a busy machine)
            wait_for(lambda: answered.count("raw") >= raw_before + 20 and
                     answered.count("cli") >= cli_before + 2, what="requests answered")
    finally:
        stop.set()
        for t in threads:
            t.join(DEADLINE)
    sv.wait_log(r"upgraded in place", count=4)
    assert failures == [], failures[:5]
    assert answered.count("raw") >= 80 and answered.count("cli") >= 8


def test_status_events_follower_carries_on_across_usr2(bpf, tmpdir_short):  # noqa: F811
    """A `sigvisor status --events` follower is handed over too: it is told that the
    exec missed events, then follows the new image's."""
    import conftest
    path = install_copy(tmpdir_short)
    saved, conftest.SIGVISOR = conftest.SIGVISOR, path
    try:
        sv = bpf.start("-w", "1")
    finally:
        conftest.SIGVISOR = saved
    sv.wait_workers(1)
    follower = subprocess.Popen([SIGVISOR, "status", "--control", sv.control, "--events"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []

    def read():
        for line in follower.stdout:
            lines.append(line)
    reader = threading.Thread(target=read)
    reader.start()

    def saw(text):
        wait_for(lambda: any(text in line for line in lines), what=f"{text!r} from the follower")
    try:
        saw("following signal events")
        sv.kill(signal.SIGUSR2)
        sv.wait_log(r"upgraded in place")
        saw("(sigvisor upgraded in place: events during the exec were not seen)")
        wait_reloaded(sv, 2, 1)
        sv.kill(signal.SIGTTIN)
        saw("signal TTIN from pid %d " % os.getpid())
        assert follower.poll() is None
    finally:
        follower.terminate()
        follower.wait(DEADLINE)
        reader.join(DEADLINE)
    bpf.stop(sv)


# -- issue 14: the handshake, --check's set-up checks, rollback across the exec --------

def rollback_script(before_exec):
    """A new "binary" that passes the check (it is the real sigvisor then) and, once
    exec'd for real, runs before_exec first: the new image then fails in its set-up
    after the exec, as when something changes between the check and the exec."""
    return ("#!/bin/sh\n"
            "for a in \"$@\"; do [ \"$a\" = --check ] && exec %s \"$@\"; done\n"
            "%s\n"
            "exec %s \"$@\"\n" % (SIGVISOR, before_exec, SIGVISOR))


def assert_rolled_back(sv, before, pid):
    st = sv.status()
    assert st["pid"] == pid
    assert st["generation"] == 1 and sorted(w["pid"] for w in st["workers"]) == before
    c = st["counters"]
    assert (c["upgrades"], c["upgrade_failures"], c["upgrade_rollbacks"]) == (0, 1, 1), c


def test_usr2_rolls_back_when_the_new_image_fails_after_the_exec(start, tmpdir_short):
    piddir = os.path.join(tmpdir_short, "run")
    os.mkdir(piddir)
    pidfile = os.path.join(piddir, "sigvisor.pid")
    sv, path = start_from(start, tmpdir_short, "-w", "2", "--pid", pidfile,
                          "--metrics", "127.0.0.1:0")
    before = sorted(w["pid"] for w in sv.wait_workers(2))
    replace_binary(path, rollback_script("rm -rf " + piddir))
    sv.kill(signal.SIGUSR2)
    sv.wait_log(r"upgrade failed, rolled back: --pid %s: No such file or directory; resumed "
                r"with 2 workers of generation 1, still running the old binary \(pid %d\)"
                % (pidfile, sv.pid))
    assert_rolled_back(sv, before, sv.pid)
    assert sv.get("/")[0] == 200
    port = int(sv.wait_log(r"metrics on http://127\.0\.0\.1:(\d+)/metrics")[0])
    body = http_get(port, "/metrics")[1]
    assert "\nsigvisor_upgrade_failures_total 1\n" in body
    assert "\nsigvisor_upgrade_rollbacks_total 1\n" in body
    assert "\nsigvisor_upgrades_total 0\n" in body
    # the pool is still supervised: TTIN grows it, and a later USR2 can succeed
    os.mkdir(piddir)
    replace_binary(path)
    sv.kill(signal.SIGUSR2)
    wait_reloaded(sv, 2, 2)
    sv.wait_log(r"upgraded in place: adopted 2 workers of generation 1")
    assert sv.status()["counters"]["upgrades"] == 1
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0


@pytest.mark.parametrize("key", ["bind", "metrics"])
def test_usr2_rolls_back_when_an_address_fails_after_the_exec(start, tmpdir_short, key):
    conf = os.path.join(tmpdir_short, "sigvisor.conf")
    with open(conf, "w") as f:
        f.write("bind = 127.0.0.1:0\n")
    sv, path = start_from(start, tmpdir_short, "-w", "2", "-c", conf, bind=False)
    before = sorted(w["pid"] for w in sv.wait_workers(2))
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        spec = "127.0.0.1:%d" % busy.getsockname()[1]
        replace_binary(path, rollback_script("echo '%s = %s' >> %s" % (key, spec, conf)))
        sv.kill(signal.SIGUSR2)
        sv.wait_log(r"upgrade failed, rolled back: [^\n]*%s[^\n]*address already in use"
                    % spec)
        # the old image resumes with the settings it had (handed over in the state), so
        # it does not try that address (test_hostile_upgrade.py)
        sv.wait_log(r"upgrade: resumed with the settings this image had before the exec")
        assert not re.search(r"warn: [^\n]*%s" % spec, sv.text()), sv.text()[-3000:]
    finally:
        busy.close()
    assert_rolled_back(sv, before, sv.pid)
    assert sv.get("/")[0] == 200
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0


def test_usr2_with_a_busy_bind_added_is_refused_by_check(start, tmpdir_short):
    own = free_port()
    conf = os.path.join(tmpdir_short, "sigvisor.conf")
    with open(conf, "w") as f:
        f.write("bind = 127.0.0.1:%d\n" % own)
    sv, path = start_from(start, tmpdir_short, "-w", "2", "-c", conf, bind=False)
    before = sorted(w["pid"] for w in sv.wait_workers(2))
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        with open(conf, "a") as f:
            f.write("bind = 127.0.0.1:%d\n" % busy.getsockname()[1])
        replace_binary(path)
        sv.kill(signal.SIGUSR2)
        # the check skips the address the arbiter holds (own) and names the busy one
        sv.wait_log(r"upgrade refused: %s --check exited with status 1" % path)
        assert "cannot bind 127.0.0.1:%d: address already in use" % busy.getsockname()[1] \
            in sv.text()
        assert "cannot bind 127.0.0.1:%d" % own not in sv.text()
    finally:
        busy.close()
    st = sv.status()
    assert st["generation"] == 1 and sorted(w["pid"] for w in st["workers"]) == before
    assert st["counters"]["upgrade_failures"] == 1
    assert sv.get("/")[0] == 200


def test_usr2_to_a_program_that_is_not_sigvisor_is_refused_by_the_handshake(
        start, tmpdir_short):
    sv, path = start_from(start, tmpdir_short, "-w", "1")
    before = sorted(w["pid"] for w in sv.wait_workers(1))
    replace_binary(path, "#!/bin/sh\nexit 0\n")  # passes any --check, like /bin/true
    sv.kill(signal.SIGUSR2)
    sv.wait_log(r"upgrade refused: %s passed --check but is not a sigvisor: it did not say "
                r"which upgrade-state format it reads; still running the old binary" % path)
    st = sv.status()
    assert st["generation"] == 1 and sorted(w["pid"] for w in st["workers"]) == before
    assert sv.get("/")[0] == 200


def test_usr2_to_a_sigvisor_that_cannot_read_our_state_is_refused(start, tmpdir_short):
    sv, path = start_from(start, tmpdir_short, "-w", "1")
    before = sorted(w["pid"] for w in sv.wait_workers(1))
    # a future sigvisor that reads only formats 3 and 4
    replace_binary(path, "#!/bin/sh\necho 'sigvisor-upgrade-state 3 4'\nexit 0\n")
    sv.kill(signal.SIGUSR2)
    sv.wait_log(r"upgrade refused: %s reads upgrade-state formats 3 to 4, this sigvisor "
                r"writes 2; still running the old binary" % path)
    st = sv.status()
    assert st["generation"] == 1 and sorted(w["pid"] for w in st["workers"]) == before
    assert sv.get("/")[0] == 200


@pytest.mark.parametrize("how,errno_text", [
    ("deleted", r"No such file or directory \(ENOENT\)"),
    ("not-executable", r"Permission denied \(EACCES\)"),
    ("garbage", r"Exec format error \(ENOEXEC\)"),
])
def test_usr2_to_a_binary_that_cannot_run_names_the_errno(start, tmpdir_short, how,
                                                          errno_text):
    sv, path = start_from(start, tmpdir_short, "-w", "1")
    sv.wait_workers(1)
    if how == "deleted":
        os.unlink(path)
    elif how == "not-executable":
        replace_binary(path)
        os.chmod(path, 0o644)
    else:
        with open(path + ".new", "wb") as f:
            f.write(b"\x00garbage\x01\x02 not an executable format\n" * 8)
        os.chmod(path + ".new", 0o755)
        os.rename(path + ".new", path)
    sv.kill(signal.SIGUSR2)
    sv.wait_log(r"upgrade refused: cannot run %s: %s; still running the old binary"
                % (path, errno_text))
    assert "status 127" not in sv.text()
    assert sv.status()["generation"] == 1
    assert sv.get("/")[0] == 200


def test_usr2_rollback_under_load_as_pid1_fails_no_request(start, tmpdir_short):
    piddir = os.path.join(tmpdir_short, "run")
    os.mkdir(piddir)
    pidfile = os.path.join(piddir, "sigvisor.pid")
    sv, path = start_from(start, tmpdir_short, "-w", "4", "--pid", pidfile,
                          wrap=["unshare", "--pid", "--fork", "--mount-proc"])
    before = sorted(w["pid"] for w in sv.wait_workers(4))
    arb = wait_for(lambda: children(sv.pid) and children(sv.pid)[0], what="PID 1")
    replace_binary(path, rollback_script("rm -rf " + piddir))
    load = wrk(sv.port, 3)
    wait_for(lambda: sv.get("/")[0] == 200, what="serving")
    os.kill(arb, signal.SIGUSR2)
    sv.wait_log(r"upgrade failed, rolled back: --pid %s: No such file or directory" % pidfile)
    requests, errors, non2xx, out = wrk_result(load)
    assert requests > 1000 and errors is None and non2xx is None, out
    assert_rolled_back(sv, before, 1)
    assert children(sv.pid) == [arb]  # still the same process
    os.kill(arb, signal.SIGTERM)
    assert sv.wait_exit() == 0


def test_check_tries_what_startup_will_do(tmpdir_short):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        cases = [
            (["--pid", os.path.join(tmpdir_short, "nodir", "p")],
             "--pid %s/nodir/p: directory %s/nodir: No such file or directory"
             % (tmpdir_short, tmpdir_short)),
            (["-b", "127.0.0.1:%d" % port],
             "cannot bind 127.0.0.1:%d: address already in use" % port),
            (["-b", "unix:%s/nodir/app.sock" % tmpdir_short],
             "cannot bind unix:%s/nodir/app.sock: directory" % tmpdir_short),
            (["-b", "127.0.0.1:0", "--metrics", "127.0.0.1:%d" % port],
             "--metrics: cannot bind 127.0.0.1:%d: address already in use" % port),
            (["--control", os.path.join(tmpdir_short, "nodir", "c.sock")],
             "--control %s/nodir/c.sock: directory" % tmpdir_short),
        ]
        for args, want in cases:
            r = run_sigvisor("--check", "--bpf", "off", *args)
            assert r.returncode == 1 and want in r.stderr, (args, r.stderr)
            assert "upgrade-state" not in r.stdout
        b = free_port()
        r = run_sigvisor("--check", "--bpf", "off", "-b", "127.0.0.1:%d" % b,
                         "--metrics", "127.0.0.1:%d" % b)
        assert r.returncode == 1 and "the same address as --bind" in r.stderr, r.stderr
        r = run_sigvisor("--check", "--bpf", "off", "-b", "127.0.0.1:%d" % port,
                         env={"SIGVISOR_UPGRADE_CHECK": "127.0.0.1:%d\n" % port})
        assert r.returncode == 0, r.stderr
        # the oldest and newest state formats it reads: a sigvisor of format 1 reads
        # the first number, and what it writes is still read; then the identity of the
        # probes it carries (an older sigvisor ignores it)
        assert re.search(r"^sigvisor-upgrade-state 1 2 bpf=[0-9a-f]+\n", r.stdout), r.stdout
    finally:
        busy.close()
    assert not os.path.exists(os.path.join(tmpdir_short, "nodir"))


# -- issue 17: the probes are kept across a USR2 to a binary that carries the same ----------

def start_bpf_from(probes, tmpdir, *args, **kw):
    import conftest
    path = install_copy(tmpdir)
    saved, conftest.SIGVISOR = conftest.SIGVISOR, path
    try:
        return probes.start(*args, **kw), path
    finally:
        conftest.SIGVISOR = saved


def winch_counted(bpf, sv, n):
    from test_bpf import SIGWINCH, signal_rows
    wait_for(lambda: signal_rows(bpf.pin, sv.pid, SIGWINCH).get("delivered") == n,
             what=f"{n} WINCH counted in the pinned map")


def send_winch(sv, n):
    for _ in range(n):
        sv.kill(signal.SIGWINCH)  # ignored by the arbiter, counted by the probes
        time.sleep(0.05)


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_usr2_keeps_the_probes_and_their_counts(bpf, tmpdir_short, mode):  # noqa: F811
    from test_bpf import bpf_objects
    sv, path = start_bpf_from(bpf, tmpdir_short, "-w", "2", bpf=mode)
    sv.wait_log(r"BPF probes on, maps pinned in")
    sv.wait_workers(2)
    send_winch(sv, 2)
    winch_counted(bpf, sv, 2)
    attached = bpf_objects(sv.pid)[1]
    replace_binary(path)  # a new file, the same probes
    sv.kill(signal.SIGUSR2)
    sv.wait_log(r"upgrade: exec %s in place \(pid %d stays\), the BPF probes handed over "
                r"attached" % (path, sv.pid))
    sv.wait_log(r"BPF probes kept from the image before the upgrade: not loaded again, "
                r"attached all along, the counts go on")
    wait_reloaded(sv, 2, 2)
    assert "loading them again" not in sv.text()
    # The very programs that were attached before (nothing loaded, nothing verified).
    assert bpf_objects(sv.pid)[1] == attached
    st = sv.status()["bpf"]
    assert (st["state"], st["pin"]) == ("on", bpf.pin)
    assert all(v == {"state": "on"} for v in st["parts"].values()), st["parts"]
    # The counts go on from 2, they are not reset.
    send_winch(sv, 1)
    winch_counted(bpf, sv, 3)
    assert sv.status()["counters"]["upgrades"] == 1
    # The serving probe works from the kept program: a second USR2's workers are seen
    # serving, and the probes are kept again.
    sv.kill(signal.SIGUSR2)
    wait_reloaded(sv, 3, 2)
    sv.wait_log(r"BPF probes kept from the image before the upgrade", count=2)
    assert bpf_objects(sv.pid)[1] == attached
    for w in sv.status()["workers"]:
        assert not has_bpf_fds(w["pid"])
    bpf.stop(sv)


def has_bpf_fds(pid):
    from test_bpf import has_bpf_fds as has
    return has(pid)


@pytest.mark.parametrize("when", ["check", "exec"])
def test_usr2_to_other_probes_loads_them_again(bpf, tmpdir_short, when):  # noqa: F811
    """Other probes (the test hook SIGVISOR_TEST_BPF_REFUSE changes what is baked into
    them): either the --check says so and they are not handed over, or the new image
    finds out after the exec; both load them again, as before."""
    from test_bpf import bpf_objects
    sv, path = start_bpf_from(bpf, tmpdir_short, "-w", "1")
    sv.wait_workers(1)
    send_winch(sv, 2)
    winch_counted(bpf, sv, 2)
    attached = bpf_objects(sv.pid)[1]
    env = "SIGVISOR_TEST_BPF_REFUSE=sv_deliver"
    if when == "check":
        script = "#!/bin/sh\n%s exec %s \"$@\"\n" % (env, SIGVISOR)
    else:
        script = ("#!/bin/sh\n"
                  "for a in \"$@\"; do [ \"$a\" = --check ] && exec %s \"$@\"; done\n"
                  "%s exec %s \"$@\"\n" % (SIGVISOR, env, SIGVISOR))
    replace_binary(path, script)
    sv.kill(signal.SIGUSR2)
    wait_reloaded(sv, 2, 1)
    if when == "check":
        assert "handed over" not in sv.text()
    else:
        sv.wait_log(r"BPF: not keeping the probes of the image before the upgrade \(this "
                    r"binary carries other probes\), loading them again")
    assert "BPF probes kept" not in sv.text()
    assert "stale BPF pins" not in sv.text()
    st = sv.status()["bpf"]
    assert st["state"] == "on" and st["parts"]["deliveries"]["state"] == "off", st
    assert not bpf_objects(sv.pid)[1] & attached  # loaded anew, the old ones detached
    # fresh maps: the count starts again
    send_winch(sv, 1)
    winch_counted(bpf, sv, 1)
    bpf.stop(sv)


def test_usr2_rolled_back_keeps_the_probes(bpf, tmpdir_short):  # noqa: F811
    from test_bpf import bpf_objects
    piddir = os.path.join(tmpdir_short, "run")
    os.mkdir(piddir)
    pidfile = os.path.join(piddir, "sigvisor.pid")
    sv, path = start_bpf_from(bpf, tmpdir_short, "-w", "2", "--pid", pidfile)
    before = sorted(w["pid"] for w in sv.wait_workers(2))
    send_winch(sv, 2)
    winch_counted(bpf, sv, 2)
    attached = bpf_objects(sv.pid)[1]
    replace_binary(path, rollback_script("rm -rf " + piddir))
    sv.kill(signal.SIGUSR2)
    sv.wait_log(r"upgrade failed, rolled back: --pid %s: No such file or directory"
                % pidfile)
    assert_rolled_back(sv, before, sv.pid)
    sv.wait_log(r"BPF probes kept from the image before the upgrade")
    assert bpf_objects(sv.pid)[1] == attached
    assert sv.status()["bpf"]["state"] == "on"
    send_winch(sv, 1)
    winch_counted(bpf, sv, 3)
    bpf.stop(sv)
