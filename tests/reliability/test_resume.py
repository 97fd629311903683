"""Driver crash and resume in GC-only mode: no sim lost, none duplicated.

* A real driver (subprocess, local endpoint, real engine) is SIGKILLed mid-run once libEnsemble
  has saved some history; the watcher must stop its engine; a rerun with ``resume=True``
  finishes the run.
* On a cloud endpoint (autospec'd SDK Executor) the resumed run reattaches the tasks in flight
  with ``reload_tasks`` instead of submitting them again.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
import typing as t
from unittest import mock

import globus_compute_sdk
import numpy as np
import pytest

from bundle.endpoints.session import GCSession
from bundle.gconly import EndpointUnavailableError, GCOnlyConfigError, GCOnlySpecs
from bundle.gconly.journal import JOURNAL_FILE, Journal, load_journal
from bundle.gconly.launch import run_gconly
from bundle.gconly.resume import find_saved_history, plan_resume, remaining_exit_criteria
from tests.conftest import cmdlines, engine_tree, wait_until_gone, watcher_log
from tests.gconly import sims
from tests.gconly.helpers import REPO, uniform_specs
from tests.reliability import resume_helpers as rh

EP = "0b6d1a55-5f7e-4f3c-9a54-3cbe1f1e7c11"


# --- journal and plan (no engine) ------------------------------------------------------------


class _Fut:
    def __init__(self, task_id: str | None) -> None:
        self.task_id = task_id


class _Exec:
    task_group_id = "tg-1"


def test_journal_records_ids_set_late_and_survives_a_torn_line(tmp_path):
    path = tmp_path / JOURNAL_FILE
    journal = Journal(path, _Exec(), "uuid-ep")
    early, late = _Fut("id-0"), _Fut(None)
    journal.submitted([[0]], False, early)
    journal.submitted([[1], [2]], True, late)
    late.task_id = "id-1"  # the SDK's submitter thread sets it later
    journal.done(early)
    journal.close()
    with path.open("a") as fh:
        fh.write('{"ev":"sub","t":9,"si')  # the writer killed mid-line
    state = load_journal(path)
    assert state.runs == 1 and state.task_group_id == "tg-1"
    assert state.tasks[0].task_id == "id-0" and state.tasks[0].done
    assert state.tasks[1].task_id == "id-1" and state.tasks[1].sims == [[1], [2]] and state.tasks[1].batched
    assert not state.tasks[1].done and 9 not in state.tasks
    assert state.next_seq == 2 and state.done_sims() == {0}
    resumed = Journal(path, _Exec(), "uuid-ep", state.next_seq, resume=True)
    resumed.submitted([[3]], False, _Fut("id-3"))
    resumed.close()
    again = load_journal(path)
    assert again.runs == 2 and again.tasks[2].task_id == "id-3" and again.tasks[0].done


def _saved(tmp_path, started: list[bool], ended: list[bool], name: str = "libE_history_after_sim_4.npy"):
    H = np.zeros(len(started), dtype=[("sim_id", int), ("sim_started", bool), ("sim_ended", bool), ("x", float)])
    H["sim_id"] = np.arange(len(started))
    H["sim_started"], H["sim_ended"], H["x"] = started, ended, np.arange(len(started)) / 10
    np.save(tmp_path / name, H)
    return H


def test_plan_requeues_started_unended_rows_and_sim_max_counts_the_whole_run(tmp_path):
    _saved(tmp_path, [True] * 4 + [False] * 2, [True, True, False, True, False, False], "libE_history_at_abort_1.npy")
    time.sleep(0.01)
    _saved(tmp_path, [True] * 5 + [False], [True, True, False, True, True, False])  # written last: wins
    plan = plan_resume(tmp_path, "libE_history", load_journal(tmp_path / JOURNAL_FILE))
    assert plan.history_file.name == "libE_history_after_sim_4.npy"
    assert plan.requeued == [2] and plan.ended == 4
    assert not plan.H0["sim_started"][2] and plan.H0["sim_ended"][[0, 1, 3, 4]].all()
    assert remaining_exit_criteria({"sim_max": 10, "wallclock_max": 5}, plan) == {"sim_max": 6, "wallclock_max": 5}
    with pytest.raises(GCOnlyConfigError, match="already holds 4 ended sims"):
        remaining_exit_criteria({"sim_max": 4}, plan)


def test_resume_without_saved_history_names_the_option(tmp_path):
    with pytest.raises(GCOnlyConfigError, match="save_every_k_sims"):
        plan_resume(tmp_path, "libE_history", load_journal(tmp_path / JOURNAL_FILE))
    _saved(tmp_path, [True], [True])
    with pytest.raises(GCOnlyConfigError, match="do not pass H0"):
        plan_resume(tmp_path, "libE_history", load_journal(tmp_path / JOURNAL_FILE), H0_given=True)


# --- a killed driver on the local endpoint (real engine, real processes) ----------------------

SIM_MAX = 40


def _driver(workdir, *extra: str, out: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *sys.path]))
    with (workdir / out).open("wb") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.resume_helpers", str(workdir), str(SIM_MAX), *extra],
            cwd=workdir,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )


def test_killed_driver_resumes_on_local_endpoint_without_losing_or_duplicating_sims(tmp_path):
    driver = _driver(tmp_path, out="first.out")
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and driver.poll() is None:
            saved = find_saved_history(tmp_path)
            if saved is not None and int(saved.stem.rsplit("_", 1)[1]) >= 2 * rh.SAVE_EVERY:
                break
            time.sleep(0.05)
        assert driver.poll() is None, (
            f"the driver ended before it could be killed:\n{(tmp_path / 'first.out').read_text()}"
        )
        token = rh.read_executions(tmp_path)[-1][2]
        procs = engine_tree(driver.pid, token)
        assert "process_worker_pool" in cmdlines(procs) or "interchange" in cmdlines(procs), cmdlines(procs)
        driver.send_signal(signal.SIGKILL)
        driver.wait(30)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(10)
    t_kill = time.monotonic()
    left = wait_until_gone([p.pid for p in procs], 30)
    reaped_s = time.monotonic() - t_kill
    assert left == [], (
        f"engine processes outlived the killed driver: {cmdlines(p for p in procs if p.pid in left)}\n"
        f"its watcher's log:\n{watcher_log(token)}"
    )

    saved_file = find_saved_history(tmp_path)
    assert saved_file is not None
    H_saved = np.load(saved_file)
    ended_saved = set(int(i) for i in H_saved["sim_id"][H_saved["sim_ended"]])
    inflight_saved = set(int(i) for i in H_saved["sim_id"][H_saved["sim_started"] & ~H_saved["sim_ended"]])
    before = rh.read_executions(tmp_path)
    journal_before = load_journal(tmp_path / JOURNAL_FILE)

    t0 = time.monotonic()
    second = _driver(tmp_path, "--resume", out="second.out")
    try:
        assert second.wait(120) == 0, (tmp_path / "second.out").read_text()
    finally:
        if second.poll() is None:
            second.kill()
            second.wait(10)
    resume_s = time.monotonic() - t0
    assert "DONE flag=0" in (tmp_path / "second.out").read_text()

    H = np.load(tmp_path / "final.npy")
    assert np.array_equal(H["sim_id"], np.arange(len(H))), "every sim_id exactly once"
    assert int(np.sum(H["sim_ended"])) == SIM_MAX, "sim_max counts the whole run"
    assert not np.any(H["sim_ended"] & ~H["sim_started"])
    for i in ended_saved:  # kept from the saved history, not recomputed
        assert H["sim_ended"][i] and H["x"][i, 0] == H_saved["x"][i, 0] and H["f"][i] == H_saved["f"][i]
    for i in inflight_saved:  # given out again and finished
        assert H["sim_ended"][i] and H["f"][i] == H["x"][i, 0]

    after = rh.read_executions(tmp_path)[len(before) :]
    runs = collections.Counter(sim_id for sim_id, _, _ in before + after)
    assert all(runs[i] == 1 for i in ended_saved), {i: runs[i] for i in ended_saved if runs[i] != 1}
    rerun_saved_rows = {sim_id for sim_id, _, _ in after if sim_id < len(H_saved)}
    assert rerun_saved_rows <= inflight_saved | set(int(i) for i in H_saved["sim_id"][~H_saved["sim_started"]])
    assert inflight_saved <= rerun_saved_rows
    assert load_journal(tmp_path / JOURNAL_FILE).runs == 2
    figures = {
        "saved_history": saved_file.name,
        "saved_ended": len(ended_saved),
        "saved_in_flight_requeued": len(inflight_saved),
        "executions_before_kill": len(before),
        "journal_tasks_before_kill": len(journal_before.tasks),
        "journal_done_before_kill": len(journal_before.done_sims()),
        "executions_after_resume": len(after),
        "wasted_executions": len(before) + len(after) - SIM_MAX,
        "engine_reaped_s": round(reaped_s, 2),
        "resume_run_s": round(resume_s, 1),
    }
    print("RESUME_FIGURES", json.dumps(figures))


# --- a cloud endpoint: reattach with reload_tasks ---------------------------------------------


def _cloud_executor(fake: rh.FakeService, task_group_id: str | None) -> mock.Mock:
    instance = mock.create_autospec(globus_compute_sdk.Executor, instance=True)
    instance.register_function.side_effect = fake.register
    instance.submit_to_registered_function.side_effect = fake.submit
    instance.serializer = fake.serializer
    instance.task_group_id = task_group_id
    instance.client = mock.create_autospec(globus_compute_sdk.Client, instance=True)
    instance.client.get_endpoint_status.return_value = {"status": "online"}
    return instance


def _sim_ids(args: tuple[t.Any, ...]) -> list[int]:
    return [int(i) for i in args[3]["H_rows"]]


@pytest.mark.parametrize("batch_size", [1, 2])
def test_resume_on_cloud_endpoint_reattaches_in_flight_tasks_with_reload_tasks(tmp_path, monkeypatch, batch_size):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "endpoint-home"))  # sims run under ~/libe_gc_runs on a UUID endpoint
    held_x = 1.0
    fake = rh.FakeService(
        hold=lambda args: (
            any(a[0]["x"][0, 0] > held_x for a in args[0]) if batch_size > 1 else args[0]["x"][0, 0] > held_x
        )
    )
    first = _cloud_executor(fake, fake.task_group_id)
    second = _cloud_executor(fake, None)
    cls = mock.create_autospec(globus_compute_sdk.Executor, side_effect=[first, second])
    monkeypatch.setattr(globus_compute_sdk, "Executor", cls)
    sim_max, nworkers = 60, 4
    specs = uniform_specs(sims.six_hump, nworkers, sim_max, endpoint=EP)
    libE_specs = {"nworkers": nworkers, "save_every_k_sims": 2}  # workflow_dir_path "." (cwd: tmp_path)
    try:
        with pytest.raises(EndpointUnavailableError, match="no result from endpoint"):
            run_gconly(
                *(specs[k] for k in ("sim_specs", "gen_specs", "exit_criteria", "persis_info", "alloc_specs")),
                libE_specs,
                gc_specs=GCOnlySpecs(batch_size=batch_size, result_timeout=1.5),
            )
        H_saved = np.load(find_saved_history(tmp_path))  # the cwd
        held = sorted(int(i) for i in H_saved["sim_id"][H_saved["sim_started"] & ~H_saved["sim_ended"]])
        assert held, "some sims must be in flight when the first run ends"
        submitted_first = len(fake.submitted)
        GCSession.clear()  # a new calling script: a new Executor

        released: list[float] = []

        def reload(task_group_id=None):
            futures = fake.reload(task_group_id)
            released.append(time.monotonic())
            fake.release()  # the held tasks finish after the reattach, as on a live endpoint
            return futures

        second.reload_tasks.side_effect = reload
        specs = uniform_specs(sims.six_hump, nworkers, sim_max, endpoint=EP, seed=8)
        specs["gen_specs"]["in"] = ["sim_id"]  # libEnsemble sends H0 to the persistent gen at its start
        H, _, flag, errors, _ = run_gconly(
            *(specs[k] for k in ("sim_specs", "gen_specs", "exit_criteria", "persis_info", "alloc_specs")),
            libE_specs,
            gc_specs=GCOnlySpecs(batch_size=batch_size, resume=True, result_timeout=30),
        )
    finally:
        fake.close()
    second.reload_tasks.assert_called_once_with(fake.task_group_id)
    assert flag == 0 and errors == {}
    resubmitted = {i for args in fake.submitted[submitted_first:] for i in _flatten(args, batch_size)}
    assert not resubmitted & set(held), f"in-flight sims {sorted(resubmitted & set(held))} were submitted again"
    assert np.array_equal(H["sim_id"], np.arange(len(H)))
    assert int(np.sum(H["sim_ended"])) == sim_max
    x = H["x"][held]
    expected = (
        (4 - 2.1 * x[:, 0] ** 2 + x[:, 0] ** 4 / 3) * x[:, 0] ** 2
        + x[:, 0] * x[:, 1]
        + (-4 + 4 * x[:, 1] ** 2) * x[:, 1] ** 2
    )
    assert np.allclose(H["f"][held], expected), "results of reattached tasks attach to their own sims"
    assert H["sim_ended"][held].all()
    print(
        "CLOUD_RESUME_FIGURES",
        json.dumps(
            {
                "batch_size": batch_size,
                "reattached": len(held),
                "submitted_after": len(fake.submitted) - submitted_first,
            }
        ),
    )


def _flatten(args: tuple[t.Any, ...], batch_size: int) -> list[int]:
    if batch_size > 1:
        return [i for one in args[0] for i in _sim_ids(one)]
    return _sim_ids(args)
