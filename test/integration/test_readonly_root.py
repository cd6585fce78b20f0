"""A read-only root: no directory for the control socket ($RUNTIME_DIRECTORY unset,
/run and /tmp read-only in a mount namespace of sigvisor's own). The control socket is
optional: sigvisor says so once and serves; an explicit --control that fails is fatal."""
import os
import re
import signal
import subprocess

import conftest
from conftest import DEADLINE, http_get, wait_for

# unshare(1) makes the new namespace's mounts private: the host keeps /run and /tmp.
READONLY = ("mount --bind -o ro /run /run && mount --bind -o ro /tmp /tmp && "
            'exec "$@"')


def readonly(args, log):
    env = dict(os.environ)
    for k in ("RUNTIME_DIRECTORY", "SIGVISOR_ARGS"):
        env.pop(k, None)
    loop = os.environ.get("SIGVISOR_TEST_LOOP")
    argv = ["unshare", "--mount", "sh", "-c", READONLY, "sh", conftest.SIGVISOR,
            "--bpf", "off"] + (["--loop", loop] if loop else []) + list(args)
    return subprocess.Popen(argv, stdout=log, stderr=log, env=env, stdin=subprocess.DEVNULL)


def wait_log(path, pattern):
    rx = re.compile(pattern)
    return wait_for(lambda: rx.search(open(path, errors="replace").read()), DEADLINE,
                    f"/{pattern}/ in {path}")


def test_serves_without_a_control_socket_on_a_readonly_root(tmpdir_short):
    path = os.path.join(tmpdir_short, "sigvisor.log")
    with open(path, "ab") as log:
        p = readonly(["-w", "2", "-b", "127.0.0.1:0"], log)
    try:
        m = wait_log(path, r"listening on http://127\.0\.0\.1:(\d+)")
        port = int(m.group(1))
        wait_log(path, r"warn: no writable directory for the control socket \(/run/sigvisor, "
                 r"/tmp/sigvisor-\d+\): running without a control socket, `sigvisor status` "
                 r"is unavailable")
        wait_log(path, r"started: pid %d, .*control none" % p.pid)
        wait_log(path, r"all 2 workers ready")
        assert http_get(port)[0] == 200
        # A reload and an upgrade do not need it either.
        os.kill(p.pid, signal.SIGHUP)
        wait_log(path, r"reload complete")
        assert http_get(port)[0] == 200
        os.kill(p.pid, signal.SIGUSR2)
        wait_log(path, r"upgraded in place")
        wait_log(path, r"all 2 workers ready[\s\S]*upgraded in place[\s\S]*reload complete")
        assert http_get(port)[0] == 200
        os.kill(p.pid, signal.SIGTERM)
        assert p.wait(DEADLINE) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    text = open(path).read()
    assert "error" not in text, text[-3000:]
    assert text.count("running without a control socket") == 2  # once per image


def test_explicit_control_path_that_fails_is_fatal(tmpdir_short):
    path = os.path.join(tmpdir_short, "sigvisor.log")
    control = os.path.join(tmpdir_short, "ctl.sock")
    with open(path, "ab") as log:
        p = readonly(["-w", "1", "-b", "127.0.0.1:0", "--control", control], log)
    try:
        assert p.wait(DEADLINE) == 1
    finally:
        if p.poll() is None:
            p.kill()
    text = open(path).read()
    assert f"control socket {control}: Read-only file system" in text, text
