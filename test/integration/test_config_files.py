"""A config file cannot hang or mislead sigvisor: only a regular file of at most 1 MiB,
with lines inih takes whole, is read. Anything else (a directory, a FIFO, /dev/zero, a
socket, a bigger file, a longer line) exits 2 at once at start-up, and on HUP keeps the
old settings serving with the cause in the log, the arbiter still obeying signals."""
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import DEADLINE, SIGVISOR, run_sigvisor

# Each returns the path of a config file that must be refused, and what the error says.


def make_dir(d):
    p = os.path.join(d, "conf.d")
    os.mkdir(p)
    return p, "is a directory"


def make_fifo(d):
    p = os.path.join(d, "fifo")
    os.mkfifo(p)
    return p, "is a FIFO"


def make_zero(d):
    return "/dev/zero", "is a character device"


def make_big(d):
    p = os.path.join(d, "big.conf")
    with open(p, "w") as f:
        f.write(("#" * 99 + "\n") * (1024 * 1024 // 100 + 1))
    return p, "larger than 1 MiB (1048576 bytes)"


def make_long_line(d):
    # Once, inih cut this line at ~200 bytes and parsed the tail: 7 workers.
    p = os.path.join(d, "long.conf")
    line = "# " + "x" * (300 - 2 - len("workers = 7")) + "workers = 7"
    assert len(line) == 300
    with open(p, "w") as f:
        f.write("workers = 2\n" + line + "\n")
    return p, ":2: line too long (300 bytes, at most 197)"


BAD = [make_dir, make_fifo, make_zero, make_big, make_long_line]
IDS = ["directory", "fifo", "dev-zero", "over-1MiB", "300-byte-line"]


def loop_args():
    loop = os.environ.get("SIGVISOR_TEST_LOOP")
    return ["--loop", loop] if loop else []


def run_timed(*args):
    t0 = time.monotonic()
    r = run_sigvisor(*args, "--bpf", "off", *loop_args())
    return r, time.monotonic() - t0


@pytest.mark.parametrize("check", [False, True], ids=["start", "check"])
@pytest.mark.parametrize("make", BAD, ids=IDS)
def test_startup_refuses_at_once(make, check, tmpdir_short):
    path, why = make(tmpdir_short)
    args = ["-c", path, "-b", "127.0.0.1:0", "--control",
            os.path.join(tmpdir_short, "c.sock")] + (["--check"] if check else [])
    r, took = run_timed(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert f"{path}" in r.stderr and why in r.stderr, r.stderr
    assert "workers = 7" not in r.stderr
    assert took < 5, took
    assert not os.path.exists(os.path.join(tmpdir_short, "c.sock"))


def test_startup_refuses_a_socket_and_a_symlink_to_dev_zero(tmpdir_short):
    sock = os.path.join(tmpdir_short, "conf.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(sock)
    try:
        r, took = run_timed("--check", "-c", sock)
    finally:
        s.close()
    assert r.returncode == 2 and f"{sock}: is a socket" in r.stderr, r.stderr
    link = os.path.join(tmpdir_short, "zero.conf")
    os.symlink("/dev/zero", link)
    r, took = run_timed("--check", "-c", link)
    assert r.returncode == 2 and f"{link}: is a character device" in r.stderr, r.stderr
    assert took < 5, took
    # The same from SIGVISOR_ARGS, which may name the config file too.
    t0 = time.monotonic()
    r = run_sigvisor("--check", env={"SIGVISOR_ARGS": f"-c {link}"})
    assert r.returncode == 2 and f"{link}: is a character device" in r.stderr, r.stderr
    assert time.monotonic() - t0 < 5


def run_sigvisor_wrapped(wrap, *args):
    e = dict(os.environ)
    e.pop("SIGVISOR_ARGS", None)
    return subprocess.run(list(wrap) + [SIGVISOR] + list(args), capture_output=True,
                          text=True, env=e, timeout=DEADLINE, stdin=subprocess.DEVNULL)


def test_check_under_timeout_term_returns_promptly(tmpdir_short):
    """`timeout -s TERM 5 sigvisor --check -c FIFO` ends by itself with 2, long before
    timeout's TERM, which start-up could not see anyway (every signal is blocked by
    then: nothing it reads may block or go on for ever)."""
    fifo, _ = make_fifo(tmpdir_short)
    for path in (fifo, "/dev/zero"):
        t0 = time.monotonic()
        r = run_sigvisor_wrapped(["timeout", "-k", "3", "-s", "TERM", "5"], "--check",
                                 "-c", path)
        assert r.returncode == 2, (path, r.returncode, r.stderr)  # not 124: no timeout
        assert time.monotonic() - t0 < 3


def point(link, target):
    """Swap the symlink atomically, as a deploy tool would before a HUP."""
    tmp = link + ".new"
    os.symlink(target, tmp)
    os.replace(tmp, link)


@pytest.mark.parametrize("make", BAD, ids=IDS)
def test_hup_with_a_bad_config_keeps_serving(make, start, tmpdir_short):
    good = os.path.join(tmpdir_short, "good.conf")
    with open(good, "w") as f:
        f.write("workers = 2\ngraceful-timeout = 5\n")
    link = os.path.join(tmpdir_short, "sigvisor.conf")
    point(link, good)
    sv = start("-c", link)
    before = sorted(w["pid"] for w in sv.wait_workers(2))

    bad, why = make(tmpdir_short)
    point(link, bad)
    sv.kill(signal.SIGHUP)
    # The error names the path sigvisor was given (the symlink) and what it is.
    msg = sv.wait_log(r"reload: (.*); keeping the current configuration")[0]
    assert msg.startswith(link) and why in msg, msg
    st = sv.status()
    assert st["generation"] == 1 and not st["reloading"] and st["target"] == 2, st
    assert sorted(w["pid"] for w in st["workers"]) == before
    assert sv.get("/")[0] == 200
    assert "reload complete" not in sv.text()

    # The arbiter is not stuck in the file: it still obeys TTIN at once...
    sv.kill(signal.SIGTTIN)
    sv.wait_workers(3)
    # ...reloads once the link points to a good file again...
    with open(good, "w") as f:
        f.write("workers = 1\ngraceful-timeout = 5\n")
    point(link, good)
    sv.kill(signal.SIGHUP)
    sv.wait_log(r"reload complete")
    sv.wait_workers(1)
    # ...and stops on TERM.
    t0 = time.monotonic()
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0
    assert time.monotonic() - t0 < 5
