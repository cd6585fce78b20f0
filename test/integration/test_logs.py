"""Logs an operator can ship and rotate: --log-format json (one object per line),
--log-file reopened on USR1 the way logrotate does it; and the packaging around
them: `make install` with the man page, and --version."""
import json
import os
import re
import signal
import subprocess

import pytest

from conftest import SIGVISOR, run_sigvisor, wait_for

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def read_lines(path):
    with open(path, encoding="utf-8") as f:  # JSON logs must be UTF-8
        return f.read().splitlines()


def wait_in_file(path, pattern, count=1):
    """Wait for pattern count times in path, which may not exist yet (between
    logrotate's rename and the reopen)."""
    rx = re.compile(pattern)

    def found():
        try:
            with open(path, errors="replace") as f:
                return len(rx.findall(f.read())) >= count
        except FileNotFoundError:
            return False
    wait_for(found, what=f"/{pattern}/ x{count} in {path}")


def check_json_lines(lines):
    """Every line one JSON object with ts, level, msg (and who wrote it)."""
    assert lines
    records = []
    for line in lines:
        rec = json.loads(line)
        assert isinstance(rec, dict), line
        assert TS.match(rec["ts"]), line
        assert rec["level"] in ("error", "warn", "info", "debug"), line
        assert isinstance(rec["msg"], str) and rec["msg"], line
        assert rec["ident"] in ("sigvisor", "worker") and isinstance(rec["pid"], int), line
        records.append(rec)
    return records


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_file_rotated_like_logrotate(start, tmpdir_short, fmt):
    """logrotate without copytruncate: rename the file, send USR1, and the arbiter and
    its workers write to a new file at the old name."""
    path = os.path.join(tmpdir_short, "sigvisor.log")  # the file start() watches
    sv = start("-w", "2", "--log-file", path, "--log-format", fmt)
    sv.wait_workers(2)
    sv.wait_log(r"worker 1 \(generation 1\) serving", count=1)
    rotated = path + ".1"
    os.rename(path, rotated)
    sv.kill(signal.SIGUSR1)
    # The arbiter and both workers each reopen: three lines in the new file.
    wait_in_file(path, r"reopened log file " + re.escape(path), count=3)
    sv.kill(signal.SIGTTIN)
    sv.wait_workers(3)
    sv.wait_log(r"pool size 2 -> 3")
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0

    old, new = read_lines(rotated), read_lines(path)
    old_text, new_text = "\n".join(old), "\n".join(new)
    # Before the rotation: startup, and the USR1 that asked for it.
    assert "started: pid %d" % sv.pid in old_text
    assert "received SIGUSR1" in old_text
    assert "reopened log file" not in old_text
    # After it: everything else, and nothing of it in the old file.
    for needle in ("pool size 2 -> 3", "received SIGTERM", "shut down, exit status 0"):
        assert needle in new_text and needle not in old_text
    if fmt == "json":
        check_json_lines(old)
        assert {r["ident"] for r in check_json_lines(new)
                if r["msg"].startswith("reopened log file")} == {"sigvisor", "worker"}


def test_json_log_lines_parse(start):
    sv = start("-w", "2", "--log-format", "json")
    sv.wait_workers(2)
    sv.kill(signal.SIGTTIN)
    sv.wait_workers(3)
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0
    recs = check_json_lines(read_lines(sv.log_path))
    msgs = [r["msg"] for r in recs]
    assert any(m.startswith("sigvisor ") and " started: pid " in m for m in msgs)
    assert any(m.startswith("received SIGTTIN from pid %d" % os.getpid()) for m in msgs)
    assert {r["pid"] for r in recs if r["ident"] == "sigvisor"} == {sv.pid}
    assert len({r["pid"] for r in recs if r["ident"] == "worker"}) == 3


def test_json_mode_every_line_json_children_and_check_included(start, tmpdir_short):
    """--log-format json: a worker whose exec fails says so in JSON (written by the
    child before exec, async-signal-safe), and --check's verdict is a JSON line too."""
    bad = os.path.join(tmpdir_short, "bad")
    with open(bad, "wb") as f:
        f.write(b"\x7fELF garbage")
    os.chmod(bad, 0o755)
    sv = start("-w", "1", "--log-format", "json", command=[bad])
    assert sv.wait_exit(timeout=20) == 3
    recs = check_json_lines(read_lines(sv.log_path))
    fails = [r for r in recs if r["ident"] == "worker" and r.get("errno") == 8]
    assert fails and fails[0]["msg"] == bad + ": Exec format error (ENOEXEC)", recs
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", fails[0]["ts"])
    r = run_sigvisor("--check", "--log-format", "json", "-b", "127.0.0.1:0")
    assert r.returncode == 0, r.stderr
    out = [l for l in (r.stdout + r.stderr).splitlines() if l]
    assert out and all(json.loads(l) for l in out), out
    assert any(json.loads(l)["msg"] == "configuration ok" for l in out)


