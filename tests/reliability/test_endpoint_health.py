"""What the bundle learns of a cloud endpoint while tasks wait: refused configurations and an endpoint gone offline.

The SDK ``Executor`` and ``Client`` are autospecs of the real classes (a renamed argument fails here); the
endpoint's report is the text ``globus-compute-endpoint`` 4.19 sends when its template's schema refuses an
option (recorded from the real daemon in ``tests/realendpoint``).  The same behaviour on the real daemon and
Slurm: ``tests/realendpoint/test_real_endpoint_slurm*.py``.
"""

from __future__ import annotations

import concurrent.futures
import time
import typing as t
import uuid
from unittest import mock

import globus_compute_sdk
import pytest
from globus_compute_sdk.errors import TaskExecutionFailed
from globus_compute_sdk.sdk.asynchronous.compute_future import ComputeFuture

from bundle import GlobusComputeExecutor
from bundle.endpoints.health import EndpointHealth, health_of, start_failure_reason
from bundle.endpoints.session import GCSession
from bundle.endpoints.unsent import withdraw
from bundle.errors import EndpointOfflineError, UserEndpointStartError
from tests.polling import wait_for

EP = "7d2f3c1e-0a4b-4c8d-9e6f-1a2b3c4d5e60"
REPORT = (
    "Unable to start user endpoint process for alice [exit code: 73; (ValidationError) Additional properties are "
    "not allowed ('node_per_block' was unexpected)\n\nFailed validating 'additionalProperties' in schema:\n"
    "    {'$schema': 'https://json-schema.org/draft/2020-12/schema', ...}\n\nOn instance:\n"
    "    {'node_per_block': 2}]"
)
"""The endpoint daemon's report (its first lines; the schema follows in full)."""


class Status:
    """The service's answers to ``get_endpoint_status``, changed by the test."""

    def __init__(self, status: str) -> None:
        self.status = status
        self.asked = 0

    def __call__(self, endpoint_id: t.Any) -> dict[str, t.Any]:
        self.asked += 1
        return {"status": self.status, "details": {}}


def _client(status: Status) -> mock.Mock:
    client = mock.create_autospec(globus_compute_sdk.Client, instance=True)
    client.get_endpoint_status.side_effect = status
    return client


def test_the_endpoints_start_failure_report_is_recognised_and_nothing_else() -> None:
    assert start_failure_reason(TaskExecutionFailed(REPORT)) == REPORT.splitlines()[0]
    assert start_failure_reason(TaskExecutionFailed("Traceback (most recent call last):\nValueError: bad x")) is None
    assert start_failure_reason(RuntimeError(REPORT)) is None  # only what the service sends back as a task's error
    health = EndpointHealth(_client(Status("online")), EP)
    refusal = health.record(TaskExecutionFailed(REPORT))
    assert isinstance(refusal, UserEndpointStartError) and refusal.endpoint == EP
    assert "('node_per_block' was unexpected)" in str(refusal) and "template=" in str(refusal)
    assert health.check(None) is refusal and health.check(60) is refusal  # sticky: no later task can run


def test_an_endpoint_seen_online_then_offline_is_gone_after_offline_timeout() -> None:
    status = Status("online")
    health = EndpointHealth(_client(status), EP)
    assert health.check(0.5) is None
    assert wait_for(lambda: status.asked == 1, 5)
    status.status = "offline"
    t0 = time.monotonic()
    gone = wait_for(lambda: health.check(0.5), 10, period=0.05)
    assert isinstance(gone, EndpointOfflineError) and gone.endpoint == EP
    assert "'offline'" in str(gone) and "offline_timeout=0.5 s" in str(gone)
    assert 0.5 <= time.monotonic() - t0 < 5  # one status period (1 s at least) plus the timeout
    status.status = "online"  # back (restarted): tasks may come back again
    assert wait_for(lambda: health.check(0.5) is None, 5, period=0.05)


