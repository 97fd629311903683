"""Executor mode with an endpoint that never runs anything: the run ends, with a clear error, never a hang.

* a local endpoint whose workers never start (a ``worker_init`` that sleeps): tasks fail with the
  :class:`~bundle.errors.EndpointStartError` text once ``start_timeout`` passes, the sims return,
  the ensemble ends and its history is saved;
* an unreachable cloud endpoint (the real SDK ``Executor``'s signatures, futures that never finish,
  or a submission that raises): ``task.wait(timeout)`` and the executor's ``pending_timeout`` end
  the wait in bounded time.
"""

from __future__ import annotations

import concurrent.futures
import time
import typing as t
from unittest import mock

import globus_compute_sdk
import numpy as np
import pytest
from libensemble import Ensemble
from libensemble.executors.executor import TimeoutExpired

from bundle import GlobusComputeExecutor
from bundle.endpoints.local import reaper
from bundle.errors import TaskPendingTimeoutError
from tests.ensembles import executor_libe_specs
from tests.executor.conftest import mpi_probe  # noqa: F401  (the compiled MPI probe app fixture)
from tests.reliability.fault_helpers import probe_ensemble, record

EP = "5f0c6ae5-8d2c-4fb8-9f0a-1b0c7f6f2e11"
SIM_MAX = 4


def _ensemble(exctr: GlobusComputeExecutor, workdir: t.Any, wait: float = 600) -> Ensemble:
    libE_specs = executor_libe_specs(2, workflow_dir_path=str(workdir), save_H_on_completion=True)
    return probe_ensemble(exctr, libE_specs, SIM_MAX, {"num_procs": 1, "wait": wait}, seed=2)


def _saved_history(workdir: t.Any) -> np.ndarray:
    files = sorted(workdir.glob("*.npy"))
    assert files, f"no history saved in {workdir}: {sorted(p.name for p in workdir.iterdir())}"
    return np.load(files[-1])


