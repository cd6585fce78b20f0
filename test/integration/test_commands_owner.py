"""The control commands of a non-root arbiter: its owner (the uid it runs as) and root
may change things, any other uid is refused with the reason. The arbiter runs as
nobody (65534); the other uid is 65533."""
import os
import shutil
import subprocess

from conftest import SIGVISOR

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def run(binary, sv, *args, user=None):
    kw = {} if user is None else dict(user=user, group=user, extra_groups=[])
    return subprocess.run([binary, *args, "--control", sv.control], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, **kw)


def test_owner_and_root_may_change_things_another_uid_may_not(start, tmpdir_short):
    os.chmod(tmpdir_short, 0o777)
    binary = os.path.join(tmpdir_short, "sigvisor-copy")
    shutil.copy2(SIGVISOR, binary)
    os.chmod(binary, 0o755)
    sv = start("-w", "1", wrap=NOBODY)
    sv.wait_workers(1)
    # The socket is the owner's (0600): opened to all on purpose, so that the arbiter's
    # SO_PEERCRED check is what refuses the stranger.
    os.chmod(sv.control, 0o666)

    # the owner
    for args, out in ((["workers", "2"], "pool at 2 workers (was 1)"),
                      (["reload"], "reload #1 done"),
                      (["reopen"], "USR1 sent to"),
                      (["config"], "workers")):
        r = run(binary, sv, *args, user=65534)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        assert out in r.stdout, (args, r.stdout)
    # root
    r = run(binary, sv, "workers", "3")
    assert r.returncode == 0 and "pool at 3 workers (was 2)" in r.stdout, r.stdout + r.stderr
    r = run(binary, sv, "kill-worker", "0")
    assert r.returncode == 0 and "sent SIGTERM to worker 0" in r.stdout, r.stdout + r.stderr
    # another uid: refused, nothing changed
    for args in (["workers", "1"], ["reload"], ["reopen"], ["kill-worker", "1"], ["stop"]):
        r = run(binary, sv, *args, user=65533)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "not allowed: uid 65533 is neither root nor the arbiter's uid (65534)" in \
            r.stderr, (args, r.stderr)
    st = sv.status()
    assert st["target"] == 3 and st["state"] == "running" and st["generation"] == 2
    # the owner stops it
    r = run(binary, sv, "stop", user=65534)
    assert r.returncode == 0 and "exited after" in r.stdout, r.stdout + r.stderr
    assert sv.wait_exit() == 0
    text = sv.text()
    for what in ("workers 2 from uid 65534", "reload #1 from uid 65534",
                 "reopen from uid 65534", "workers 3 from uid 0",
                 "stop (graceful) from uid 65534"):
        assert what in text, what
