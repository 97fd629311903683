"""GlobusComputeExecutor on the local endpoint: real engine, real mpiexec, a compiled MPI app."""

from __future__ import annotations

import os
import pathlib
import sys
import time

import pytest
from globus_compute_sdk import MPIFunction
from globus_compute_sdk.errors import TaskExecutionFailed
from libensemble.executors.executor import TimeoutExpired
from libensemble.message_numbers import WORKER_DONE, WORKER_KILL_ON_TIMEOUT

from bundle import GlobusComputeExecutor
from bundle.endpoints.local import reaper
from bundle.endpoints.session import GCSession
from bundle.executor.remote import KILL_FILE, MARKER_ENV

CONFIG = {"slots_per_node": 2, "max_workers_per_block": 2}


@pytest.fixture
def exctr(mpi_probe, tmp_path, monkeypatch):
    """The executor, with the probe registered, submitting from a fresh sim directory."""
    monkeypatch.chdir(tmp_path)
    ex = GlobusComputeExecutor("local", user_endpoint_config=CONFIG)
    ex.register_app(str(mpi_probe), app_name="probe")
    ex.register_app("/bin/sh", app_name="sh", mpi=False)
    return ex


def _marked(task) -> list[int]:
    return reaper.find_with_env(MARKER_ENV, task.marker)


