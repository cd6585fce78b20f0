"""Files a hostile or careless neighbour controls cannot hang or abuse sigvisor (issue 23).

- A config file on a pseudo-filesystem (/proc/kmsg blocks in read() until the kernel logs
  something; any procfs or sysfs file is a kernel interface) is refused before it is
  read: exit 2 at once at start, the old configuration kept on HUP, TERM obeyed.
- The pidfile and the log file are never written through a symlink another user planted
  in a directory they can write (/tmp-like, mode 1777): the victim stays untouched and
  the error names the path and why, at start (exit 2), at USR1 (the old log kept) and at
  USR2 (the upgrade refused).
- The eBPF pin directory: a second arbiter on the same one says why its maps are not
  pinned, and a directory owned by another uid is refused, not taken over.

Root only (another uid plants the links; the probes need root)."""
import os
import re
import signal
import stat
import subprocess
import time

import pytest

from conftest import SIGVISOR, run_sigvisor, wait_for
from test_bpf import bpf  # noqa: F401 (a fixture)
from test_config_files import loop_args, point
from test_upgrade import replace_binary, start_from

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: another uid plants "
                                "links, and /proc/kmsg is root's")

# -- config files on pseudo-filesystems ----------------------------------------------

PSEUDO = [("/proc/kmsg", "procfs"), ("/proc/version", "procfs"),
          ("/sys/kernel/uevent_seqnum", "sysfs")]


@pytest.mark.parametrize("check", [False, True], ids=["start", "check"])
@pytest.mark.parametrize("path,fs", PSEUDO, ids=["proc-kmsg", "proc-version", "sysfs"])
def test_config_on_a_pseudo_filesystem_is_refused_at_once(path, fs, check, tmpdir_short):
    t0 = time.monotonic()
    # On the code before the fix /proc/kmsg hangs: subprocess.run kills it at the timeout.
    r = run_sigvisor("-c", path, "-b", "127.0.0.1:0", "--bpf", "off", "--control",
                     os.path.join(tmpdir_short, "c.sock"), *loop_args(),
                     *(["--check"] if check else []), timeout=8)
    took = time.monotonic() - t0
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert (f"{path}: on {fs}, a pseudo-filesystem; a config file must be on a real "
            "filesystem") in r.stderr, r.stderr
    assert took < 2, took


def test_hup_to_a_config_now_on_proc_kmsg_keeps_serving(start, tmpdir_short):
    good = os.path.join(tmpdir_short, "good.conf")
    with open(good, "w") as f:
        f.write("workers = 2\ngraceful-timeout = 5\n")
    link = os.path.join(tmpdir_short, "sigvisor.conf")
    point(link, good)
    sv = start("-c", link)
    before = sorted(w["pid"] for w in sv.wait_workers(2))

    point(link, "/proc/kmsg")
    sv.kill(signal.SIGHUP)
    msg = sv.wait_log(r"reload: (.*); keeping the current configuration", timeout=5)[0]
    assert msg == f"{link}: on procfs, a pseudo-filesystem; a config file must be on a " \
                  "real filesystem", msg
    st = sv.status()
    assert st["generation"] == 1 and not st["reloading"], st
    assert sorted(w["pid"] for w in st["workers"]) == before
    assert sv.get("/")[0] == 200
    t0 = time.monotonic()
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit(timeout=8) == 0
    assert time.monotonic() - t0 < 5


# -- the pidfile and the log file in a directory others can write ----------------------

def as_nobody(*argv):
    """Run argv as uid/gid 65534: the neighbour who can write the shared directory."""
    def drop():
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    subprocess.run(list(argv), check=True, preexec_fn=drop, timeout=10)


class Shared:
    """tmpdir/pub, mode 1777 like /tmp, and tmpdir/victim, a root file with content."""

    def __init__(self, tmpdir, sticky=True):
        os.chmod(tmpdir, 0o755)  # mkdtemp's 0700 would keep nobody out
        self.dir = os.path.join(tmpdir, "pub")
        os.mkdir(self.dir)
        os.chmod(self.dir, 0o1777 if sticky else 0o777)
        self.victim = os.path.join(tmpdir, "victim")
        with open(self.victim, "w") as f:
            f.write("precious\n")
        os.chmod(self.victim, 0o644)
        self.before = os.stat(self.victim)

    def path(self, name):
        return os.path.join(self.dir, name)

    def plant_link(self, name):
        as_nobody("ln", "-s", self.victim, self.path(name))
        return self.path(name)

    def plant_file(self, name):
        as_nobody("sh", "-c", 'echo theirs > "$1"', "sh", self.path(name))
        return self.path(name)

    def assert_untouched(self):
        with open(self.victim) as f:
            assert f.read() == "precious\n"
        st = os.stat(self.victim)
        assert (st.st_size, st.st_mtime_ns, st.st_uid) == \
            (self.before.st_size, self.before.st_mtime_ns, 0)