def test_an_endpoint_offline_from_the_start_or_unreachable_is_waited_for() -> None:
    status = Status("offline")
    health = EndpointHealth(_client(status), EP)
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        assert health.check(0.2) is None
        time.sleep(0.05)
    assert status.asked >= 2, "asked again after each period"
    client = mock.create_autospec(globus_compute_sdk.Client, instance=True)
    client.get_endpoint_status.side_effect = ConnectionError("service unreachable")
    unreachable = EndpointHealth(client, EP)
    unreachable.mark_online()
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        assert unreachable.check(0.2) is None  # no news is not "offline"
        time.sleep(0.05)
    assert client.get_endpoint_status.call_count >= 2
    silent = EndpointHealth(_client(status), EP)
    assert silent.check(None) is None and status.asked >= 2  # None: never asked


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> t.Iterator[tuple[Status, list[ComputeFuture]]]:
    """The SDK Executor (autospec) of an endpoint that accepts tasks and answers none by itself."""
    status = Status("online")
    futures: list[ComputeFuture] = []
    real = globus_compute_sdk.Executor

    def make(*_a: t.Any, **_k: t.Any) -> mock.Mock:
        inst = mock.create_autospec(real, instance=True)
        inst.client = _client(status)
        inst.endpoint_id = uuid.UUID(EP)
        inst.register_function.return_value = "fn-runner"
        inst.resource_specification = None

        def submit(*_a: t.Any, **_k: t.Any) -> ComputeFuture:
            fut = ComputeFuture(str(uuid.uuid4()))
            futures.append(fut)
            return fut

        inst.submit_to_registered_function.side_effect = submit
        return inst

    monkeypatch.setattr(globus_compute_sdk, "Executor", mock.create_autospec(real, side_effect=make))
    yield status, futures
    GCSession.clear()


def test_executor_tasks_on_an_endpoint_gone_offline_fail_and_the_next_submit_raises(
    cloud: tuple[Status, list[ComputeFuture]], tmp_path: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    status, futures = cloud
    exctr = GlobusComputeExecutor(EP, template="local", offline_timeout=1.0)
    exctr.register_app("/apps/probe", app_name="probe")
    task = exctr.submit(app_name="probe", num_procs=1)
    assert wait_for(lambda: status.asked >= 1, 5), "the endpoint's status is asked at the first submit"
    status.status = "offline"  # stopped while the task runs: no result will ever come
    t0 = time.monotonic()
    task.wait()  # no timeout of its own
    waited = time.monotonic() - t0
    assert task.state == "FAILED" and isinstance(task.error, EndpointOfflineError), task.error
    assert futures[0].cancelled()
    assert waited < 10
    with pytest.raises(EndpointOfflineError, match="went offline"):
        exctr.submit(app_name="probe", num_procs=1)
    assert len(futures) == 1, "nothing more is sent to an endpoint known to be gone"
    health = health_of(GCSession._executors[next(iter(GCSession._executors))])
    assert health is not None and health.endpoint_id == EP


def test_executor_refused_configuration_fails_the_task_and_is_not_sent_again(
    cloud: tuple[Status, list[ComputeFuture]], tmp_path: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _, futures = cloud
    exctr = GlobusComputeExecutor(EP, user_endpoint_config={"node_per_block": 2})
    exctr.register_app("/apps/probe", app_name="probe")
    task = exctr.submit(app_name="probe", num_procs=1)
    futures[0].set_exception(TaskExecutionFailed(REPORT))  # what the service sends the waiting tasks
    task.wait(timeout=5)
    assert task.state == "FAILED" and isinstance(task.error, UserEndpointStartError)
    assert task.error.reason == REPORT.splitlines()[0]
    assert isinstance(task.error.__cause__, TaskExecutionFailed)
    with pytest.raises(UserEndpointStartError, match="node_per_block"):
        exctr.submit(app_name="probe", num_procs=1)
    assert len(futures) == 1


def test_a_withdrawn_future_leaves_the_sdk_result_watcher() -> None:
    from globus_compute_sdk.sdk.executor import _RESULT_WATCHERS, _ResultWatcher

    client = mock.create_autospec(globus_compute_sdk.Client, instance=True)
    watcher = _ResultWatcher(uuid.uuid4(), client)  # not started: only its watch list matters here
    try:
        kept, given_up = ComputeFuture(str(uuid.uuid4())), ComputeFuture(str(uuid.uuid4()))
        assert watcher.watch_for_task_results(mock.Mock(), [kept, given_up]) == 2
        withdraw(None, given_up)
        assert given_up.cancelled() and set(watcher.get_open_futures()) == {kept.task_id}
        assert not watcher._open_futures_empty.is_set()
        withdraw(None, kept)
        # Nothing left to wait for: the SDK's exit handler (it waits for this event) lets the script end.
        assert watcher.get_open_futures() == {} and watcher._open_futures_empty.is_set()
    finally:
        _RESULT_WATCHERS.pop(watcher.task_group_id, None)
    # ... and whoever waits on them wakes up (cancelled and notified, as an executor cancels); twice is harmless.
    assert concurrent.futures.wait([kept, given_up], timeout=0).not_done == set()
    assert withdraw(None, kept) is False and kept.cancelled()
