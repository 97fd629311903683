"""A task lost with its block says so: Parsl's ManagerLost becomes a BlockLostError naming the lost worker pool."""

from __future__ import annotations

import concurrent.futures

from globus_compute_endpoint.exception_handling import get_error_string
from libensemble.executors.executor import Application
from parsl.executors.high_throughput.errors import ManagerLost

from bundle.errors import BlockLostError, block_lost_message, lost_worker_pool


def _remote_text(err: BaseException) -> str:
    """The text a real endpoint returns for ``err`` (what the SDK puts in ``TaskExecutionFailed``)."""
    try:
        raise err
    except BaseException as raised:
        return str(get_error_string(exc=raised))


def test_lost_worker_pool_recognizes_manager_lost_also_as_remote_text():
    lost = ManagerLost(b"3e4f5a6b7c8d", "nid001234")
    assert lost_worker_pool(lost)
    assert lost_worker_pool(RuntimeError(_remote_text(lost)))
    assert not lost_worker_pool(RuntimeError("the app exited with code 1"))


def test_a_task_that_lost_its_block_fails_with_block_lost_error():
    from bundle.executor.task import GlobusComputeTask

    task = GlobusComputeTask(Application("/bin/app", "app"), kind="mpi")
    fut: concurrent.futures.Future[object] = concurrent.futures.Future()
    task._submitted(fut)
    original = ManagerLost(b"3e4f5a6b7c8d", "nid001234")
    fut.set_exception(original)
    task.poll()
    assert task.state == "FAILED" and isinstance(task.error, BlockLostError)
    assert task.error.__cause__ is original
    text = str(task.error)
    assert "block (worker pool) it ran on was lost" in text and "max_retries_on_system_failure" in text
    # The lost pool and its host, as Parsl names them.
    assert "loss of manager 3e4f5a6b7c8d on host nid001234" in text, text


def test_the_message_keeps_the_manager_line_of_a_remote_traceback():
    text = block_lost_message("the sim", RuntimeError(_remote_text(ManagerLost(b"a1b2", "n7"))))
    assert text.startswith("the sim failed: the block (worker pool) it ran on was lost: the endpoint stopped hearing")
    assert text.endswith("ManagerLost: Task failure due to loss of manager a1b2 on host n7)"), text


def test_the_cause_line_of_a_lost_sim_is_the_manager_line():
    from bundle.wire.remote_cause import cause_line

    remote = _remote_text(ManagerLost(b"a1b2", "n7"))
    text = f"BlockLostError: {block_lost_message('the sim', RuntimeError(remote))}\nTaskExecutionFailed: \n"
    text += "+" * 68 + "\n" + remote + "-" * 68  # as the endpoint wraps a remote traceback
    line = cause_line(text)  # the bundle's own error, which quotes the manager line, never the endpoint's rules
    assert line.startswith("BlockLostError: the sim failed: the block (worker pool) it ran on was lost"), line
    assert line.endswith("ManagerLost: Task failure due to loss of manager a1b2 on host n7)"), line
    assert "+++" not in line and "---" not in line
