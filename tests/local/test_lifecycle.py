"""Start failures end in bounded time with the cause; no process outlives shutdown or a killed driver."""

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import psutil
import pytest
from globus_compute_sdk import MPIFunction
from globus_compute_sdk.errors import TaskExecutionFailed

from bundle.endpoints.local import LocalEndpoint
from bundle.endpoints.local.reaper import current_token
from bundle.errors import EndpointStartError
from tests.conftest import cmdlines, descendants, engine_tree, wait_until_gone, watcher_log
from tests.polling import wait_for


def add(a, b):
    return a + b


def test_failing_worker_init_fails_pending_and_new_tasks_with_its_message(tmp_path):
    ep = LocalEndpoint(
        user_endpoint_config={
            "engine_type": "GlobusComputeEngine",
            "worker_init": "echo module-xyz-missing >&2; exit 3",
        },
        run_dir=tmp_path,
    )
    t0 = time.monotonic()
    try:
        fut = ep.submit(add, 1, 2)
        with pytest.raises((TaskExecutionFailed, EndpointStartError), match="module-xyz-missing"):
            fut.result(timeout=90)
        assert time.monotonic() - t0 < 60
        with pytest.raises((TaskExecutionFailed, EndpointStartError), match="module-xyz-missing|failed"):
            ep.submit(add, 3, 4).result(timeout=30)
    finally:
        ep.shutdown(wait=False, cancel_futures=True)


def test_hanging_worker_init_hits_the_start_timeout(tmp_path):
    ep = LocalEndpoint(
        user_endpoint_config={"engine_type": "GlobusComputeEngine", "worker_init": "echo stuck-here >&2; sleep 600"},
        run_dir=tmp_path,
        start_timeout=5,
    )
    t0 = time.monotonic()
    try:
        fut = ep.submit(add, 1, 2)
        with pytest.raises(EndpointStartError, match=r"did not connect within 5 s(.|\n)*stuck-here"):
            fut.result(timeout=60)
        assert time.monotonic() - t0 < 30
        with pytest.raises(EndpointStartError):
            ep.submit(add, 1, 1).result(timeout=5)
        started = [p for p in descendants(os.getpid()) if "stuck-here" in " ".join(p.cmdline()) or p.name() == "sleep"]
    finally:
        ep.shutdown(wait=False, cancel_futures=True)
    assert wait_until_gone([p.pid for p in started], 10) == [], "sleep in worker_init must not outlive shutdown"


def test_missing_mpi_launcher_is_named(tmp_path):
    ep = LocalEndpoint(
        user_endpoint_config={"mpi_launcher": "aprun"},
        resource_specification={"num_nodes": 1, "ranks_per_node": 1, "num_ranks": 1},
        run_dir=tmp_path,
    )
    try:
        fut = ep.submit(MPIFunction("hostname"))
        with pytest.raises((TaskExecutionFailed, EndpointStartError), match="'aprun' not found on PATH"):
            fut.result(timeout=90)
    finally:
        ep.shutdown(wait=False, cancel_futures=True)


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.NoSuchProcess:  # exited while being looked at (an MPI launcher's short-lived helpers)
        return ""


def _wait_for_ranks(root: int, token: str, count: int, before: set[int] = frozenset(), timeout: float = 60) -> list:
    deadline = time.monotonic() + timeout
    procs: list = []
    while time.monotonic() < deadline:
        procs = [p for p in engine_tree(root, token) if p.pid not in before]
        if sum(1 for p in procs if _name(p) == "sleep") >= count:
            break
        time.sleep(0.2)
    return procs


def test_shutdown_leaves_no_process(tmp_path):
    before = {p.pid for p in engine_tree(os.getpid(), current_token())}
    ep = LocalEndpoint(user_endpoint_config={"max_workers_per_block": 2}, run_dir=tmp_path)
    ep.resource_specification = {"num_nodes": 1, "ranks_per_node": 2, "num_ranks": 2}
    running = ep.submit(MPIFunction("sleep 300"))
    procs = _wait_for_ranks(os.getpid(), current_token(), 2, before)
    names = cmdlines(procs)
    for part in ("interchange", "process_worker_pool", "mpiexec.gforker", "sleep 300"):
        assert part in names, f"{part} not among the engine's processes:\n{names}"
    ep.shutdown(wait=False, cancel_futures=True)
    assert running.done()
    assert wait_until_gone([p.pid for p in procs], 10) == []


DRIVER = textwrap.dedent(
    """
    import os, sys, time
    from globus_compute_sdk import MPIFunction
    from bundle.endpoints.local import LocalEndpoint
    run_dir = None if sys.argv[1] == "-" else sys.argv[1]  # "-": a run folder of the endpoint's own, in TMPDIR
    ep = LocalEndpoint(user_endpoint_config={"max_workers_per_block": 2}, run_dir=run_dir)
    ep.resource_specification = {"num_nodes": 1, "ranks_per_node": 2, "num_ranks": 2}
    futs = [ep.submit(MPIFunction("sleep 300")) for _ in range(2)]
    print("SUBMITTED", os.environ["LIBE_GC_BUNDLE_OWNER"], flush=True)
    for f in futs:
        f.result()
    """
)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_killed_driver_leaves_no_process(tmp_path, sig):
    """A driver ended by a signal leaves no process and nothing in its TMPDIR.

    With SIGKILL the endpoint makes its own run folder in TMPDIR (the watcher removes it); otherwise the run
    folder is a deep one of the test's, too long for the worker pools' sockets, so their ``TMPDIR`` is a short
    folder the endpoint makes in TMPDIR (removed by the driver, or by the watcher).
    """
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    tmpdir = pathlib.Path(tempfile.mkdtemp(prefix="kd-"))  # short: the fallback's sockets must fit
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TMPDIR=str(tmpdir))
    run_dir = "-" if sig == signal.SIGKILL else str(tmp_path / ("run-" + "x" * 80))
    driver = subprocess.Popen([sys.executable, str(script), run_dir], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = driver.stdout.readline()
        assert line.startswith("SUBMITTED"), line
        procs = _wait_for_ranks(driver.pid, line.split()[1], 4)  # two tasks x two ranks
        names = cmdlines(procs)
        for part in ("interchange", "process_worker_pool", "mpiexec.gforker"):
            assert part in names, f"{part} not among the driver's processes:\n{names}"
        assert sum(1 for p in procs if _name(p) == "sleep") == 4, names
        made = sorted(p.name for p in tmpdir.iterdir())
        assert made and all(n.startswith(("libe-gc-local-", "libe-gc-tmp-")) for n in made), made
        driver.send_signal(sig)
        driver.wait(30)
        t0 = time.monotonic()
        left = wait_until_gone([p.pid for p in procs], 30)
        assert left == [], (
            f"still alive {time.monotonic() - t0:.1f} s after {sig!r}: {cmdlines(p for p in procs if p.pid in left)}\n"
            f"the driver's watcher's log:\n{watcher_log(line.split()[1])}"
        )
        assert wait_for(lambda: not any(tmpdir.iterdir()), 30, period=0.2), (
            f"left in TMPDIR after {sig!r}: {sorted(str(p) for p in tmpdir.rglob('*'))}"
        )
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(10)
        driver.stdout.close()
        shutil.rmtree(tmpdir, ignore_errors=True)
