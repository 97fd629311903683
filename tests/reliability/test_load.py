"""Load: many trivial sims (GC-only) and many one-rank MPI tasks (executor mode) on the real engine.

Checked: every result present exactly once, no process or file descriptor left behind (counted
before and after), and the manager's memory flat after warm-up.

Size: ``LIBE_GC_LOAD_SCALE`` is the fraction of the full size (20,000 sims, 2,000 MPI tasks);
default 0.1 (2,000 and 200).  ``LIBE_GC_LOAD_SCALE=1`` runs the full size; those runs carry the
``heavy`` marker, so ``-m "not heavy"`` skips them.

Memory bound: after warm-up (the first quarter of the results) the process may grow by what the
history itself needs (libEnsemble grows ``H`` by copying, so twice its size at the end) plus
``RSS_SLACK_MB`` for allocator arenas and buffers that are kept for reuse; a leak of one object
per sim (a future, a task record) exceeds that bound at the full size.
"""

from __future__ import annotations

import gc
import os
import threading
import time
import typing as t

import numpy as np
import psutil
import pytest
from libensemble.alloc_funcs.give_sim_work_first import give_sim_work_first
from libensemble.gen_funcs.sampling import uniform_random_sample
from libensemble.tools import add_unique_random_streams

import bundle
from bundle import GlobusComputeExecutor
from bundle.endpoints.session import GCSession
from tests.ensembles import executor_libe_specs
from tests.executor.conftest import mpi_probe  # noqa: F401  (the compiled MPI probe app fixture)
from tests.gconly.helpers import REPO
from tests.reliability import fault_sims
from tests.reliability.fault_helpers import SCALE_ENV, engine_processes, fd_count, probe_ensemble, record, started_local

FULL_SIMS = 20_000
FULL_MPI_TASKS = 2_000
RSS_SLACK_MB = 48.0
FD_SLACK = 2
"""Descriptors a second run may still hold: none expected; two allowed for a logging handler reopened late."""


def _scale() -> float:
    raw = os.environ.get(SCALE_ENV, "0.1")
    try:
        value = float(raw)
    except ValueError:
        pytest.fail(f"{SCALE_ENV} must be a number in (0, 1], got {raw!r}")
    if not 0 < value <= 1:
        pytest.fail(f"{SCALE_ENV} must be in (0, 1], got {value}")
    return value


SCALE = _scale()
HEAVY = [pytest.mark.heavy] if SCALE >= 0.5 else []


class RssSampler(threading.Thread):
    """Sample this process's RSS every ``period`` seconds, with the number of results so far."""

    def __init__(self, progress: t.Callable[[], int], period: float = 0.1) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.progress = progress
        self.period = period
        self.samples: list[tuple[int, int]] = []
        self._stop_event = threading.Event()
        self._proc = psutil.Process()

    def run(self) -> None:
        while not self._stop_event.wait(self.period):
            self.samples.append((self.progress(), self._proc.memory_info().rss))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)

    def growth_after(self, warm: int) -> tuple[float, float]:
        """RSS (MB) at the first sample with ``warm`` results done, and the largest growth after it."""
        after = [rss for done, rss in self.samples if done >= warm]
        assert len(after) >= 3, f"too few RSS samples after warm-up ({len(after)} of {len(self.samples)})"
        return after[0] / 2**20, (max(after) - after[0]) / 2**20


def _leak_baseline() -> tuple[int, int]:
    gc.collect()
    return fd_count(), len(engine_processes())


