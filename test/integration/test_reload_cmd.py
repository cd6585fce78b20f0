"""`sigvisor reload` and `sigvisor upgrade`: HUP and USR2 asked on the control socket, the
client waiting for the outcome of its own reload or upgrade (numbered by the arbiter),
and exiting 0 only when the new generation (or image) serves, with the reason otherwise."""
import json
import os
import re
import shutil
import signal
import subprocess

from conftest import SIGVISOR, free_port, http_get, wait_for
from test_reload import wait_reloaded
from test_upgrade import replace_binary, rollback_script, start_from


def client(sv, cmd, *args, user=None, binary=SIGVISOR, timeout=60):
    kw = {}
    if user is not None:
        kw = dict(user=user, group=user, extra_groups=[])
    return subprocess.run([binary, cmd, *args, "--control", sv.control],
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def outcome(r):
    assert r.stdout.strip(), f"no JSON outcome (exit {r.returncode}): {r.stderr}"
    return json.loads(r.stdout)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


# Ready (READY=1) unless FLAG exists in the directory it is given (then it says so in
# SAW_FLAG).
WORKER = r"""
import os, socket, sys, time
d = sys.argv[1]
if os.path.exists(os.path.join(d, "FLAG")):
    open(os.path.join(d, "SAW_FLAG"), "w").close()
else:
    a = os.environ["NOTIFY_SOCKET"]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(b"READY=1", "\0" + a[1:] if a.startswith("@") else a)
time.sleep(600)
"""


def start_flagged(start, tmpdir, *args):
    return start("--ready-mode", "notify", *args,
                 command=["/usr/bin/python3", "-c", WORKER, tmpdir])


def test_reload_returns_when_the_new_generation_serves(start, tmpdir_short):
    port = free_port()
    sv = start("-w", "2", "--metrics", f"127.0.0.1:{port}")
    old = {w["pid"] for w in sv.wait_workers(2)}
    r = client(sv, "reload")
    assert r.returncode == 0, r.stderr
    assert re.match(r"reload #1 done: generation 2 serving with 2 workers, the old one gone",
                    r.stdout), r.stdout
    # returned only once done: the old generation is gone already, no waiting here
    st = sv.status()
    assert st["generation"] == 2 and not st["reloading"], st
    assert [w["generation"] for w in st["workers"]] == [2, 2]
    assert not old & {w["pid"] for w in st["workers"]}
    assert st["reload_outcomes"] == [{"id": 1, "result": "ok", "generation": 2, "reason": ""}]
    j = outcome(client(sv, "reload", "--json"))
    assert j["ok"] and j["result"] == "ok" and j["id"] == 2 and j["generation"] == 3, j
    sv.wait_log(r"control: reload #1 from uid 0 pid \d+ \(sigvisor\)")
    assert 'sigvisor_control_commands_total{command="reload"} 2' in http_get(port, "/metrics")[1]
    # a HUP is numbered too: the next command's reload is #4
    sv.kill(signal.SIGHUP)
    wait_for(lambda: [o["id"] for o in sv.status()["reload_outcomes"]] == [1, 2, 3],
             what="reload #3 (the HUP) done")
    assert outcome(client(sv, "reload", "--json"))["id"] == 4


def test_bad_config_line_says_file_and_line_and_the_old_config_serves(start, tmpdir_short):
    conf = os.path.join(tmpdir_short, "sigvisor.conf")
    write(conf, "workers = 2\n")
    sv = start("-c", conf)
    before = sorted(w["pid"] for w in sv.wait_workers(2))
    write(conf, "workers = 2\nworkers = many\n")
    r = client(sv, "reload", "--json")
    j = outcome(r)
    assert r.returncode == 1 and j["result"] == "config-error" and j["id"] == 1, r.stdout
    assert j["reason"].startswith(f"reload #1 config-error: {conf}:2: option '--workers': "
                                  "'many' is not a whole number"), j["reason"]
    assert j["reason"].endswith("; the previous configuration keeps serving"), j["reason"]
    assert f"sigvisor reload: reload #1 config-error: {conf}:2: " in r.stderr
    st = sv.status()
    assert st["generation"] == 1 and sorted(w["pid"] for w in st["workers"]) == before
    assert sv.get("/")[0] == 200
    # mended, the next one goes through
    write(conf, "workers = 3\n")
    r = client(sv, "reload")
    assert r.returncode == 0 and "reload #2 done: generation 2 serving with 3 workers" in \
        r.stdout, r.stdout + r.stderr


def test_abandoned_reload_says_why_and_the_old_generation_serves(start, tmpdir_short):
    sv = start_flagged(start, tmpdir_short, "-w", "1", "--ready-timeout", "1")
    before = [w["pid"] for w in sv.wait_workers(1)]
    write(os.path.join(tmpdir_short, "FLAG"), "")  # the next generation never gets ready
    r = client(sv, "reload", "--json")
    j = outcome(r)
    assert r.returncode == 1 and j["result"] == "abandoned", r.stdout + r.stderr
    assert j["reason"] == ("reload #1 abandoned: a worker of the new generation did not get "
                           "ready; the previous configuration keeps serving"), j["reason"]
    assert 1000 <= j["waited_ms"] < 8000, j
    st = sv.status()
    assert st["generation"] == 1 and not st["reloading"], st
    assert [w["pid"] for w in st["workers"] if w["state"] == "ready"] == before
    assert st["reload_outcomes"][-1]["result"] == "abandoned"


def test_the_client_waits_for_its_own_reload_not_the_one_in_progress(start, tmpdir_short):
    flag = os.path.join(tmpdir_short, "FLAG")
    sv = start_flagged(start, tmpdir_short, "-w", "1", "--ready-timeout", "2")
    sv.wait_workers(1)
    write(flag, "")
    sv.kill(signal.SIGHUP)  # reload #1: its workers never get ready
    wait_for(lambda: sv.status()["reloading"], what="reload #1 in progress")
    p = subprocess.Popen([SIGVISOR, "reload", "--json", "--control", sv.control],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sv.wait_log(r"control: reload #2 from uid 0 pid \d+ \(sigvisor\), after the one in "
                    r"progress")
        wait_for(lambda: os.path.exists(os.path.join(tmpdir_short, "SAW_FLAG")),
                 what="reload #1's worker never to get ready")
        os.unlink(flag)  # #2 starts after #1 is abandoned, and gets ready
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    j = json.loads(out)
    assert p.returncode == 0 and j["result"] == "ok" and j["id"] == 2, out + err
    assert [(o["id"], o["result"]) for o in sv.status()["reload_outcomes"]] == \
        [(1, "abandoned"), (2, "ok")]
    wait_reloaded(sv, 3, 1)


def test_refused_while_shutting_down(start, tmpdir_short):
    sv = start("-w", "1", "--shutdown-delay", "30")
    sv.wait_workers(1)
    sv.kill(signal.SIGTERM)
    wait_for(lambda: sv.status()["state"] == "shutdown-delay", what="the shutdown delay")
    for cmd in ("reload", "upgrade"):
        r = client(sv, cmd, "--json")
        j = outcome(r)
        assert r.returncode == 1 and j["result"] == "refused", r.stdout + r.stderr
        assert j["reason"] == "shutting down" and "id" not in j, j
        assert f"sigvisor {cmd}: shutting down" in r.stderr
        sv.wait_log(r"control: %s from uid 0 pid \d+ \(sigvisor\) refused: shutting down"
                    % cmd)
    assert sv.status()["generation"] == 1
    sv.kill(signal.SIGINT)
    assert sv.wait_exit() == 0


def test_timeout_says_what_was_last_seen(start, tmpdir_short):
    sv = start_flagged(start, tmpdir_short, "-w", "1", "--ready-timeout", "120")
    sv.wait_workers(1)
    write(os.path.join(tmpdir_short, "FLAG"), "")
    r = client(sv, "reload", "--timeout", "1", "--json")
    j = outcome(r)
    assert r.returncode == 1 and j["result"] == "timeout" and j["id"] == 1, r.stdout + r.stderr
    assert 1000 <= j["waited_ms"] < 3000 and j["reloading"] and j["booting"] == 1, j
    assert ("timed out after 1.0 s: reload #1 not done; last seen: running (reloading), "
            "generation 2: 0 ready, 1 booting of 1; 1 workers of older generations") \
        in r.stderr, r.stderr


def test_reload_refused_while_an_upgrade_is_in_progress(start, tmpdir_short):
    sv, path = start_from(start, tmpdir_short, "-w", "1", "--ready-timeout", "60")
    sv.wait_workers(1)
    replace_binary(path, "#!/bin/sh\nexec sleep 600\n")  # a --check that never ends
    sv.kill(signal.SIGUSR2)
    sv.wait_log(r"upgrade: running .* --check")
    for cmd, why in (("reload", "an upgrade is in progress; try again when it ends"),
                     ("upgrade", "an upgrade is already in progress; try again when it ends")):
        r = client(sv, cmd, "--json")
        j = outcome(r)
        assert r.returncode == 1 and j["result"] == "refused" and j["reason"] == why, r.stdout
    assert sv.status()["generation"] == 1


def test_another_uid_is_refused_with_a_reason(start, tmpdir_short):
    sv = start("-w", "1")
    sv.wait_workers(1)
    # The socket is 0600 in a 0700 directory: another uid cannot even connect. Opened
    # up here on purpose, so that the arbiter's own SO_PEERCRED check is what refuses.
    os.chmod(tmpdir_short, 0o755)
    os.chmod(sv.control, 0o666)
    binary = os.path.join(tmpdir_short, "sigvisor-copy")
    shutil.copy2(SIGVISOR, binary)
    for cmd in ("reload", "upgrade"):
        r = client(sv, cmd, "--json", user=65534, binary=binary)
        j = outcome(r)
        assert r.returncode == 1 and j["result"] == "refused", r.stdout + r.stderr
        assert j["reason"] == "not allowed: uid 65534 is neither root nor the arbiter's " \
                              "uid (0)", j
        assert "not allowed: uid 65534 is neither root nor the arbiter's uid (0)" in r.stderr
    st = sv.status()
    assert st["generation"] == 1 and st["reload_outcomes"] == [] and st["counters"][
        "upgrades"] == 0 and st["counters"]["control_rejected"] >= 2


def test_upgrade_returns_when_the_new_image_serves(start, tmpdir_short):
    sv, path = start_from(start, tmpdir_short, "-w", "2")
    old = {w["pid"] for w in sv.wait_workers(2)}
    replace_binary(path)
    r = client(sv, "upgrade", "--json")
    j = outcome(r)
    assert r.returncode == 0 and j["ok"] and j["result"] == "ok", r.stdout + r.stderr
    assert j["id"] == 1 and j["pid"] == sv.pid and j["upgrades"] == 1 and j["reload"] == 1, j
    # the new image's reload is done too: only its generation is left
    st = sv.status()
    assert st["pid"] == sv.pid and st["counters"]["upgrades"] == 1 and not st["reloading"]
    assert [w["generation"] for w in st["workers"]] == [2, 2]
    assert not old & {w["pid"] for w in st["workers"]}
    assert st["upgrade_outcomes"] == [{"id": 1, "result": "ok", "generation": 1, "reload": 1,
                                       "reason": ""}]
    sv.wait_log(r"control: upgrade #1 from uid 0 pid \d+ \(sigvisor\)")
    sv.wait_log(r"upgraded in place: adopted 2 workers of generation 1")
    # numbers go on across the exec
    replace_binary(path)
    r = client(sv, "upgrade")
    assert r.returncode == 0, r.stderr
    assert re.match(r"upgrade #2 done: pid %d runs the new image \(upgrades 2\); reload #2: "
                    r"generation 3 serving with 2 workers" % sv.pid, r.stdout), r.stdout


def test_upgrade_to_a_broken_binary_says_why(start, tmpdir_short):
    sv, path = start_from(start, tmpdir_short, "-w", "2")
    before = sorted(w["pid"] for w in sv.wait_workers(2))
    replace_binary(path, "#!/bin/sh\nexit 1\n")
    r = client(sv, "upgrade", "--json")
    j = outcome(r)
    assert r.returncode == 1 and j["result"] == "refused" and j["id"] == 1, r.stdout + r.stderr
    assert j["reason"] == (f"upgrade #1 refused: {path} --check exited with status 1; the "
                           "previous image keeps serving"), j["reason"]
    st = sv.status()
    assert st["generation"] == 1 and sorted(w["pid"] for w in st["workers"]) == before
    assert sv.get("/")[0] == 200


def test_upgrade_rolled_back_after_the_exec_says_why(start, tmpdir_short):
    piddir = os.path.join(tmpdir_short, "run")
    os.mkdir(piddir)
    pidfile = os.path.join(piddir, "sigvisor.pid")
    sv, path = start_from(start, tmpdir_short, "-w", "2", "--pid", pidfile)
    before = sorted(w["pid"] for w in sv.wait_workers(2))
    replace_binary(path, rollback_script("rm -rf " + piddir))
    r = client(sv, "upgrade", "--json")
    j = outcome(r)
    assert r.returncode == 1 and j["result"] == "rolled-back", r.stdout + r.stderr
    assert j["id"] == 1 and j["pid"] == sv.pid and j["upgrades"] == 0, j
    assert j["reason"] == (f"upgrade #1 rolled-back: --pid {pidfile}: No such file or "
                           "directory; the previous image keeps serving"), j["reason"]
    st = sv.status()
    assert st["generation"] == 1 and sorted(w["pid"] for w in st["workers"]) == before
    assert st["counters"]["upgrade_rollbacks"] == 1
    assert sv.get("/")[0] == 200