def run_arbiter(tmpdir, *args, check=False):
    return run_sigvisor("-b", "127.0.0.1:0", "--bpf", "off", "--control",
                        os.path.join(tmpdir, "c.sock"), *loop_args(), *args,
                        *(["--check"] if check else []), timeout=8)


@pytest.mark.parametrize("check", [False, True], ids=["start", "check"])
def test_a_pidfile_link_planted_by_another_user_is_refused(check, tmpdir_short):
    pub = Shared(tmpdir_short)
    pid = pub.plant_link("app.pid")
    r = run_arbiter(tmpdir_short, "--pid", pid, check=check)
    assert r.returncode == (1 if check else 2), (r.returncode, r.stderr)
    assert (f"--pid {pid}: is a symbolic link of uid {NOBODY}'s, in {pub.dir}, a directory "
            "others can write: not ours to replace") in r.stderr, r.stderr
    pub.assert_untouched()
    assert os.readlink(pid) == pub.victim


def test_a_pidfile_of_another_user_or_in_a_dir_without_sticky_bit_is_refused(tmpdir_short):
    pub = Shared(tmpdir_short)
    theirs = pub.plant_file("app.pid")
    r = run_arbiter(tmpdir_short, "--pid", theirs)
    assert r.returncode == 2, r.stderr
    assert (f"--pid {theirs}: belongs to uid {NOBODY}, not to us (uid 0), in {pub.dir}, a "
            "directory others can write: not ours to write") in r.stderr, r.stderr
    with open(theirs) as f:
        assert f.read() == "theirs\n"

    os.chmod(pub.dir, 0o777)
    fresh = pub.path("fresh.pid")
    r = run_arbiter(tmpdir_short, "--pid", fresh)
    assert r.returncode == 2, r.stderr
    assert (f"--pid {fresh}: directory {pub.dir} is writable by others (mode 0777) and not "
            "sticky: anyone could put a link at the path") in r.stderr, r.stderr
    assert not os.path.lexists(fresh)


def test_a_pidfile_in_a_sticky_directory_is_written_by_rename(start, tmpdir_short):
    pub = Shared(tmpdir_short)
    pid = pub.path("app.pid")
    # A stale pidfile of ours: replaced.
    with open(pid, "w") as f:
        f.write("1\n")
    sv = start("--pid", pid)
    st = os.lstat(pid)
    assert stat.S_ISREG(st.st_mode) and st.st_uid == 0
    with open(pid) as f:
        assert f.read() == f"{sv.pid}\n"
    assert [n for n in os.listdir(pub.dir)] == ["app.pid"]  # no temporary left
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0
    assert not os.path.lexists(pid)


def test_usr2_with_a_pidfile_link_planted_meanwhile_leaves_the_victim(start, tmpdir_short):
    pub = Shared(tmpdir_short)
    pid = pub.path("app.pid")
    sv, path = start_from(start, tmpdir_short, "-w", "1", "--pid", pid)
    sv.wait_workers(1)
    # The pidfile goes (a careless cleanup), the neighbour's link takes its place.
    os.unlink(pid)
    pub.plant_link("app.pid")
    replace_binary(path)
    sv.kill(signal.SIGUSR2)
    sv.wait_log(r"upgrade refused: .*--check exited with status 1")
    sv.wait_log(re.escape(f"--pid {pid}: is a symbolic link of uid {NOBODY}'s"))
    pub.assert_untouched()
    assert sv.status()["generation"] == 1 and sv.get("/")[0] == 200
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0
    # Not followed at exit either: the link stays, the victim too.
    assert os.readlink(pid) == pub.victim
    pub.assert_untouched()