def _check_no_leak(before: tuple[int, int]) -> dict[str, int]:
    GCSession.clear()
    gc.collect()
    fds_after = fd_count()
    procs = [p for p in engine_processes() if p.is_running()]
    deadline = time.monotonic() + 15
    while procs and time.monotonic() < deadline:  # processes stopped at shutdown may take a moment to exit
        time.sleep(0.2)
        procs = [p for p in engine_processes() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert len(procs) <= before[1], f"engine processes left: {[p.cmdline() for p in procs]}"
    assert fds_after <= before[0] + FD_SLACK, f"file descriptors: {before[0]} before, {fds_after} after"
    return {"fds_before": before[0], "fds_after": fds_after, "engine_procs_before": before[1], "engine_procs_after": 0}


PY_LOAD = {
    "engine_type": "GlobusComputeEngine",
    "max_workers_per_node": 2,
    "worker_init": f"export PYTHONPATH={REPO}${{PYTHONPATH:+:$PYTHONPATH}}",
}


def _gconly_run(n: int, nworkers: int, workdir: t.Any, progress: list[int] | None = None) -> t.Any:
    sim_specs = {"sim_f": fault_sims.trivial, "in": ["x"], "out": [("f", float)], "globus_compute_endpoint": "local"}
    gen_specs = {
        "gen_f": uniform_random_sample,
        "out": [("x", float, (2,)), ("priority", float)],
        "user": {"gen_batch_size": max(nworkers, 64), "lb": np.array([-3.0, -2.0]), "ub": np.array([3.0, 2.0])},
    }
    return bundle.libE(
        sim_specs,
        gen_specs,
        {"sim_max": n},
        add_unique_random_streams({}, nworkers + 1, seed=3),
        {"alloc_f": give_sim_work_first},
        {"nworkers": nworkers, "workflow_dir_path": str(workdir)},
        gc_specs={"user_endpoint_config": PY_LOAD},
    )


@pytest.mark.parametrize(
    "n", [pytest.param(round(FULL_SIMS * SCALE), marks=HEAVY, id=f"{round(FULL_SIMS * SCALE)}sims")]
)
def test_gconly_many_trivial_sims(tmp_path: t.Any, monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    monkeypatch.chdir(tmp_path)
    nworkers = 16
    # warm-up run: the one-time resources of a process (the watcher, logging, imports) are made here
    started_local(PY_LOAD, tmp_path / "warm")
    _gconly_run(50, nworkers, tmp_path / "warm")
    GCSession.clear()
    before = _leak_baseline()

    ep = started_local(PY_LOAD, tmp_path / "engine")
    done_count = [0]
    calls = {"n": 0}
    original = ep.submit_to_registered_function

    def counting(*args: t.Any, **kwargs: t.Any) -> t.Any:
        fut = original(*args, **kwargs)
        calls["n"] += 1

        def one_done(_f: t.Any) -> None:
            done_count[0] += 1

        fut.add_done_callback(one_done)
        return fut

    ep.submit_to_registered_function = counting  # type: ignore[method-assign]
    sampler = RssSampler(lambda: done_count[0])
    sampler.start()
    t0 = time.monotonic()
    try:
        H, _, flag = _gconly_run(n, nworkers, tmp_path)
    finally:
        sampler.stop()
    elapsed = time.monotonic() - t0
    assert flag == 0
    done = H[H["sim_ended"]]
    # no lost result: every sim ended once, with its own value
    assert len(done) == n and len(np.unique(done["sim_id"])) == n and calls["n"] == n
    assert np.array_equal(done["f"], done["x"][:, 0])
    rss0, growth = sampler.growth_after(n // 4)
    bound = 2 * H.nbytes / 2**20 + RSS_SLACK_MB
    assert growth <= bound, f"manager RSS grew {growth:.1f} MB after warm-up (bound {bound:.1f} MB)"
    leak = _check_no_leak(before)
    record(
        "load_gconly",
        sims=n,
        nworkers=nworkers,
        run_s=round(elapsed, 1),
        sims_per_s=round(n / elapsed, 1),
        rss_after_warmup_mb=round(rss0, 1),
        rss_growth_after_warmup_mb=round(growth, 1),
        rss_bound_mb=round(bound, 1),
        H_mb=round(H.nbytes / 2**20, 2),
        **leak,
    )


def _mpi_ensemble(exctr: GlobusComputeExecutor, workdir: t.Any, n: int, nworkers: int) -> t.Any:
    libE_specs = executor_libe_specs(nworkers, workflow_dir_path=str(workdir))
    user = {"num_procs": 1, "wait": 120}
    return probe_ensemble(exctr, libE_specs, n, user, seed=9, gen_batch_size=max(nworkers, 32)).run()


MPI_LOAD = {"max_workers_per_block": 4, "slots_per_node": 4}


@pytest.mark.parametrize(
    "n", [pytest.param(round(FULL_MPI_TASKS * SCALE), marks=HEAVY, id=f"{round(FULL_MPI_TASKS * SCALE)}tasks")]
)
def test_executor_many_mpi_tasks(
    mpi_probe: t.Any,  # noqa: F811
    tmp_path: t.Any,
    monkeypatch: pytest.MonkeyPatch,
    n: int,
) -> None:
    monkeypatch.chdir(tmp_path)
    nworkers = 4
    warm = GlobusComputeExecutor("local", user_endpoint_config=MPI_LOAD)
    warm.register_app(full_path=str(mpi_probe), app_name="probe")
    started_local(MPI_LOAD, tmp_path / "warm")
    _mpi_ensemble(warm, tmp_path / "warm", 8, nworkers)
    GCSession.clear()
    before = _leak_baseline()

    exctr = GlobusComputeExecutor("local", user_endpoint_config=MPI_LOAD)
    exctr.register_app(full_path=str(mpi_probe), app_name="probe")
    started_local(MPI_LOAD, tmp_path / "engine")
    sampler = RssSampler(lambda: sum(1 for task in list(exctr.list_of_tasks) if task.finished))
    sampler.start()
    t0 = time.monotonic()
    try:
        H, _, flag = _mpi_ensemble(exctr, tmp_path / "run", n, nworkers)
    finally:
        sampler.stop()
    elapsed = time.monotonic() - t0
    assert flag == 0
    done = H[H["sim_ended"]]
    assert len(done) == n and len(np.unique(done["sim_id"])) == n
    # no lost result: every task finished, each under its own marker
    assert np.all(done["state"] == "FINISHED"), done[done["state"] != "FINISHED"][["sim_id", "state", "error"]][:5]
    assert len(set(done["marker"])) == n and len(exctr.list_of_tasks) == n
    rss0, growth = sampler.growth_after(n // 4)
    bound = 2 * H.nbytes / 2**20 + RSS_SLACK_MB
    assert growth <= bound, f"manager RSS grew {growth:.1f} MB after warm-up (bound {bound:.1f} MB)"
    leak = _check_no_leak(before)
    record(
        "load_executor_mpi",
        tasks=n,
        nworkers=nworkers,
        run_s=round(elapsed, 1),
        tasks_per_s=round(n / elapsed, 1),
        rss_after_warmup_mb=round(rss0, 1),
        rss_growth_after_warmup_mb=round(growth, 1),
        rss_bound_mb=round(bound, 1),
        H_mb=round(H.nbytes / 2**20, 2),
        **leak,
    )
