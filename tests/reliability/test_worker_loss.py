"""Worker loss: SIGKILL the engine's worker pool while sims run, in GC-only and executor mode.

The local endpoint notices the lost pool's block, stops what it left running (workers, mpiexec,
ranks) and Parsl starts a new block; tasks that were on the lost pool fail with ``ManagerLost``
after ``heartbeat_threshold`` seconds, or are retried on the new block when
``max_retries_on_system_failure`` allows.  Every sim ends in the history exactly once.
"""

from __future__ import annotations

import collections
import os
import re
import sys
import time
import traceback
import typing as t

import numpy as np
import psutil
import pytest

import bundle
from bundle import GlobusComputeExecutor
from bundle.executor.remote import MARKER_ENV
from tests.ensembles import executor_libe_specs
from tests.executor.conftest import mpi_probe  # noqa: F401  (the compiled MPI probe app fixture)
from tests.gconly.helpers import REPO, run_with, uniform_specs
from tests.reliability import fault_sims
from tests.reliability.fault_helpers import (
    FAST_HEARTBEAT,
    PoolKiller,
    block_processes,
    host_of,
    probe_ensemble,
    record,
    started_local,
    wait_for,
)

STATS_STATUS = re.compile(r"^Worker +\d+: sim_id +(\d+): sim Time: .* Status: (.+)$")


def _stats(path: t.Any) -> dict[int, list[str]]:
    seen: dict[int, list[str]] = collections.defaultdict(list)
    for line in (path / "libE_stats.txt").read_text().splitlines():
        m = STATS_STATUS.match(line)
        if m:
            seen[int(m.group(1))].append(m.group(2))
    return seen


def _starts(mark_dir: t.Any) -> collections.Counter[int]:
    return collections.Counter(int(p.name.split("-")[1]) for p in mark_dir.glob("start-*"))


@pytest.mark.parametrize("retries", [0, 1])
def test_gconly_pool_killed_mid_run(tmp_path: t.Any, monkeypatch: pytest.MonkeyPatch, retries: int) -> None:
    monkeypatch.chdir(tmp_path)
    mark_dir = tmp_path / "marks"
    mark_dir.mkdir()
    config = {
        "engine_type": "GlobusComputeEngine",
        "max_workers_per_node": 2,
        "max_retries_on_system_failure": retries,
        "worker_init": f"export PYTHONPATH={REPO}${{PYTHONPATH:+:$PYTHONPATH}}",
        **FAST_HEARTBEAT,
    }
    ep = started_local(config, tmp_path / "engine")
    host = host_of(ep)
    nworkers, sim_max = 4, 16
    specs = uniform_specs(fault_sims.marked_sleep, nworkers, sim_max)
    specs["sim_specs"]["in"] = ["x", "sim_id"]
    specs["sim_specs"]["user"] = {"sleep": 1.5, "mark_dir": str(mark_dir)}
    # kill once four sims have started: two ran to the end, two are running on the pool
    killer = PoolKiller(host, lambda: sum(_starts(mark_dir).values()) >= 4)
    killer.start()
    t0 = time.monotonic()
    H, _, flag = run_with(
        bundle.libE,
        specs,
        {"nworkers": nworkers, "workflow_dir_path": str(tmp_path)},
        gc_specs={"user_endpoint_config": config},
    )
    elapsed = time.monotonic() - t0
    killer.join(5)
    assert killer.error is None and killer.killed_at is not None, killer.error
    assert flag == 0

    # every sim exactly once in the history, and once in libE_stats.txt
    done = H[H["sim_ended"]]
    assert len(done) == sim_max and len(np.unique(done["sim_id"])) == sim_max
    stats = _stats(tmp_path)
    assert sorted(stats) == sorted(int(i) for i in done["sim_id"]) and all(len(v) == 1 for v in stats.values())

    starts = _starts(mark_dir)
    failed = sorted(int(i) for i in done["sim_id"][np.isnan(done["f"])])
    assert not killer.survivors(), f"processes of the killed pool left running: {killer.survivors()}"
    assert host.lost_blocks, "the lost block should have been noticed"
    noticed = host.lost_blocks[0].noticed - killer.killed_at
    retried = sorted(i for i, n in starts.items() if n > 1)
    if retries == 0:
        # the sims running on the pool failed (TASK_FAILED, NaN output); the others completed
        assert failed, "sims running on the killed pool must fail"
        assert len(failed) <= 2 and not retried
        assert all(stats[i] == ["Task Failed during run"] for i in failed)
        ok = done[~np.isnan(done["f"])]
        assert len(ok) == sim_max - len(failed) and np.allclose(ok["f"], ok["x"][:, 0])
        error_files = sorted((tmp_path / "gconly_sim_errors").glob("sim_*.txt"))
        assert len(error_files) == len(failed)
        assert all("ManagerLost" in f.read_text() for f in error_files)
        lost_after = min(f.stat().st_mtime for f in error_files) - killer.killed_wall
    else:
        # the sims that were running on the pool ran again on the new block, and succeeded
        assert not failed and np.allclose(done["f"], done["x"][:, 0])
        assert retried and len(retried) <= 2
        again = [p for p in mark_dir.glob("start-*") if int(p.name.split("-")[1]) in retried]
        lost_after = max(p.stat().st_mtime for p in again) - killer.killed_wall
    record(
        f"worker_loss_gconly_retries{retries}",
        sims=sim_max,
        failed_sims=failed,
        retried_sims=retried,
        block_loss_noticed_s=round(noticed, 2),
        lost_tasks_failed_or_rerun_after_s=round(lost_after, 2),
        heartbeat_threshold_s=FAST_HEARTBEAT["heartbeat_threshold"],
        run_s=round(elapsed, 1),
        processes_stopped=host.lost_blocks[0].stopped,
    )


