"""A block shell's pid reused by another process (Linux has 32768 pids here) is never signalled as the engine's."""

import subprocess
import threading
import types

from bundle.endpoints.local.engine_host import EngineHost
from bundle.processes import proctree


def _host_with_block(pid: int) -> EngineHost:
    host = EngineHost.__new__(EngineHost)  # only what _root_pids reads: no engine is started
    provider = types.SimpleNamespace(resources={"0": {"job_id": "0", "remote_pid": pid}})
    host.engine = types.SimpleNamespace(executor=types.SimpleNamespace(interchange_proc=None, provider=provider))
    host._lock = threading.RLock()
    host._root_starts = {}
    return host


def test_a_block_shell_first_seen_stays_a_root():
    proc = subprocess.Popen(["sleep", "30"])
    try:
        host = _host_with_block(proc.pid)
        assert host._root_pids() == [proc.pid]
        assert host._root_pids() == [proc.pid]
    finally:
        proc.kill()
        proc.wait()


def test_a_reused_pid_is_not_a_root():
    proc = subprocess.Popen(["sleep", "30"])
    try:
        host = _host_with_block(proc.pid)
        # The block's shell seen earlier had this pid but started at another time: it ended and the pid was reused.
        host._root_starts[proc.pid] = proctree.start_time(proc.pid) - 100.0
        assert host._root_pids() == []
        assert proctree.alive(proc.pid), "the other process must not have been touched"
    finally:
        proc.kill()
        proc.wait()


def test_a_root_read_a_second_off_is_still_the_same_process():
    """psutil's start times are read in two processes (driver and watcher) against boot times each read once.

    The kernel computes ``btime`` from the wall clock when it is read, so a clock step between the driver's
    reading and the watcher's shifts one by a whole second: the watcher must still sweep that root (an
    interchange, whose ``setproctitle`` hides its environment's token, was left running once).
    """
    from bundle.endpoints.local import reaper

    proc = subprocess.Popen(["sleep", "30"])
    try:
        start = proctree.start_time(proc.pid)
        assert start is not None
        for shifted, swept in ((start - 1.0, True), (start + 1.0, True), (start - 100.0, False)):
            assert (proc.pid in reaper.targets("no-such-token", {proc.pid: shifted})) is swept, shifted
            assert proctree.same_process(proc.pid, shifted) is swept, shifted
    finally:
        proc.kill()
        proc.wait()
