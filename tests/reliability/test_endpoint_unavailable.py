"""An endpoint that cannot run sims ends a GC-only run with a clear error, history saved, in bounded time.

* local endpoint whose workers never start (real engine; ``worker_init`` hangs): the run ends before
  the manager starts, since GC-only starts the local engine first;
* cloud endpoint (autospec'd SDK ``Executor`` and ``Client``): unknown or offline at start, the
  service refusing the tasks, results that never come.
"""

from __future__ import annotations

import json
import os
import threading
import time
import typing as t
from unittest import mock

import globus_compute_sdk
import globus_sdk
import numpy as np
import pytest
import requests
from globus_compute_sdk.sdk.asynchronous.compute_future import ComputeFuture

from bundle.endpoints.local.reaper import current_token
from bundle.endpoints.session import GCSession
from bundle.gconly import EndpointUnavailableError, GCOnlySpecs
from bundle.gconly.launch import run_gconly
from tests.conftest import engine_tree, wait_until_gone
from tests.gconly import sims
from tests.gconly.helpers import PY_ENGINE, uniform_specs
from tests.reliability import resume_helpers as rh

EP = "3c1a7a0e-2b7d-4b59-8d5e-7f0b0c3d2e10"
BOUND_S = 60.0
"""No case may take longer than this to end (they all take a few seconds here)."""


def _run(tmp_path, endpoint: str, sim_max: int = 12, **gc: t.Any) -> t.Any:
    specs = uniform_specs(sims.six_hump, 2, sim_max, endpoint=endpoint)
    return run_gconly(
        *(specs[k] for k in ("sim_specs", "gen_specs", "exit_criteria", "persis_info", "alloc_specs")),
        {"nworkers": 2},  # workflow_dir_path "." (the test's cwd): setting it changes libEnsemble's log paths for good
        gc_specs=GCOnlySpecs(**gc),
    )


def _abort_files(tmp_path) -> list[str]:
    return sorted(p.name for p in tmp_path.glob("libE_history_at_abort_*.npy"))


def _generator_threads() -> list[str]:
    """libEnsemble's generator-on-manager threads still alive (they would keep the script from exiting)."""
    return [th.name for th in threading.enumerate() if "_qcomm_main" in th.name and th.is_alive()]


def _figure(case: str, seconds: float, **more: t.Any) -> None:
    assert _generator_threads() == [], "an aborted run must stop its generator thread"
    print("UNAVAILABLE_FIGURES", json.dumps({"case": case, "seconds_to_error": round(seconds, 2), **more}))


# --- local endpoint: workers never start --------------------------------------------------------


def test_local_endpoint_whose_workers_never_start_ends_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = {p.pid for p in engine_tree(os.getpid(), current_token())}
    config = dict(PY_ENGINE, worker_init="sleep 300")
    t0 = time.monotonic()
    with pytest.raises(EndpointUnavailableError, match="could not start its workers") as info:
        _run(
            tmp_path,
            "local",
            user_endpoint_config=config,
            local_options={"start_timeout": 5, "run_dir": str(tmp_path / "engine")},
        )
    seconds = time.monotonic() - t0
    assert seconds < BOUND_S
    message = str(info.value)
    assert "did not connect within 5 s" in message and "start_timeout" in message
    assert info.value.endpoint == "local"
    # The engine is started, and waited for, before the manager: the run ends before it began, nothing to save.
    assert _abort_files(tmp_path) == [] and "History saved" not in message
    assert not (tmp_path / "libE_stats.txt").exists() or "sim_id" not in (tmp_path / "libE_stats.txt").read_text()
    started = [p for p in engine_tree(os.getpid(), current_token()) if p.pid not in before]
    GCSession.clear()
    assert wait_until_gone([p.pid for p in started], 15) == [], "the hung block must not outlive the endpoint"
    _figure("local workers never start (start_timeout=5)", seconds)


# --- cloud endpoint ----------------------------------------------------------------------------


def _api_error(status: int, code: str, message: str) -> globus_sdk.GlobusAPIError:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps({"code": code, "message": message}).encode()
    response.headers["Content-Type"] = "application/json"
    response.request = requests.Request("GET", f"https://compute.api.globus.org/v2/endpoints/{EP}/status").prepare()
    response.url = response.request.url
    return globus_sdk.GlobusAPIError(response)


@pytest.fixture
def cloud(monkeypatch, tmp_path) -> t.Iterator[tuple[mock.Mock, rh.FakeService]]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "endpoint-home"))  # sims run under ~/libe_gc_runs on a UUID endpoint
    fake = rh.FakeService()
    instance = mock.create_autospec(globus_compute_sdk.Executor, instance=True)
    instance.register_function.side_effect = fake.register
    instance.submit_to_registered_function.side_effect = fake.submit
    instance.serializer = fake.serializer
    instance.task_group_id = fake.task_group_id
    instance.client = mock.create_autospec(globus_compute_sdk.Client, instance=True)
    instance.client.get_endpoint_status.return_value = {"status": "online"}
    monkeypatch.setattr(
        globus_compute_sdk, "Executor", mock.create_autospec(globus_compute_sdk.Executor, return_value=instance)
    )
    yield instance, fake
    fake.close()