def test_local_workers_never_start(mpi_probe: t.Any, tmp_path: t.Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.chdir(tmp_path)
    start_timeout = 5.0
    exctr = GlobusComputeExecutor(
        "local",
        user_endpoint_config={"worker_init": "sleep 100000"},
        local_options={"start_timeout": start_timeout, "run_dir": tmp_path / "engine"},
    )
    exctr.register_app(full_path=str(mpi_probe), app_name="probe")
    ens = _ensemble(exctr, tmp_path / "run")
    t0 = time.monotonic()
    H, _, flag = ens.run()
    elapsed = time.monotonic() - t0
    assert flag == 0
    done = H[H["sim_ended"]]
    assert len(done) == SIM_MAX
    assert np.all(done["state"] == "FAILED")
    assert all("did not connect within 5 s" in e and "worker_init" in e for e in done["error"]), done["error"]
    saved = _saved_history(tmp_path / "run")
    assert len(saved[saved["sim_ended"]]) == SIM_MAX
    # bounded: the start timeout, plus the engine's start and one poll, not a hang
    assert elapsed < start_timeout + 60
    from bundle.endpoints.session import GCSession

    GCSession.clear()
    # the block's never-ending worker_init was stopped with the engine
    marked = reaper.find_with_env(reaper.TOKEN_ENV, reaper.current_token() or "-")
    sleepers = [pid for pid in marked if _cmdline(pid) == "sleep 100000"]
    assert not sleepers, f"worker_init left running: {sleepers}"
    record("unavailable_local_workers_never_start", start_timeout_s=start_timeout, run_s=round(elapsed, 1))


@pytest.fixture
def offline_cloud(monkeypatch: pytest.MonkeyPatch) -> t.Iterator[list[concurrent.futures.Future[t.Any]]]:
    """The SDK Executor (autospec) of an endpoint that accepts tasks and never runs them."""
    futures: list[concurrent.futures.Future[t.Any]] = []
    real = globus_compute_sdk.Executor

    def make(*_a: t.Any, **_k: t.Any) -> mock.Mock:
        inst = mock.create_autospec(real, instance=True)
        inst.register_function.return_value = "fn-runner"
        inst.resource_specification = None

        def submit(*_a: t.Any, **_k: t.Any) -> concurrent.futures.Future[t.Any]:
            fut: concurrent.futures.Future[t.Any] = concurrent.futures.Future()
            futures.append(fut)
            return fut

        inst.submit_to_registered_function.side_effect = submit
        return inst

    monkeypatch.setattr(globus_compute_sdk, "Executor", mock.create_autospec(real, side_effect=make))
    yield futures
    from bundle.endpoints.session import GCSession

    GCSession.clear()


def test_offline_cloud_endpoint_wait_timeout(
    offline_cloud: t.Any, tmp_path: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    exctr = GlobusComputeExecutor(EP, template="local")
    exctr.register_app("/apps/forces.x", app_name="forces")
    task = exctr.submit(app_name="forces", num_procs=1)
    t0 = time.monotonic()
    with pytest.raises(TimeoutExpired):
        task.wait(timeout=1.0)
    waited = time.monotonic() - t0
    assert task.state == "WAITING" and not task.finished  # still pending: the caller decides (kill or wait)
    exctr.kill(task)
    assert task.state == "USER_KILLED" and task.finished
    assert 0.9 <= waited < 30
    record("unavailable_cloud_wait_timeout", wait_timeout_s=1.0, waited_s=round(waited, 2))


def test_offline_cloud_endpoint_pending_timeout(
    offline_cloud: t.Any, tmp_path: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    exctr = GlobusComputeExecutor(EP, template="local", pending_timeout=2.0)
    exctr.register_app("/apps/mpi_probe", app_name="probe")
    task = exctr.submit(app_name="probe", num_procs=1)
    t0 = time.monotonic()
    task.wait()  # no timeout of its own: pending_timeout ends it
    waited = time.monotonic() - t0
    assert task.state == "FAILED" and task.finished and not task.success
    assert isinstance(task.error, TaskPendingTimeoutError)
    assert EP in str(task.error) and "pending_timeout=2 s" in str(task.error)
    assert offline_cloud[0].cancelled()
    assert 1.9 <= waited < 30

    # a whole ensemble on the offline endpoint ends, with the error in the history and the history saved
    ens = _ensemble(exctr, tmp_path / "run")
    t1 = time.monotonic()
    H, _, flag = ens.run()
    elapsed = time.monotonic() - t1
    assert flag == 0
    done = H[H["sim_ended"]]
    assert len(done) == SIM_MAX and np.all(done["state"] == "FAILED")
    assert all("not started by endpoint" in e for e in done["error"])
    assert len(_saved_history(tmp_path / "run")) >= SIM_MAX
    assert elapsed < 2.0 * SIM_MAX + 30
    record(
        "unavailable_cloud_pending_timeout", pending_timeout_s=2.0, waited_s=round(waited, 2), run_s=round(elapsed, 1)
    )


def test_unreachable_service_fails_to_start(tmp_path: t.Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    inst = mock.create_autospec(globus_compute_sdk.Executor, instance=True)
    inst.register_function.return_value = "fn-runner"
    inst.resource_specification = None
    inst.submit_to_registered_function.side_effect = ConnectionError(
        "compute.api.globus.org: Name or service not known"
    )
    monkeypatch.setattr(
        globus_compute_sdk, "Executor", mock.create_autospec(globus_compute_sdk.Executor, return_value=inst)
    )
    exctr = GlobusComputeExecutor(EP, template="local")
    exctr.register_app("/apps/forces.x", app_name="forces")
    t0 = time.monotonic()
    task = exctr.submit(app_name="forces", num_procs=1)
    task.wait(timeout=5)
    assert time.monotonic() - t0 < 5
    assert task.state == "FAILED_TO_START" and task.finished
    assert "Name or service not known" in str(task.error)
    from bundle.endpoints.session import GCSession

    GCSession.clear()


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
