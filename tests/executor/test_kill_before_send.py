"""``kill()`` of a task the SDK has not sent yet: its future is cancelled and it never leaves this process.

The SDK ``Executor`` here is the real one; only the Globus Compute web service is mocked (an
autospec of ``globus_compute_sdk.Client``), and its ``batch_run`` is held so that one task is
"on the wire" while the next waits in the SDK's send queue.
"""

from __future__ import annotations

import threading
import time
import typing as t
import uuid
from unittest import mock

import globus_compute_sdk
import pytest

from bundle import GlobusComputeExecutor
from bundle.endpoints.session import GCSession
from bundle.endpoints.unsent import withdraw

EP = "2d6b0b8e-6a55-4d8e-9b7e-0f3c9a1e2b44"


def remote(x: int) -> int:
    return x + 1


class HeldService:
    """The web service: registers functions, and answers a batch only when released."""

    def __init__(self) -> None:
        self.client = mock.create_autospec(globus_compute_sdk.Client, instance=True)
        self.client.register_function.side_effect = lambda fn, **_: str(uuid.uuid4())
        self.batches: list[list[str]] = []
        self.sending = threading.Event()
        self.release = threading.Event()

        def create_batch(**_: t.Any) -> t.Any:
            batch = mock.MagicMock()
            added: list[str] = []
            batch.add.side_effect = lambda fid, *a, **k: added.append(fid)
            batch.added = added
            return batch

        def batch_run(endpoint_id: t.Any, batch: t.Any) -> dict[str, t.Any]:
            self.batches.append(list(batch.added))
            self.sending.set()
            assert self.release.wait(60)
            tasks: dict[str, list[str]] = {}
            for fid in batch.added:
                tasks.setdefault(fid, []).append(str(uuid.uuid4()))
            return {
                "tasks": tasks,
                "task_group_id": str(uuid.uuid4()),
                "request_id": str(uuid.uuid4()),
                "endpoint_id": EP,
            }

        self.client.create_batch.side_effect = create_batch
        self.client.batch_run.side_effect = batch_run


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> t.Iterator[HeldService]:
    monkeypatch.setattr("bundle.endpoints.python_check.warn_on_python_mismatch", lambda *a, **k: None)
    svc = HeldService()
    yield svc
    svc.release.set()
    GCSession.clear()


def test_executor_kill_before_send_cancels_and_never_sends(service):
    exctr = GlobusComputeExecutor(EP, sdk_options={"client": service.client})
    on_wire = exctr.submit(func=remote, args=(1,))
    assert service.sending.wait(30), "the SDK never sent the first task"
    queued = exctr.submit(func=remote, args=(2,))
    assert queued.gc_task_id is None and queued.future is not None and not queued.future.done()

    queued.kill()
    assert queued.state == "USER_KILLED" and queued.future.cancelled()
    on_wire.kill()  # in the service's hands: only its future can be cancelled
    assert on_wire.future.cancelled()

    service.release.set()
    deadline = time.monotonic() + 10
    while on_wire.future._metadata.get("request_uuid") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # a second batch, if any, would be sent by now
    assert len(service.batches) == 1 and len(service.batches[0]) == 1, service.batches


def test_withdraw_from_the_sdk_queue(service):
    """What GC-only's kill does with a sim's future (``SimDispatcher`` calls ``withdraw``)."""
    gce = globus_compute_sdk.Executor(endpoint_id=EP, client=service.client)
    try:
        fid = gce.register_function(remote)
        first = gce.submit_to_registered_function(fid, args=(1,))
        assert service.sending.wait(30)
        second = gce.submit_to_registered_function(fid, args=(2,))
        third = gce.submit_to_registered_function(fid, args=(3,))
        assert withdraw(gce, second) is True
        assert second.cancelled()
        assert withdraw(gce, first) is False  # already taken by the SDK's submitter
        third.cancel()  # only cancelled: the SDK sends it anyway (why withdraw exists)
        service.release.set()
        deadline = time.monotonic() + 10
        while len(service.batches) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [len(b) for b in service.batches] == [1, 1], "the withdrawn task was never sent; the third was"
        assert third.cancelled()
    finally:
        gce.shutdown(wait=False, cancel_futures=True)
