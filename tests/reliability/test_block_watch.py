"""BlockWatch on real processes (no engine): a lost pool's leftovers are stopped, a cancelled block is left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import typing as t

import psutil

from bundle.endpoints.local.blocks import BlockWatch
from tests.polling import wait_for

# A stand-in worker pool: its command line names it, and it starts a long-lived "app".
POOL = "import subprocess, time  # process_worker_pool stand-in\nsubprocess.Popen(['sleep', '300'])\ntime.sleep(300)"


class FakeProvider:
    def __init__(self) -> None:
        self.resources: dict[str, dict[str, t.Any]] = {}


def _block() -> subprocess.Popen[bytes]:
    # like Parsl's LocalProvider: the block's shell in a process group of its own
    return subprocess.Popen(["bash", "-c", f'{sys.executable} -c "{POOL}"; echo $?'], start_new_session=True)


def _tree(pid: int) -> list[psutil.Process]:
    return wait_for(lambda: [p for p in psutil.Process(pid).children(recursive=True) if p.name() == "sleep"], 10) and (
        psutil.Process(pid).children(recursive=True)
    )


def test_lost_pool_leftovers_are_stopped() -> None:
    shell = _block()
    try:
        provider = FakeProvider()
        provider.resources["7"] = {"remote_pid": shell.pid}
        watch = BlockWatch(provider)
        procs = _tree(shell.pid)
        app = next(p for p in procs if p.name() == "sleep")
        pool = next(p for p in procs if "process_worker_pool" in " ".join(p.cmdline()))
        assert watch.check() == []
        pool.kill()
        lost = wait_for(watch.check, 10, period=0.2)
        assert [b.job_id for b in lost] == ["7"] and lost[0].stopped >= 1
        assert wait_for(lambda: not app.is_running() or app.status() == psutil.STATUS_ZOMBIE, 10)
        assert watch.check() == [] and len(watch.lost) == 1  # reported once
    finally:
        _stop(shell)


def test_cancelled_block_is_left_alone() -> None:
    shell = _block()
    try:
        provider = FakeProvider()
        provider.resources["8"] = {"remote_pid": shell.pid}
        watch = BlockWatch(provider)
        procs = _tree(shell.pid)
        app = next(p for p in procs if p.name() == "sleep")
        watch.check()
        provider.resources["8"]["cancelled"] = True  # Parsl scaled the block in: not a loss
        next(p for p in procs if "process_worker_pool" in " ".join(p.cmdline())).kill()
        time.sleep(0.5)
        assert watch.check() == [] and app.is_running()
    finally:
        _stop(shell)


def _stop(shell: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(shell.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    shell.wait(10)