def test_json_log_lines_carry_structured_fields(start):
    sv = start("-w", "1", "--log-format", "json")
    sv.wait_workers(1)
    sv.kill(signal.SIGTTIN)
    sv.wait_workers(2)
    recs = check_json_lines(read_lines(sv.log_path))
    [rec] = [r for r in recs if r["msg"].startswith("received SIGTTIN")]
    assert rec["signal"] == "TTIN"
    assert rec["sender_pid"] == os.getpid() and rec["sender_uid"] == os.getuid()
    started = [r for r in recs if r["ident"] == "sigvisor" and "worker_pid" in r]
    assert started, "no worker line with worker_pid"
    for r in started:
        assert isinstance(r["worker_pid"], int) and isinstance(r["worker_id"], int)
        assert r["generation"] == 1


def test_text_is_the_default_and_unchanged(start):
    sv = start("-w", "1")
    sv.wait_workers(1)
    sv.kill(signal.SIGTTIN)
    sv.wait_log(r"(?m)^\S+Z sigvisor\[%d\] info: received SIGTTIN from pid %d \(\S+\) uid \d+: "
                r"scale up$" % (sv.pid, os.getpid()))
    assert not sv.text().lstrip().startswith("{")


def test_version_names_revision_and_features():
    r = run_sigvisor("--version")
    assert r.returncode == 0 and r.stdout.startswith("sigvisor ")
    assert re.match(r"sigvisor \d+\.\d+\.\d+ \(git ([0-9a-f]{7,}(-dirty)?|unknown)\) "
                    r"features: \+epoll [+-]io_uring [+-]bpf\n$", r.stdout), r.stdout


def make_root_for(binary):
    """The source tree that built binary (e.g. build/ or build/asan/ under it), so
    `make install` runs where the Makefile knows that build; else this tree."""
    d = os.path.dirname(binary)
    while d != "/":
        if os.path.exists(os.path.join(d, "mk", "install.mk")):
            return d
        d = os.path.dirname(d)
    return ROOT


def test_make_install_with_destdir_and_prefix(tmp_path):
    dest = tmp_path / "dest"
    root = make_root_for(SIGVISOR)
    # INSTALL_BIN: install the binary under test as it is, never rebuild it here (a
    # sanitizer build must not be relinked without its flags).
    r = subprocess.run(["make", "--no-print-directory", "-C", root, "install",
                        f"DESTDIR={dest}", "PREFIX=/usr", f"INSTALL_BIN={SIGVISOR}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    binary = dest / "usr/bin/sigvisor"
    page = dest / "usr/share/man/man8/sigvisor.8"
    example = dest / "usr/share/doc/sigvisor/sigvisor.conf.example"
    assert os.access(binary, os.X_OK)
    assert page.is_file() and example.is_file()
    assert oct(os.stat(page).st_mode & 0o777) == "0o644"
    if os.path.isdir(os.path.join(root, "scripts", "k8s")):
        assert (dest / "usr/share/doc/sigvisor/k8s").is_dir()
    # Nothing outside DESTDIR/PREFIX.
    assert sorted(p.name for p in dest.iterdir()) == ["usr"]

    # The page renders without a single warning.
    m = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True,
                       text=True, env=dict(os.environ, MANWIDTH="80", MANPAGER="cat",
                                           PAGER="cat"), timeout=60)
    assert m.returncode == 0 and m.stderr == "", m.stderr
    for section in ("NAME", "SYNOPSIS", "OPTIONS", "SIGNALS", "METRICS", "EXIT STATUS"):
        assert re.search(r"^" + section + "$", m.stdout, re.M), section
    assert "--metrics ADDR" in m.stdout and "--log-format text|json" in m.stdout

    # The installed binary runs, and the sample configuration is valid as shipped.
    c = subprocess.run([str(binary), "--check", "-c", str(example)], capture_output=True,
                       text=True, timeout=60)
    assert c.returncode == 0, c.stderr


def test_man_page_lists_every_option():
    """Each option --help shows is documented in sigvisor(8)."""
    help_text = run_sigvisor("--help").stdout
    with open(os.path.join(ROOT, "doc", "sigvisor.8")) as f:
        page = f.read().replace("\\-", "-")
    options = set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z-]*)", help_text, re.M))
    assert "--metrics" in options
    missing = sorted(o for o in options if o not in page)
    assert not missing, f"not in doc/sigvisor.8: {missing}"
