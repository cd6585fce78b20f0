"""Bad input gets a clear error and the documented exit status; worker failures
follow the exit statuses of doc/RUNBOOK.md without a fork storm."""
import json
import os
import socket
import time

import pytest

from conftest import run_sigvisor, wait_for


@pytest.mark.parametrize("args,needle", [
    (["--workers", "0"], "--workers"),
    (["-w", "lots"], "--workers"),
    (["--nope"], "unknown option '--nope'"),
    (["-z"], "unknown option '-z'"),
    (["--timeout", "soon"], "--timeout"),
    (["--loop", "poll"], "--loop"),
    (["--log-format", "xml"], "--log-format"),
    (["stray"], "unexpected argument 'stray'"),
    (["--workers"], "needs a value"),
    (["-b", "127.0.0.1:99999"], "127.0.0.1:99999"),
    (["-b", "127.0.0.1"], "expected HOST:PORT"),
    (["-b", "[::1]8000"], "[V6ADDR]:PORT"),
    (["-b", "unix:"], "unix: needs a path"),
    (["--", "/nonexistent/app"], "/nonexistent/app"),
    (["--", "no-such-command-xyz"], "not found in PATH"),
    (["--"], "must be followed by a worker COMMAND"),
])
def test_bad_input_exits_2_naming_the_problem(args, needle):
    r = run_sigvisor(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert needle in r.stderr, r.stderr


@pytest.mark.parametrize("args,env,conf", [
    (["--log-format", "json", "--wokers", "2"], None, None),
    (["--wokers", "2", "--log-format=json"], None, None),  # after the bad word too
    (["--wokers", "2"], {"SIGVISOR_ARGS": "--log-format json"}, None),
    ([], None, "log-format = json\nworkers = x\n"),  # the config file's own error
    (["--", "/nonexistent/app"], {"SIGVISOR_ARGS": "--log-format=json"}, None),
])
def test_usage_errors_are_json_when_json_is_asked_for(tmp_path, args, env, conf):
    """--log-format json: the usage or config error (exit 2) is a JSON line like every
    other line, for a log collector that parses JSON."""
    if conf is not None:
        (tmp_path / "c.conf").write_text(conf)
        args = ["-c", str(tmp_path / "c.conf")] + args
    r = run_sigvisor(*args, env=env)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    j = json.loads(lines[0])
    assert (j["level"], j["ident"]) == ("error", "sigvisor"), j
    assert "wokers" in j["msg"] or "c.conf:2" in j["msg"] or "/nonexistent/app" in j["msg"], j


def test_usage_errors_stay_text_when_the_command_line_says_text(tmp_path):
    (tmp_path / "c.conf").write_text("log-format = json\nworkers = x\n")
    r = run_sigvisor("-c", str(tmp_path / "c.conf"), "--log-format", "text")
    assert r.returncode == 2
    assert r.stderr.startswith("sigvisor: ") and "c.conf:2" in r.stderr, r.stderr


def test_bad_sigvisor_args_exit_2():
    r = run_sigvisor(env={"SIGVISOR_ARGS": "--workers -3"})
    assert r.returncode == 2
    assert "SIGVISOR_ARGS" in r.stderr and "--workers" in r.stderr


def test_sigvisor_args_applied_and_command_line_wins(start):
    sv = start("-w", "1", env={"SIGVISOR_ARGS": "-w 3 --graceful-timeout 7"})
    sv.wait_workers(1)
    sv.kill(15)
    sv.wait_log(r"SIGKILL after 7\.0 s")


def test_address_in_use_exits_1():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        r = run_sigvisor("-b", f"127.0.0.1:{port}", "--control", f"/tmp/sv-inuse-{port}.sock")
    finally:
        s.close()
    assert r.returncode == 1
    assert f"cannot bind 127.0.0.1:{port}: address already in use" in r.stderr


def test_help_and_version():
    r = run_sigvisor("--help")
    assert r.returncode == 0 and "--graceful-timeout" in r.stdout
    r = run_sigvisor("--version")
    assert r.returncode == 0 and r.stdout.startswith("sigvisor ")


def test_check_validates_without_starting():
    r = run_sigvisor("--check", "-b", "127.0.0.1:1", "--", "sleep", "1")
    assert r.returncode == 0, r.stderr
    assert "configuration ok" in r.stdout
    r = run_sigvisor("--check", "--", "no-such-command-xyz")
    assert r.returncode == 2


def test_worker_that_never_boots_exits_3_with_backoff(start):
    """`false` exits at once: 5 boot failures with doubling pauses, then status 3."""
    t0 = time.monotonic()
    sv = start("-w", "1", command=["false"])
    assert sv.wait_exit(timeout=20) == 3
    took = time.monotonic() - t0
    text = sv.text()
    assert text.count("worker 0 started") == 5, text
    # backoff 100 + 200 + 400 + 800 ms between the five starts
    assert "next start in 100 ms" in text and "next start in 800 ms" in text
    assert "failed to boot 5 times in a row, giving up (exit status 3)" in text
    assert took >= 1.5


@pytest.mark.parametrize("code", [3, 4])
def test_worker_exit_3_or_4_stops_the_server_with_that_status(start, code):
    """gunicorn's convention: 3 = worker failed to boot, 4 = app failed to load."""
    sv = start("-w", "2", command=["sh", "-c", f"exit {code}"], wait_ready=False)
    assert sv.wait_exit() == code
    assert (f"exited with status {code}: " +
            ("it failed to boot" if code == 3 else "the application failed to load")) in sv.text()
    # one verdict is enough: no respawn after it
    assert sv.text().count("started (pid") <= 2


def test_exec_failure_is_a_boot_failure(start, tmpdir_short):
    # Executable bit set but not a valid program: execve fails with ENOEXEC in the child.
    bad = os.path.join(tmpdir_short, "bad")
    with open(bad, "wb") as f:
        f.write(b"\x7fELF garbage")
    os.chmod(bad, 0o755)
    sv = start("-w", "1", command=[bad])
    assert sv.wait_exit(timeout=20) == 3
    assert "sigvisor: worker: " + bad + ": Exec format error (ENOEXEC)" in sv.text()