@pytest.mark.parametrize(
    ("status", "match"),
    [
        (_api_error(404, "NOT_FOUND", "Endpoint not found"), "does not know endpoint"),
        (_api_error(403, "FORBIDDEN", "Not authorized"), "does not let you use endpoint"),
        (globus_sdk.GlobusConnectionError("no route to host", ConnectionError("no route")), "could not be asked"),
        ({"status": "offline", "details": {}}, "is offline"),
    ],
    ids=["unknown", "forbidden", "no-network", "offline"],
)
def test_cloud_endpoint_not_available_at_start_ends_before_any_submission(cloud, tmp_path, status, match):
    instance, _ = cloud
    if isinstance(status, Exception):
        instance.client.get_endpoint_status.side_effect = status
    else:
        instance.client.get_endpoint_status.return_value = status
    t0 = time.monotonic()
    with pytest.raises(EndpointUnavailableError, match=match) as info:
        _run(tmp_path, EP)
    seconds = time.monotonic() - t0
    assert seconds < BOUND_S
    assert EP in str(info.value) and info.value.endpoint == EP
    instance.client.get_endpoint_status.assert_called_once_with(EP)
    instance.submit_to_registered_function.assert_not_called()
    _figure(f"cloud endpoint at start: {match}", seconds)


def test_offline_endpoint_may_be_queued_for_when_asked(cloud, tmp_path):
    instance, _ = cloud
    instance.client.get_endpoint_status.return_value = {"status": "offline"}
    H, _, flag, errors, _ = _run(tmp_path, EP, require_online=False)
    instance.client.get_endpoint_status.assert_not_called()
    assert flag == 0 and errors == {} and int(H["sim_ended"].sum()) == 12


def test_results_that_never_come_end_the_run_after_result_timeout(cloud, tmp_path):
    instance, _ = cloud
    instance.submit_to_registered_function.side_effect = lambda function_id, args=None, kwargs=None: ComputeFuture()
    t0 = time.monotonic()
    with pytest.raises(EndpointUnavailableError, match=r"no result from endpoint .* for \d+ s") as info:
        _run(tmp_path, EP, result_timeout=2)
    seconds = time.monotonic() - t0
    assert 2 <= seconds < BOUND_S
    message = str(info.value)
    assert EP in message and "result_timeout=2" in message and "sim_ids [0, 1]" in message
    assert _abort_files(tmp_path) == ["libE_history_at_abort_0.npy"] and "rerun with gc_specs.resume=True" in message
    H = np.load(tmp_path / "libE_history_at_abort_0.npy")
    assert list(H["sim_id"][H["sim_started"]]) == [0, 1] and not H["sim_ended"].any()
    _figure("cloud results never come (result_timeout=2)", seconds)


def test_results_slower_than_result_timeout_but_steady_do_not_end_the_run(cloud, tmp_path):
    _, fake = cloud
    fake.hold = lambda args: False
    specs = uniform_specs(sims.sleepy, 2, 8, endpoint=EP)
    specs["sim_specs"]["user"] = {"sleep": 0.3}
    H, _, flag, errors, _ = run_gconly(
        *(specs[k] for k in ("sim_specs", "gen_specs", "exit_criteria", "persis_info", "alloc_specs")),
        {"nworkers": 2},  # workflow_dir_path "." (the test's cwd): setting it changes libEnsemble's log paths for good
        gc_specs=GCOnlySpecs(result_timeout=1.0),
    )
    assert flag == 0 and errors == {} and int(H["sim_ended"].sum()) == 8  # 8 x 0.3 s > 1 s in all


def test_service_refusing_the_tasks_ends_the_run_not_every_sim(cloud, tmp_path):
    instance, _ = cloud
    refused = _api_error(403, "FORBIDDEN", "user may not submit to this endpoint")

    def submit(function_id, args=None, kwargs=None):
        fut = ComputeFuture()
        fut.set_exception(refused)  # the SDK's submitter thread sets the service's error on the futures
        return fut

    instance.submit_to_registered_function.side_effect = submit
    t0 = time.monotonic()
    with pytest.raises(EndpointUnavailableError, match="refused work for endpoint") as info:
        _run(tmp_path, EP, sim_max=50)
    seconds = time.monotonic() - t0
    assert seconds < BOUND_S and EP in str(info.value)
    assert instance.submit_to_registered_function.call_count <= 2, "ended at the first refusal, not after 50 sims"
    assert _abort_files(tmp_path) == ["libE_history_at_abort_0.npy"]
    _figure("cloud service refuses tasks (403)", seconds)


def test_submit_raising_a_network_error_ends_the_run(cloud, tmp_path):
    instance, _ = cloud
    instance.submit_to_registered_function.side_effect = globus_sdk.GlobusConnectionError(
        "connection reset", ConnectionError("reset")
    )
    with pytest.raises(EndpointUnavailableError, match="GlobusConnectionError"):
        _run(tmp_path, EP)
    assert instance.submit_to_registered_function.call_count == 1
    assert _abort_files(tmp_path) == ["libE_history_at_abort_0.npy"]
