"""TTIN and TTOU sent while a reload is on trial move the pool's size; if the reload is
abandoned, the generation that goes on serving takes the same step: the signals are
not lost with the reload."""
import os
import signal

from conftest import wait_for
from test_reload_cmd import start_flagged, write


def test_ttin_during_an_abandoned_reload_is_kept(start, tmpdir_short):
    sv = start_flagged(start, tmpdir_short, "-w", "1", "--ready-timeout", "3")
    sv.wait_workers(1)
    write(os.path.join(tmpdir_short, "FLAG"), "")  # the next generation never gets ready
    sv.kill(signal.SIGHUP)
    wait_for(lambda: sv.status()["reloading"], what="the reload on trial")
    for n in (2, 3):  # one at a time: each read before the next is sent
        sv.kill(signal.SIGTTIN)
        wait_for(lambda: sv.status()["target"] == n, what=f"target {n}")
    wait_for(lambda: sv.status()["reload_outcomes"][-1:] and
             sv.status()["reload_outcomes"][-1]["result"] == "abandoned",
             timeout=20, what="the reload abandoned")
    sv.wait_log(r"reload failed: the pool size changed by \+2 during it \(TTIN/TTOU\); "
                r"generation 1 goes from 1 to 3 workers")
    st = sv.status()
    assert st["generation"] == 1 and st["target"] == 3, st
    os.unlink(os.path.join(tmpdir_short, "FLAG"))
    wait_for(lambda: len([w for w in sv.workers("ready") if w["generation"] == 1]) == 3,
             timeout=20, what="generation 1 at 3 workers")
