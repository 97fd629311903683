"""The ``slurm`` template on a real Slurm: the engine submits a batch job and tasks run inside it."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import textwrap
import time
import typing as t

import pytest
from globus_compute_sdk import MPIFunction

from bundle.endpoints.local import LocalEndpoint
from tests.slurm.conftest import our_jobs, wait_no_jobs

pytestmark = pytest.mark.usefixtures("no_jobs_left")

# Rank 0 prints every rank's line, gathered over MPI: lines printed by several ranks at once can interleave.
RANKS = (
    "python -c 'import os; from mpi4py import MPI; c = MPI.COMM_WORLD; "
    'lines = c.gather("%d %d %s" % (c.Get_rank(), c.Get_size(), os.environ.get("SLURM_JOB_ID")), root=0); '
    "c.Get_rank() or print(chr(10).join(lines), flush=True)'"
)


def _options(**extra: t.Any) -> dict[str, t.Any]:
    # "lo": the workers run on this machine, the one node of this Slurm.
    return {"partition": "debug", "walltime": "00:10:00", "network_interface": "lo", **extra}


def _endpoint(tmp_path, **extra: t.Any) -> LocalEndpoint:
    ep = LocalEndpoint(template="slurm", user_endpoint_config=_options(**extra), run_dir=tmp_path / "run")
    ep.start()
    assert ep.wait_ready(120), "the Slurm job's workers did not connect"
    return ep


def _job_ids() -> set[str]:
    return {job_id for job_id, _, _ in our_jobs()}


@pytest.mark.parametrize("launcher", ["mpiexec", "srun"])
def test_mpi_task_runs_inside_the_slurm_job(tmp_path, launcher):
    ep = _endpoint(tmp_path, mpi_launcher=launcher)
    try:
        jobs = _job_ids()
        assert len(jobs) == 1, jobs
        ep.resource_specification = {"num_nodes": 1, "ranks_per_node": 2, "num_ranks": 2}
        result = ep.submit(MPIFunction(RANKS)).result(timeout=120)
        assert result.returncode == 0, result.stderr
        lines = sorted(result.stdout.split("\n"))
        lines = [line for line in lines if line.strip()]
        (job,) = jobs
        assert lines == [f"0 2 {job}", f"1 2 {job}"], result.stdout
    finally:
        ep.shutdown(wait=False, cancel_futures=True)
    assert wait_no_jobs() == []


def test_shutdown_cancels_the_job(tmp_path):
    ep = _endpoint(tmp_path, mpi_launcher="mpiexec")
    (job,) = _job_ids()
    ep.shutdown()
    assert wait_no_jobs() == []
    state = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    # Gone already, or recorded as cancelled, never completed by running out of walltime.
    assert "JobState=RUNNING" not in state and "JobState=PENDING" not in state


@pytest.mark.parametrize("launcher", ["mpiexec", "srun"])
def test_slots_per_node_packs_one_rank_tasks_onto_the_node(tmp_path, launcher):
    ep = _endpoint(tmp_path, mpi_launcher=launcher, slots_per_node=2)
    try:
        ep.resource_specification = {"num_nodes": 1, "ranks_per_node": 1, "num_ranks": 1}
        cmd = "python -c 'import time; a = time.time(); time.sleep(3); print(a, time.time())'"
        futures = [ep.submit(MPIFunction(cmd)) for _ in range(4)]
        spans = []
        for fut in futures:
            result = fut.result(timeout=180)
            assert result.returncode == 0, result.stderr
            start, end = (float(v) for v in result.stdout.split())
            spans.append((start, end))
    finally:
        ep.shutdown(wait=False, cancel_futures=True)
    spans.sort()
    # Two slots on the one node: some tasks ran at the same time, never more than two at once.
    overlapping = [(a, b) for i, a in enumerate(spans) for b in spans[i + 1 :] if b[0] < a[1]]
    assert overlapping, spans
    for start, _ in spans:
        running = sum(1 for s, e in spans if s <= start < e)
        assert running <= 2, spans


def test_without_packing_each_task_has_the_node(tmp_path):
    ep = _endpoint(tmp_path, mpi_launcher="mpiexec", max_workers_per_block=2)
    try:
        ep.resource_specification = {"num_nodes": 1, "ranks_per_node": 1, "num_ranks": 1}
        cmd = "python -c 'import time; a = time.time(); time.sleep(2); print(a, time.time())'"
        futures = [ep.submit(MPIFunction(cmd)) for _ in range(3)]
        spans = sorted(tuple(float(v) for v in f.result(timeout=180).stdout.split()) for f in futures)
    finally:
        ep.shutdown(wait=False, cancel_futures=True)
    # One node, one slot: Parsl's MPI mode runs the tasks one after the other.
    for a, b in itertools.pairwise(spans):
        assert b[0] >= a[1], spans


def _where() -> dict[str, str | None]:
    import os
    import socket

    return {"job": os.environ.get("SLURM_JOB_ID"), "host": socket.gethostname(), "pid": str(os.getpid())}


def test_python_tasks_on_globus_compute_engine(tmp_path):
    ep = _endpoint(tmp_path, engine_type="GlobusComputeEngine", max_workers_per_node=2)
    try:
        (job,) = _job_ids()
        results = [f.result(timeout=120) for f in [ep.submit(_where) for _ in range(6)]]
        assert sum(x * x for x in range(10)) == ep.submit(sum, [x * x for x in range(10)]).result(timeout=60)
    finally:
        ep.shutdown(wait=False, cancel_futures=True)
    assert {r["job"] for r in results} == {job}
    assert len({r["pid"] for r in results}) <= 2


DRIVER = textwrap.dedent(
    """
    import json, sys
    from bundle.endpoints.local import LocalEndpoint
    ep = LocalEndpoint(template="slurm", user_endpoint_config=json.loads(sys.argv[1]), run_dir=sys.argv[2])
    ep.start()
    assert ep.wait_ready(120)
    print("ready", flush=True)
    sys.stdin.read()
    """
)


def test_watcher_cancels_the_job_when_the_driver_is_killed(tmp_path):
    before = _job_ids()
    with subprocess.Popen(
        [sys.executable, "-c", DRIVER, json.dumps(_options(mpi_launcher="mpiexec")), str(tmp_path / "run")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as driver:
        try:
            assert driver.stdout is not None
            assert driver.stdout.readline().strip() == "ready"
            jobs = _job_ids() - before
            assert len(jobs) == 1, jobs
        finally:
            driver.send_signal(signal.SIGKILL)
            driver.wait(30)
    # No atexit handler ran; only the watcher can have cancelled the job.
    deadline = time.monotonic() + 90
    while jobs & _job_ids() and time.monotonic() < deadline:
        time.sleep(1)
    assert not (jobs & _job_ids()), "the killed driver's Slurm job is still queued or running"


def test_without_exclusive_a_two_rank_srun_fails_which_is_why_exclusive_is_the_default(tmp_path):
    ep = _endpoint(tmp_path, mpi_launcher="srun", exclusive=False)
    try:
        ep.resource_specification = {"num_nodes": 1, "ranks_per_node": 2, "num_ranks": 2}
        result = ep.submit(MPIFunction(RANKS)).result(timeout=120)
    finally:
        ep.shutdown(wait=False, cancel_futures=True)
    assert result.returncode != 0
    assert "More processors requested than permitted" in result.stderr, result.stderr