def _probe_ensemble(exctr: GlobusComputeExecutor, workdir: t.Any, sim_max: int, sleep: float) -> t.Any:
    libE_specs = executor_libe_specs(2, workdir / "ensemble")
    return probe_ensemble(exctr, libE_specs, sim_max, {"sleep": sleep, "num_procs": 2}, seed=5).run()


@pytest.mark.parametrize("retries", [0, 1])
def test_executor_pool_killed_mid_task(
    mpi_probe: t.Any,  # noqa: F811
    tmp_path: t.Any,
    monkeypatch: pytest.MonkeyPatch,
    retries: int,
) -> None:
    monkeypatch.chdir(tmp_path)
    config = {
        "max_workers_per_block": 2,
        "slots_per_node": 2,
        "max_retries_on_system_failure": retries,
        **FAST_HEARTBEAT,
    }
    exctr = GlobusComputeExecutor("local", user_endpoint_config=config, local_options={"run_dir": tmp_path / "eng"})
    exctr.register_app(full_path=str(mpi_probe), app_name="probe")
    ep = started_local(config, tmp_path / "eng")
    host = host_of(ep)
    assert exctr.gc_executor() is ep
    sim_max = 6

    def ranks_running() -> bool:
        return len(_probes(host)) >= 2

    killer = PoolKiller(host, ranks_running)
    killer.start()
    t0 = time.monotonic()
    H, _, flag = _probe_ensemble(exctr, tmp_path, sim_max, sleep=3.0)
    elapsed = time.monotonic() - t0
    killer.join(5)
    assert killer.error is None and killer.killed_at is not None, killer.error
    assert flag == 0
    done = H[H["sim_ended"]]
    assert len(done) == sim_max and len(np.unique(done["sim_id"])) == sim_max

    # the ranks (and mpiexec) of the killed tasks were stopped, not left running
    ranks = [v for v in killer.victims if v[1].endswith(" mpi_probe")]
    assert ranks, "the kill should have hit running MPI ranks"
    assert host.lost_blocks, f"the lost block should have been noticed: {_jobs(host)}"
    left = wait_for(lambda: not killer.survivors(), 10)
    assert left, (
        f"left running: {killer.survivors()}; lost blocks {host.lost_blocks}; {_tree_of(killer)}; {_jobs(host)}"
    )
    hit = {env.get(MARKER_ENV) for _, _, env in killer.victims if env.get(MARKER_ENV)}
    assert hit, "the killed ranks should carry their task's marker"
    by_marker = {str(row["marker"]): row for row in done}
    assert hit <= set(by_marker), "every killed task belongs to a sim of the history"
    failed = sorted(str(m) for m in by_marker if by_marker[m]["state"] != "FINISHED")
    if retries == 0:
        # the tasks on the lost pool (running, or sent to it and not started yet) failed with ManagerLost
        assert hit <= set(failed) and len(failed) <= 2, (hit, failed)
        for marker in failed:
            row = by_marker[marker]
            assert row["state"] == "FAILED" and "ManagerLost" in row["error"], row
    else:
        assert not failed, [by_marker[m] for m in failed]
    record(
        f"worker_loss_executor_retries{retries}",
        sims=sim_max,
        killed_tasks=len(hit),
        failed_tasks=len(failed),
        killed_processes=len(killer.victims),
        killed_rank_processes=len(ranks),
        block_loss_noticed_s=round(host.lost_blocks[0].noticed - killer.killed_at, 2) if host.lost_blocks else None,
        heartbeat_threshold_s=FAST_HEARTBEAT["heartbeat_threshold"],
        run_s=round(elapsed, 1),
    )


def _probes(host: t.Any) -> list[t.Any]:
    """The MPI ranks of the probe app running under the engine's blocks."""
    ranks = []
    for proc in block_processes(host):
        try:
            if proc.name() == "mpi_probe":
                ranks.append(proc)
        except psutil.Error:
            continue
    return ranks


def _tree_of(killer: PoolKiller) -> str:
    out = []
    for pid, _, _ in killer.victims:
        try:
            proc = psutil.Process(pid)
            out.append(f"{pid} ppid={proc.ppid()} pgid={os.getpgid(pid)} status={proc.status()}")
        except (psutil.Error, OSError):
            continue
    return "; ".join(out)


def _jobs(host: t.Any) -> str:
    from bundle.processes import proctree

    out = []
    for job_id, job in host.engine.executor.provider.resources.items():
        pid = job.get("remote_pid")
        out.append(f"job {job_id} pid {pid} alive={proctree.alive(pid)} pgid={proctree.process_group(pid)} {job}")
    watch = host._block_watch
    frames = sys._current_frames()
    stack = "".join(traceback.format_stack(frames[host._watchdog.ident])) if host._watchdog.ident in frames else "-"
    state = f"trees={watch._trees} pools={watch._pools} done={watch._done}" if watch else "no watch"
    return "; ".join(out) + f" {state} thread={host._watchdog.is_alive()} stack={stack}"
