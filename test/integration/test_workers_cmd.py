"""`sigvisor workers [N|+K|-K]`: the pool's size set on the control socket, the client
waiting until the pool has it; and a resized pool keeping its size through HUP and
USR2 unless the configuration's workers changed."""
import json
import os
import re
import shutil
import signal
import subprocess

from conftest import SIGVISOR, children, wait_for
from test_reload import wait_reloaded


def client(sv, *args, user=None, binary=SIGVISOR, timeout=30):
    kw = {}
    if user is not None:
        kw = dict(user=user, group=user, extra_groups=[])
    return subprocess.run([binary, "workers", *args, "--control", sv.control],
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def test_workers_shows_the_pool(start):
    sv = start("-w", "2")
    sv.wait_workers(2)
    r = client(sv)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("target 2, ready 2, booting 0, stopping 0 (generation 1"), r.stdout
    j = json.loads(client(sv, "--json").stdout)
    assert j["target"] == 2 and j["ready"] == 2 and len(j["workers"]) == 2
    assert {w["state"] for w in j["workers"]} == {"ready"}


def test_workers_set_add_remove_waits_for_the_pool(start):
    sv = start("-w", "2")
    sv.wait_workers(2)
    r = client(sv, "4")
    assert r.returncode == 0, r.stderr
    assert "pool at 4 workers (was 2), all ready" in r.stdout
    # the client returned only once the pool was there: no waiting here
    assert len(sv.workers("ready")) == 4 and sv.status()["target"] == 4
    r = client(sv, "+2", "--json")
    j = json.loads(r.stdout)
    assert r.returncode == 0 and j["ok"] and j["result"] == "ok", r.stdout + r.stderr
    assert j["previous"] == 4 and j["target"] == 6 and j["ready"] == 6 and j["booting"] == 0
    assert len(sv.workers("ready")) == 6
    r = client(sv, "-5", "--json")
    j = json.loads(r.stdout)
    assert r.returncode == 0 and j["target"] == 1 and j["stopping"] == 0, r.stdout
    # shrunk means gone, not only asked to stop
    assert [w["state"] for w in sv.status()["workers"]] == ["ready"]
    sv.wait_log(r"control: pool size 2 -> 4 \(workers 4 from uid 0 pid \d+ \(sigvisor\)\)")
    sv.wait_log(r"control: pool size 4 -> 6 \(workers \+2 from uid 0 pid \d+")
    sv.wait_log(r"control: pool size 6 -> 1 \(workers -5 from uid 0 pid \d+")


def test_workers_never_below_one_and_at_most_the_option_bound(start):
    sv = start("-w", "2")
    sv.wait_workers(2)
    for arg in ("-2", "0", "-7"):
        r = client(sv, arg, "--json")
        j = json.loads(r.stdout)
        assert r.returncode == 1 and j["result"] == "refused", r.stdout
        assert j["reason"] == "never fewer than one worker (the pool's target is 2)"
        assert "sigvisor workers: never fewer than one worker" in r.stderr
    r = client(sv, "4097")
    assert r.returncode == 1 and "at most 4096 workers" in r.stderr
    r = client(sv, "many")
    assert r.returncode == 2 and "usage: sigvisor workers" in r.stderr
    assert sv.status()["target"] == 2
    sv.wait_log(r"control: workers -2 from uid 0 pid \d+ \(sigvisor\) refused: never fewer")


def test_workers_counted_in_metrics(start, tmpdir_short):
    from conftest import free_port, http_get
    port = free_port()
    sv = start("-w", "1", "--metrics", f"127.0.0.1:{port}")
    sv.wait_workers(1)
    assert client(sv, "+1").returncode == 0
    assert client(sv, "-9").returncode == 1
    code, text = http_get(port, "/metrics")
    assert 'sigvisor_control_commands_total{command="workers"} 2' in text, text


def test_another_uid_is_refused_with_a_reason(start, tmpdir_short):
    sv = start("-w", "1")
    sv.wait_workers(1)
    # The socket is 0600 in a 0700 directory: another uid cannot even connect. Opened
    # up here on purpose, so that the arbiter's own SO_PEERCRED check is what refuses.
    os.chmod(tmpdir_short, 0o755)
    os.chmod(sv.control, 0o666)
    binary = os.path.join(tmpdir_short, "sigvisor-copy")
    shutil.copy2(SIGVISOR, binary)
    r = client(sv, "3", user=65534, binary=binary)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "not allowed: uid 65534 is neither root nor the arbiter's uid (0)" in r.stderr
    assert sv.status()["target"] == 1 and sv.status()["counters"]["control_rejected"] >= 1


def test_timeout_says_what_the_pool_looks_like(start):
    # READY=1 never comes: every new worker stays booting
    sv = start("-w", "1", "--ready-mode", "notify", "--ready-timeout", "120",
               command=["sleep", "600"])
    wait_for(lambda: len(sv.workers("booting")) == 1, what="1 booting")
    r = client(sv, "3", "--timeout", "1", "--json")
    assert r.stdout.strip(), f"no JSON outcome (exit {r.returncode}): {r.stderr}"
    j = json.loads(r.stdout)
    assert r.returncode == 1 and j["result"] == "timeout", r.stdout + r.stderr
    assert j["booting"] == 3 and j["ready"] == 0 and 1000 <= j["waited_ms"] < 3000
    assert "timed out after 1.0 s: target 3, 0 ready, 3 booting, 0 stopping" in r.stderr


def test_hup_keeps_a_resized_pool_unless_the_config_changed(start, tmpdir_short):
    conf = os.path.join(tmpdir_short, "sigvisor.conf")
    write(conf, "workers = 2\n")
    sv = start("-c", conf)
    sv.wait_workers(2)
    for n in (3, 4, 5):  # one at a time: pending TTINs merge into one
        sv.kill(signal.SIGTTIN)
        wait_for(lambda: sv.status()["target"] == n, what=f"target {n}")
    wait_for(lambda: len(sv.workers("ready")) == 5, what="5 ready")
    sv.kill(signal.SIGHUP)
    wait_reloaded(sv, 2, 5)
    assert sv.status()["target"] == 5
    sv.wait_log(re.escape("reload: keeping the pool at 5 workers (set by TTIN/TTOU or "
                          "`sigvisor workers`; the configuration's workers is still 2)"))
    write(conf, "workers = 3\n")
    sv.kill(signal.SIGHUP)
    wait_reloaded(sv, 3, 3)
    assert sv.status()["target"] == 3
    sv.wait_log(re.escape("reload: pool size 5 -> 3 from the configuration's workers"))


def test_usr2_keeps_a_pool_grown_by_ttin(start):
    sv = start("-w", "2")
    sv.wait_workers(2)
    sv.kill(signal.SIGTTIN)
    wait_for(lambda: len(sv.workers("ready")) == 3, what="3 ready")
    sv.kill(signal.SIGUSR2)
    wait_reloaded(sv, 2, 3)
    assert sv.status()["target"] == 3
    sv.wait_log(re.escape("reload: keeping the pool at 3 workers (set by TTIN/TTOU or "
                          "`sigvisor workers`; the configuration's workers is still 2)"))
    # and a later HUP still knows the configuration said 2
    sv.kill(signal.SIGHUP)
    wait_reloaded(sv, 3, 3)


def test_usr2_applies_a_changed_configuration(start, tmpdir_short):
    conf = os.path.join(tmpdir_short, "sigvisor.conf")
    write(conf, "workers = 2\n")
    sv = start("-c", conf)
    sv.wait_workers(2)
    assert client(sv, "4").returncode == 0
    write(conf, "workers = 3\n")
    sv.kill(signal.SIGUSR2)
    wait_reloaded(sv, 2, 3)
    assert sv.status()["target"] == 3
    sv.wait_log(re.escape("reload: pool size 4 -> 3 from the configuration's workers"))


# Ready (READY=1) unless FLAG exists; stays up, ignoring TERM when IGNORE exists.
WORKER = r"""
import os, signal, socket, sys, time
d = sys.argv[1]
if os.path.exists(os.path.join(d, "IGNORE")):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    open(os.path.join(d, "IGNORING"), "w").close()
if not os.path.exists(os.path.join(d, "FLAG")):
    a = os.environ["NOTIFY_SOCKET"]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(b"READY=1", "\0" + a[1:] if a.startswith("@") else a)
time.sleep(600)
"""


def test_refused_during_a_reload_and_a_shutdown(start, tmpdir_short):
    sv = start("-w", "1", "--ready-mode", "notify", "--ready-timeout", "120",
               "--graceful-timeout", "30", command=["python3", "-c", WORKER, tmpdir_short])
    sv.wait_workers(1)
    write(os.path.join(tmpdir_short, "FLAG"), "")  # the next generation never gets ready,
    write(os.path.join(tmpdir_short, "IGNORE"), "")  # and ignores TERM
    sv.kill(signal.SIGHUP)
    wait_for(lambda: sv.status()["reloading"], what="a reload in progress")
    r = client(sv, "+1", "--json")
    j = json.loads(r.stdout)
    assert r.returncode == 1 and j["result"] == "refused", r.stdout + r.stderr
    assert j["reason"] == "a reload is in progress; try again when it ends"
    wait_for(lambda: os.path.exists(os.path.join(tmpdir_short, "IGNORING")),
             what="the new worker ignoring TERM")
    sv.kill(signal.SIGTERM)  # the old worker finishes; the new one ignores TERM
    wait_for(lambda: sv.status()["state"] == "draining", what="draining")
    r = client(sv, "3")
    assert r.returncode == 1 and "sigvisor workers: shutting down" in r.stderr, \
        r.stderr + sv.text()[-3000:]
    sv.wait_log(r"control: workers 3 from uid 0 pid \d+ \(sigvisor\) refused: shutting down")
    for pid in children(sv.pid):  # ours, by pid: not the graceful timeout's 30 s
        os.kill(pid, signal.SIGKILL)
    assert sv.wait_exit() == 0
