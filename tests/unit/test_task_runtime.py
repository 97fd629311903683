"""``GlobusComputeTask.runtime`` counts from the app's start, as ``MPIExecutor``'s does from launch.

Waiting for the endpoint (its workers' start-up, a free node, a batch queue) must not count against
a sim's time budget: libEnsemble's ``executor_hworld`` kills a task whose ``runtime`` passes 6 s.
"""

from __future__ import annotations

import concurrent.futures
import time

import pytest
from globus_compute_sdk import ShellResult
from libensemble.executors.executor import Application

from bundle.executor.task import GlobusComputeTask


def _submitted(kind: str, workdir: str | None = None) -> tuple[GlobusComputeTask, concurrent.futures.Future[object]]:
    task = GlobusComputeTask(Application("/bin/app", "app"), workdir=workdir, kind=kind)
    fut: concurrent.futures.Future[object] = concurrent.futures.Future()
    task._submitted(fut)
    return task, fut


def test_runtime_is_zero_while_waiting_and_the_apps_own_time_once_finished() -> None:
    task, fut = _submitted("mpi")
    time.sleep(0.3)
    task.poll()
    assert task.state == "WAITING"
    assert task.runtime == 0
    assert task.time_since_submit >= 0.3
    result = ShellResult("app", "", "", 0)
    result.app_started, result.app_ended = 1000.0, 1001.25  # type: ignore[attr-defined]
    fut.set_result(result)
    task.poll()
    assert task.state == "FINISHED"
    assert task.runtime == pytest.approx(1.25)
    assert task.total_time is not None and task.total_time >= 0.3
    assert task.time_since_submit == task.total_time


def test_runtime_counts_from_when_the_app_is_seen_running(tmp_path: object) -> None:
    task, fut = _submitted("mpi", workdir=str(tmp_path))
    time.sleep(0.3)
    task.poll()
    assert (task.state, task.runtime) == ("WAITING", 0)
    (tmp_path / task.stdout).write_text("")  # type: ignore[operator]  # the endpoint opened the app's stdout
    task.poll()
    assert task.state == "RUNNING"
    time.sleep(0.2)
    task.poll()
    assert 0.2 <= task.runtime < task.time_since_submit - 0.2
    task.kill(wait_time=None)
    assert task.state == "USER_KILLED" and 0.2 <= task.runtime < task.total_time  # type: ignore[operator]
    fut.cancel()


def test_a_task_that_never_ran_has_no_runtime() -> None:
    task, fut = _submitted("mpi")
    time.sleep(0.1)
    fut.set_result(ShellResult("app", "", "killed before it started\n", 143, "KilledBeforeStart"))
    task.poll()
    assert task.runtime == 0 and task.total_time is not None and task.total_time >= 0.1


def test_python_task_runtime_is_the_calls_time_and_its_value_is_returned() -> None:
    task, fut = _submitted("python")
    time.sleep(0.1)
    fut.set_result(({"answer": 42}, 50.0, 50.5))  # run_python's (value, started, ended)
    assert task.result() == {"answer": 42}
    assert task.runtime == pytest.approx(0.5) and task.total_time is not None and task.total_time >= 0.1


def test_the_runners_stamp_the_apps_start_and_end(tmp_path: object) -> None:
    from bundle.executor.remote import run_app, run_python

    before = time.time()
    result = run_app("sleep 0.2", False, str(tmp_path), "app.out", "app.err", None, "runtime-test")
    assert result.returncode == 0
    assert before <= result.app_started and result.app_ended - result.app_started >= 0.2
    value, started, ended = run_python(sorted, ([3, 1, 2],), {}, None)
    assert value == [1, 2, 3] and before <= started <= ended
