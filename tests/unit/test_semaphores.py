"""A stopped process tree with multiprocessing queues (as a Parsl worker pool has) leaves no semaphore in /dev/shm.

Python's resource tracker ignores SIGTERM and unlinks the tree's named semaphores once the tree is gone; a SIGKILL
sent to it with the rest (a worker still busy after the grace) left them in /dev/shm for good.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import pytest

from bundle.processes import proctree

POOL = textwrap.dedent(
    """
    import multiprocessing, os, signal, time


    def busy_worker():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # still at work when the grace ends
        print(os.getpid(), flush=True)
        time.sleep(600)


    if __name__ == "__main__":
        ctx = multiprocessing.get_context("spawn")  # as Parsl's process_worker_pool
        queue = ctx.Queue()
        locks = (queue._rlock, queue._wlock, queue._sem)
        print(" ".join(lock._semlock.name for lock in locks), flush=True)  # before the worker's line
        worker = ctx.Process(target=busy_worker)
        worker.start()
        time.sleep(600)
    """
)


@pytest.mark.parametrize("grace", [0.5, 0.0])
def test_a_stopped_pool_leaves_no_semaphore(grace: float, tmp_path: pathlib.Path) -> None:
    (tmp_path / "pool.py").write_text(POOL)
    with subprocess.Popen(
        [sys.executable, "pool.py"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as pool:
        try:
            names = pool.stdout.readline().split()  # type: ignore[union-attr]
            worker = pool.stdout.readline()  # type: ignore[union-attr]  # printed once it ignores SIGTERM
            semaphores = [pathlib.Path("/dev/shm") / ("sem." + name.lstrip("/")) for name in names]
            assert semaphores and all(path.exists() for path in semaphores)
            pids = proctree.descendants([pool.pid])
            assert int(worker) in pids
            trackers = [pid for pid in pids if proctree.command_mentions(pid, "resource_tracker")]
            assert len(trackers) == 1, "the pool's resource tracker did not start"
            proctree.terminate(pids, grace=grace)
            assert not [path for path in semaphores if path.exists()], "semaphores left in /dev/shm"
            assert not [pid for pid in pids if proctree.alive(pid)], "a process of the stopped tree is left"
        finally:
            pool.kill()