def test_a_log_file_link_planted_by_another_user_is_refused(tmpdir_short):
    pub = Shared(tmpdir_short)
    log = pub.plant_link("app.log")
    r = run_arbiter(tmpdir_short, "--log-file", log)
    assert r.returncode == 2, r.stderr
    assert (f"--log-file {log}: is a symbolic link; sigvisor never writes through one") \
        in r.stderr, r.stderr
    pub.assert_untouched()


def test_a_log_file_link_in_a_directory_of_ours_is_followed(start, tmpdir_short):
    """/dev/stderr (a link in /dev, which only root can write), or an admin's own link in
    a directory of ours: followed, as a user asking for it expects."""
    target = os.path.join(tmpdir_short, "real.log")
    own = os.path.join(tmpdir_short, "own")
    os.mkdir(own, 0o755)
    os.symlink(target, os.path.join(own, "app.log"))
    sv = start("-w", "1", "--log-file", os.path.join(own, "app.log"), wait_ready=False)
    wait_for(lambda: os.path.exists(target) and "listening on http://" in open(target).read(),
             what="the log through the admin's link")
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0
    sv = start("-w", "1", "--log-file", "/dev/stderr")  # stderr is the fixture's log file
    sv.wait_workers(1)
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0


def test_usr1_reopen_refuses_a_planted_link_and_a_file_of_theirs(start, tmpdir_short):
    pub = Shared(tmpdir_short)
    log = pub.path("app.log")
    sv = start("-w", "1", "--log-file", log, wait_ready=False)
    sv.port = int(wait_for(lambda: os.path.exists(log) and re.findall(
        r"listening on http://127\.0\.0\.1:(\d+)", open(log).read()), what="the log file")[0])
    wait_for(lambda: os.path.exists(sv.control), what="control socket")
    sv.wait_workers(1)
    rotated = log + ".1"
    os.rename(log, rotated)  # logrotate, before the USR1 that reopens
    pub.plant_link("app.log")
    sv.kill(signal.SIGUSR1)
    wait_for(lambda: f"cannot reopen {log}, keeping the old one: is a symbolic link; sigvisor "
             "never writes through one" in open(rotated).read(), what="the refusal in the log")
    pub.assert_untouched()
    assert sv.get("/")[0] == 200

    os.unlink(log)
    pub.plant_file("app.log")
    sv.kill(signal.SIGUSR1)
    wait_for(lambda: f"cannot reopen {log}, keeping the old one: belongs to uid {NOBODY}, not "
             "to us (uid 0)" in open(rotated).read(), what="the second refusal")
    with open(log) as f:
        assert f.read() == "theirs\n"
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0
    pub.assert_untouched()


# -- the eBPF pin directory -------------------------------------------------------------

def status_text(sv):
    r = subprocess.run([SIGVISOR, "status", "--control", sv.control], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_a_second_arbiter_on_the_same_pin_dir_says_why_not_pinned(bpf):  # noqa: F811
    first = bpf.start("-w", "1")
    first.wait_workers(1)
    second = bpf.start("-w", "1")
    second.wait_workers(1)
    why = f"{bpf.pin} is in use by another running sigvisor (give this one its own " \
          "--bpf-pin DIR)"
    text = status_text(second)
    assert f"bpf: on, maps not pinned: {why}\n" in text, text
    assert "maps pinned in \n" not in text
    st = second.status()
    assert (st["bpf"]["pin"], st["bpf"]["pin_reason"]) == ("", why)
    assert f"bpf: on, maps pinned in {bpf.pin}\n" in status_text(first)
    second.kill(signal.SIGTERM)
    assert second.wait_exit() == 0
    bpf.stop(first)


def test_a_pin_dir_of_another_uid_is_refused(bpf):  # noqa: F811
    os.mkdir(bpf.pin, 0o755)
    os.chown(bpf.pin, NOBODY, NOBODY)
    sv = bpf.start("-w", "1")
    sv.wait_workers(1)
    why = f"{bpf.pin} belongs to uid {NOBODY}, not to us (uid 0): its pins are not ours to " \
          "replace"
    sv.wait_log(re.escape(f"BPF maps not pinned, counting for status only: {why}"))
    assert why in status_text(sv)
    st = os.stat(bpf.pin)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (NOBODY, 0o755)  # not chmod'ed 0700
    assert os.listdir(bpf.pin) == []
    sv.kill(signal.SIGTERM)
    assert sv.wait_exit() == 0
    assert os.path.isdir(bpf.pin)  # theirs: left alone
    os.rmdir(bpf.pin)
