"""Built-in workers are named as nginx names its own: "sigvisor: worker 0 (gen 1)" in
ps (argv) and "sigvisor-w0" as comm (ss -p, top, the probes' events), not "exe"
(they are exec'd through /proc/self/exe). A COMMAND worker keeps its own names."""
import signal

from conftest import wait_for


def names(pid):
    with open(f"/proc/{pid}/comm") as f:
        comm = f.read().strip()
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        args = [a.decode() for a in f.read().split(b"\0") if a]
    return comm, args


def test_builtin_workers_are_named_by_slot_and_generation(start):
    sv = start("-w", "2")
    ws = sv.wait_workers(2)
    for w in ws:
        assert names(w["pid"]) == (f"sigvisor-w{w['id']}",
                                   [f"sigvisor: worker {w['id']} (gen 1)"])
    sv.kill(signal.SIGHUP)
    wait_for(lambda: (lambda s: s["generation"] == 2 and not s["reloading"] and
                      len(s["workers"]) == 2)(sv.status()), what="generation 2")
    for w in sv.workers():
        assert names(w["pid"]) == (f"sigvisor-w{w['id']}",
                                   [f"sigvisor: worker {w['id']} (gen 2)"])
    with open(f"/proc/{sv.pid}/comm") as f:
        assert f.read().strip() == "sigvisor"


def test_command_workers_keep_their_own_names(start):
    sv = start("-w", "1", "--ready-mode", "start", command=["sleep", "600"])
    [w] = sv.wait_workers(1)
    wait_for(lambda: names(w["pid"]) == ("sleep", ["sleep", "600"]), what="sleep exec'd")