def _gone(task, timeout: float = 15.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not _marked(task):
            return True
        time.sleep(0.2)
    return False


def _until(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("ranks", [1, 2])
def test_ranks_run_in_the_sim_directory_with_the_launch_line_reported(exctr, mpi_probe, tmp_path, ranks):
    task = exctr.submit(app_name="probe", app_args="alpha --write out.txt beta", num_procs=ranks)
    assert task.state in ("WAITING", "RUNNING") and task.submit_time is not None
    task.wait(timeout=120)
    assert (task.state, task.errcode, task.success) == ("FINISHED", 0, True), task.read_stderr()
    assert task.runline == f"mpiexec -n {ranks} -ppn {ranks} -hosts localhost {mpi_probe} alpha --write out.txt beta"
    out = task.read_stdout()
    assert f"size={ranks}\n" in out
    for r in range(ranks):
        assert f"rank={r} " in out
    assert out.count(f"cwd={tmp_path}\n") == ranks
    assert "argv=alpha --write out.txt beta\n" in out
    assert "probe stderr from rank 0" in task.read_stderr()
    # output files and the app's own files land in the submitting sim's directory
    assert (tmp_path / task.stdout).read_text() == out
    assert (tmp_path / "out.txt").read_text() == f"{ranks}\n"
    assert task.runtime > 0 and task.result() == "FINISHED"


def test_a_multi_line_mpi_script_sets_up_then_launches_where_the_prefix_is(exctr, mpi_probe, tmp_path):
    script = (
        f"set -e\nmkdir -p sub\ncd sub\nexport PROBE_NOTE=set-up\n$PARSL_MPI_PREFIX {mpi_probe} in-sub\n"
        'echo "note=$PROBE_NOTE"\n'
    )
    task = exctr.submit(func=MPIFunction(script), num_procs=2)
    task.wait(timeout=120)
    assert (task.state, task.errcode) == ("FINISHED", 0), task.read_stderr()
    out = task.read_stdout()
    assert "size=2\n" in out and out.count(f"cwd={tmp_path / 'sub'}\n") == 2, out
    assert "argv=in-sub\n" in out and out.endswith("note=set-up\n")
    assert f"\ncd sub\nexport PROBE_NOTE=set-up\nmpiexec -n 2 -ppn 2 -hosts localhost {mpi_probe} in-sub\n" in (
        task.runline
    )
    failing = exctr.submit(func=MPIFunction(f"set -e\n$PARSL_MPI_PREFIX {mpi_probe} --exit 3\necho after\n"))
    failing.wait(timeout=120)
    assert (failing.state, failing.errcode) == ("FAILED", 3), "with set -e, errcode is the launch's exit status"
    assert "after" not in failing.read_stdout()


def test_failing_app_gives_failed_and_its_exit_code(exctr):
    task = exctr.submit(app_name="probe", app_args="--exit 7", num_procs=2)
    assert task.result(timeout=120) == "FAILED"
    assert (task.errcode, task.success, task.finished) == (7, False, True)
    (pathlib.Path.cwd() / "fail.sh").write_text("echo to-out; echo to-err >&2; exit 3\n")
    serial = exctr.submit(app_name="sh", app_args="fail.sh")
    serial.wait(timeout=120)
    assert (serial.state, serial.errcode) == ("FAILED", 3)
    assert serial.read_stdout() == "to-out\n" and serial.read_stderr() == "to-err\n"


def test_walltime_stops_the_app_with_code_124(exctr):
    task = exctr.submit(app_name="probe", app_args="--sleep 120", num_procs=2, walltime=3)
    task.wait(timeout=120)
    assert (task.state, task.errcode) == ("FAILED", 124)
    assert task.runtime < 60
    assert _gone(task), f"ranks of a timed-out task still alive: {_marked(task)}"


def test_kill_stops_a_running_app(exctr):
    task = exctr.submit(app_name="probe", app_args="--sleep 300", num_procs=2)
    assert _until(lambda: (task.poll(), task.state)[1] == "RUNNING", 120), task.state
    assert _until(lambda: len(_marked(task)) >= 3, 30), "expected mpiexec and two ranks"
    exctr.kill(task)
    assert (task.state, task.finished, task.success) == ("USER_KILLED", True, False)
    assert _gone(task), f"killed task's processes still alive: {_marked(task)}"
    assert _until(task.future.done, 30)
    task.poll()
    assert task.state == "USER_KILLED"


def _mpich_segments(pids: list[int]) -> list[str]:
    """The /dev/shm segments MPICH names after a launcher among ``pids`` (FNV-1a of ``kvs_<pid>_0``)."""
    found = []
    for pid in pids:
        digest = 2166136261
        for byte in f"kvs_{pid}_0".encode():
            digest = ((digest ^ byte) * 16777619) & 0xFFFFFFFF
        found += [str(p) for p in pathlib.Path("/dev/shm").glob(f"mpich_*_{digest:x}_*")]
    return found


def test_a_killed_mpi_task_leaves_no_shared_memory_segment(exctr):
    """A job stopped before MPI_Finalize leaves MPICH's segment; a later launcher with its pid would attach to it."""
    task = exctr.submit(app_name="probe", app_args="--sleep 300", num_procs=2)
    assert _until(lambda: len(_marked(task)) >= 3, 120), "expected the launcher and two ranks"
    launched = _marked(task)
    assert _until(lambda: _mpich_segments(launched), 30), f"no MPICH segment named after any of {launched}"
    segments = _mpich_segments(launched)
    exctr.kill(task)
    assert _gone(task), f"killed task's processes still alive: {_marked(task)}"
    # the runner removes them once the processes it stopped are gone
    assert _until(lambda: not any(os.path.exists(path) for path in segments), 10), (
        f"the killed job's shared memory is still in /dev/shm: {[p for p in segments if os.path.exists(p)]}"
    )


def test_kill_before_start_means_the_app_never_runs(exctr, tmp_path):
    blockers = [exctr.submit(app_name="probe", app_args="--sleep 300") for _ in range(2)]
    assert _until(lambda: all(len(_marked(b)) >= 2 for b in blockers), 120), "both slots should be busy"
    queued = exctr.submit(app_name="probe", app_args="--sleep 300")
    time.sleep(1)
    queued.poll()
    assert queued.state == "WAITING" and not _marked(queued)
    queued.kill()
    assert queued.state == "USER_KILLED"
    # its future is cancelled (the result will be ignored); the task API still reports the kill, never raising
    assert queued.future.cancelled()
    queued.poll()
    queued.wait(timeout=5)
    assert (queued.state, queued.finished, queued.success, queued.result()) == (
        "USER_KILLED",
        True,
        False,
        "USER_KILLED",
    )
    kill_file = tmp_path / KILL_FILE.format(marker=queued.marker)
    assert kill_file.exists(), "a queued app on a shared filesystem gets its kill file"
    for b in blockers:
        b.kill()
        assert b.state == "USER_KILLED" and not _marked(b), "kill() returns once a running app has ended"
    # The engine still hands the queued task a freed slot: the runner takes the kill file away before it would
    # start the app, and returns without starting it.
    assert _until(lambda: not kill_file.exists(), 60), "the queued task should reach the runner once a slot frees"
    assert not (tmp_path / queued.stdout).exists(), "the killed task's app started"
    assert not _marked(queued), "the killed task's app started"
    assert not list(tmp_path.glob(".libe-gc-kill-*")), "kill files are removed once seen"


def test_wait_timeout_raises_libensembles_timeout_expired(exctr):
    task = exctr.submit(app_name="probe", app_args="--sleep 300")
    with pytest.raises(TimeoutExpired, match=task.name):
        task.wait(timeout=1)
    assert not task.finished
    assert exctr.polling_loop(task, timeout=2, delay=0.2) == WORKER_KILL_ON_TIMEOUT
    assert task.state == "USER_KILLED" and _gone(task)
    quick = exctr.submit(app_name="probe", app_args="--sleep 0")
    assert exctr.polling_loop(quick, timeout=120, delay=0.1) == WORKER_DONE


def _square(x: float) -> float:
    return x * x


def _boom() -> None:
    raise ArithmeticError("remote failure for the test")


def test_python_functions_and_python_apps(exctr):
    exctr.register_app("square", app_name="square", pyobj=_square)
    assert exctr.submit(func=pow, args=(2, 10)).result(timeout=120) == 1024
    assert exctr.submit(app_name="square", args=(7,)).result(timeout=120) == 49
    task = exctr.submit(func=sorted, args=([3, 1, 2],), kwargs={"reverse": True})
    assert task.result(timeout=120) == [3, 2, 1] and task.state == "FINISHED" and task.errcode == 0
    bad = exctr.submit(func=_boom)
    with pytest.raises(TaskExecutionFailed, match="remote failure for the test"):
        bad.result(timeout=120)
    assert bad.state == "FAILED" and not bad.success
    with pytest.raises(ValueError, match="no stdout file"):
        bad.read_stdout()


def test_several_apps_side_by_side(exctr, mpi_probe, tmp_path):
    exctr.register_app(sys.executable, app_name="python")
    (tmp_path / "answer.sh").write_text("echo $((6 * 7))\n")
    (tmp_path / "ok.py").write_text("print('py ok')\n")
    tasks = [
        exctr.submit(app_name="probe", app_args="one", num_procs=2),
        exctr.submit(app_name="sh", app_args="answer.sh"),
        exctr.submit(app_name="python", app_args="ok.py"),
    ]
    for task in tasks:
        task.wait(timeout=120)
    assert [t.state for t in tasks] == ["FINISHED"] * 3
    assert "argv=one" in tasks[0].read_stdout()
    assert tasks[1].read_stdout() == "42\n"
    assert tasks[2].read_stdout() == "py ok\n"
    assert len({t.name for t in tasks}) == 3 and len({t.stdout for t in tasks}) == 3


def test_arguments_reach_the_app_verbatim_and_the_environment_as_mpiexecutor_sets_it(exctr, tmp_path):
    task = exctr.submit(app_name="probe", app_args='{"k": 1} x*y;touch${IFS}pwned $HOME', num_procs=2)
    task.wait(timeout=120)
    assert task.state == "FINISHED", task.read_stderr()
    assert 'argv={"k": 1} x*y;touch${IFS}pwned $HOME\n' in task.read_stdout()
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "env.sh").write_text('echo "SIMDIR=$LIBENSEMBLE_SIM_DIR"\n')
    env = exctr.submit(app_name="sh", app_args="env.sh")
    env.wait(timeout=120)
    assert env.read_stdout() == "SIMDIR=.\n"
    assert env.exception(timeout=10) == 0, "libEnsemble's Task.exception() gives the errcode"


def test_python_tasks_run_in_the_sims_directory(exctr, tmp_path):
    assert exctr.submit(func=os.getcwd).result(timeout=120) == str(tmp_path)


def test_a_task_the_endpoint_cannot_take_fails_to_start_instead_of_raising(exctr):
    exctr.submit(func=pow, args=(2, 2)).result(timeout=120)
    exctr.gc_executor().shutdown(wait=False, cancel_futures=True)
    task = exctr.submit(app_name="probe", app_args="x")
    assert (task.state, task.finished, task.success) == ("FAILED_TO_START", True, False)
    assert "shutdown" in str(task.error)
    with pytest.raises(ValueError, match="failed before its app ran"):
        task.read_stdout()
    GCSession.clear()  # drop the stopped endpoint so later tests get a fresh one


def test_a_slow_cloud_endpoint_never_holds_up_the_local_one(exctr, tmp_path):
    """A cloud endpoint whose service calls hang (creation, function registration) next to the local one."""
    import threading
    from unittest import mock

    import globus_compute_sdk

    cloud = "5f0c6ae5-8d2c-4fb8-9f0a-1b0c7f6f2e11"
    real = globus_compute_sdk.Executor
    creating, registering, release = threading.Event(), threading.Event(), threading.Event()

    def slow_register(*args, **kwargs):
        registering.set()
        release.wait(200)
        return "fn-run-app"

    def slow_executor(*args, **kwargs):
        creating.set()
        release.wait(200)
        inst = mock.create_autospec(real, instance=True)
        inst.register_function.side_effect = slow_register
        inst.resource_specification = None
        return inst

    fake = mock.create_autospec(real, side_effect=slow_executor)
    remote = GlobusComputeExecutor(cloud)
    remote.register_app("/apps/forces.x", app_name="forces")
    threads = []
    try:
        with mock.patch("globus_compute_sdk.Executor", fake):
            # 1. the cloud endpoint's executor is still being created: the session cache is not held
            threads.append(threading.Thread(target=GCSession.get_executor, args=(cloud,), daemon=True))
            threads[-1].start()
            assert creating.wait(30)
            assert exctr.submit(func=pow, args=(3, 4)).result(timeout=180) == 81
            assert threads[-1].is_alive(), "the cloud endpoint's executor is still being created"
            release.set()
            threads[-1].join(30)
            assert not threads[-1].is_alive()
            # 2. a submission to the cloud endpoint waits on its function registration: local submissions go on
            release.clear()
            threads.append(threading.Thread(target=remote.submit, kwargs={"app_name": "forces"}, daemon=True))
            threads[-1].start()
            assert registering.wait(30)
            (tmp_path / "ok.sh").write_text("exit 0\n")
            task = exctr.submit(app_name="sh", app_args="ok.sh")
            task.wait(timeout=180)
            assert task.state == "FINISHED" and task.errcode == 0
            assert threads[-1].is_alive(), "the cloud submission is still held up by its registration"
            release.set()
            threads[-1].join(30)
            assert not threads[-1].is_alive()
    finally:
        release.set()
        for thread in threads:
            thread.join(30)
    assert fake.call_count == 1


def _needs_missing_module() -> None:
    import not_installed_anywhere_xyz  # type: ignore[import-not-found]  # noqa: F401


def test_python_tasks_stop_when_the_first_fail_alike_and_undefined_names_are_refused(exctr):
    from bundle.errors import TaskSerializationError
    from bundle.executor.failfast import SystematicTaskError

    exctr.fail_fast = 3
    for _ in range(3):
        task = exctr.submit(func=_needs_missing_module)
        with pytest.raises(TaskExecutionFailed, match="not_installed_anywhere_xyz"):
            task.result(timeout=120)
    with pytest.raises(SystematicTaskError, match="No module named 'not_installed_anywhere_xyz'") as info:
        exctr.submit(func=_needs_missing_module)
    assert "first 3" in str(info.value) and "fail_fast=0" in str(info.value)
    exctr.fail_fast = 0
    assert exctr.submit(func=pow, args=(2, 3)).result(timeout=120) == 8
    # a function of the calling script reading a name the script never defined: refused before submitting
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec("def scaled(x):\n    return x * SCALLE\n", namespace)
    before = len(exctr.list_of_tasks)
    with pytest.raises(TaskSerializationError, match="'SCALLE'.*nothing was submitted|nothing was submitted.*'SCALLE'"):
        exctr.submit(func=namespace["scaled"], args=(2,))
    assert len(exctr.list_of_tasks) == before
