"""A task lost with its block says so: Parsl's ManagerLost becomes a BlockLostError naming the job and node."""

from __future__ import annotations

import concurrent.futures

from libensemble.executors.executor import Application

from bundle.endpoints.local.batch_jobs import EndedJob
from bundle.errors import BlockLostError, block_lost_message, lost_worker_pool
from bundle.executor.task import GlobusComputeTask


class ManagerLost(Exception):
    """Stands in for parsl.executors.high_throughput.errors.ManagerLost (same name, as the SDK reports it)."""


def test_lost_worker_pool_recognizes_manager_lost_also_as_remote_text():
    assert lost_worker_pool(ManagerLost("Task failure due to loss of manager b'abc' on host vm"))
    assert lost_worker_pool(RuntimeError("Traceback ...\nparsl.executors.high_throughput.errors.ManagerLost: x"))
    assert not lost_worker_pool(RuntimeError("the app exited with code 1"))


def test_ended_job_names_the_down_node():
    job = EndedJob("57", "NODE_FAIL", "n[1-2]", "NodeDown", ("n2 down*: taken away",), 0.0)
    assert job.describe() == "block job 57 on n[1-2] ended NODE_FAIL (node n2 down*: taken away)"
    assert (
        EndedJob("58", "TIMEOUT", "n1", "TimeLimit", (), 0.0).describe()
        == "block job 58 on n1 ended TIMEOUT (TimeLimit)"
    )


def test_a_task_that_lost_its_block_fails_with_block_lost_error():
    task = GlobusComputeTask(Application("/bin/app", "app"), kind="mpi")
    fut: concurrent.futures.Future[object] = concurrent.futures.Future()
    task._submitted(fut)
    task.block_report = lambda: "block job 57 on n[1-2] ended NODE_FAIL (node n2 down*: taken away)"
    original = ManagerLost("Task failure due to loss of manager b'abc' on host vm")
    fut.set_exception(original)
    task.poll()
    assert task.state == "FAILED" and isinstance(task.error, BlockLostError)
    assert task.error.__cause__ is original
    text = str(task.error)
    assert "block (worker pool) it ran on was lost: block job 57" in text and "node n2 down*" in text
    assert "max_retries_on_system_failure" in text and "loss of manager" in text


def test_without_a_report_the_message_still_says_what_was_lost():
    text = block_lost_message("the sim", ManagerLost("loss of manager"))
    assert text.startswith("the sim failed: the block (worker pool) it ran on was lost: the endpoint stopped hearing")
