"""How failed sims count toward fail-fast, and malformed returns, on the dispatcher (a stand-in SDK executor).

The SDK ``Executor`` is replaced by an autospec of the real class whose futures the test completes,
so the virtual workers' answers can be driven one by one without an engine.
"""

from __future__ import annotations

import concurrent.futures
import pathlib
import typing as t
from unittest import mock

import globus_compute_sdk
import numpy as np
import pytest
from libensemble.message_numbers import EVAL_SIM_TAG, TASK_FAILED

from bundle.gconly import SystematicSimError
from bundle.gconly.dispatch import SimDispatcher
from bundle.gconly.failfast import FailFast

IN = np.dtype([("x", float, (2,))])
OUT = [("f", float)]


def sphere(H, persis_info, sim_specs, libE_info):
    out = np.zeros(len(H), dtype=sim_specs["out"])
    out["f"] = np.sum(H["x"] ** 2, axis=1)
    return out, persis_info


class ManagerLost(Exception):
    """Stands in for Parsl's ``ManagerLost`` (same name, as the SDK reports it)."""


def _dispatcher(tmp_path: pathlib.Path, nworkers: int, batch_size: int, fail_fast: int) -> tuple[SimDispatcher, list]:
    executor = mock.create_autospec(globus_compute_sdk.Executor, instance=True)
    executor.register_function.return_value = "fid"
    futures: list[concurrent.futures.Future[t.Any]] = []

    def submit(*args: t.Any, **kwargs: t.Any) -> concurrent.futures.Future[t.Any]:
        futures.append(concurrent.futures.Future())
        return futures[-1]

    executor.submit_to_registered_function.side_effect = submit
    specs = {"sim_f": sphere, "in": ["x"], "out": OUT, "user": {}}
    dispatcher = SimDispatcher(executor, specs, nworkers, batch_size, tmp_path / "errors", pack_calls=False)
    dispatcher.failfast = FailFast(fail_fast, tmp_path / "errors")
    dispatcher.on_send(1, 0, {EVAL_SIM_TAG: IN})  # the manager's start-up message: history dtypes
    return dispatcher, futures


def _give(dispatcher: SimDispatcher, w: int, sim_id: int) -> None:
    work = {"tag": EVAL_SIM_TAG, "persis_info": {}, "H_fields": ["x"], "libE_info": {"H_rows": np.array([sim_id])}}
    dispatcher.on_send(w, EVAL_SIM_TAG, work)
    dispatcher.on_send(w, 0, np.ones(1, dtype=IN))


def _answers(dispatcher: SimDispatcher, workers: t.Iterable[int]) -> list[dict[str, t.Any]]:
    return [dispatcher.recv(w, timeout=10)[1] for w in workers]


def test_a_lost_batch_counts_once_toward_fail_fast(tmp_path):
    """One ManagerLost for a task of four sims is one failure, not four alike (fail_fast=2 must not trip)."""
    dispatcher, futures = _dispatcher(tmp_path, nworkers=4, batch_size=4, fail_fast=2)
    for w in range(1, 5):
        _give(dispatcher, w, w - 1)
    dispatcher.mail_flag(1)  # the manager's poll sends the held batch
    assert len(futures) == 1, "the four sims should travel as one task"
    futures[0].set_exception(ManagerLost("Task failure due to loss of manager b'4f0a9c2d1e7b' on host vm"))
    answers = _answers(dispatcher, range(1, 5))  # raised SystematicSimError before the fix
    assert [a["calc_status"] for a in answers] == [TASK_FAILED] * 4 and len(dispatcher.errors) == 4
    assert dispatcher.fatal is None
    # a second lost task is the second alike failure: now the run stops
    for w in range(1, 5):
        _give(dispatcher, w, 4 + w)
    dispatcher.mail_flag(1)
    futures[1].set_exception(ManagerLost("Task failure due to loss of manager b'9b3e1d7c5a20' on host vm"))
    with pytest.raises(SystematicSimError, match="BlockLostError: the sim failed") as info:
        dispatcher.recv(1, timeout=10)
    assert "lost the workers" in str(info.value)
    with pytest.raises(SystematicSimError):  # said once, then every poll ends the manager's final receive at once
        dispatcher.mail_flag(2)


def test_a_return_with_other_fields_fails_the_sim_and_a_systematic_one_stops_the_run(tmp_path):
    dispatcher, futures = _dispatcher(tmp_path, nworkers=2, batch_size=1, fail_fast=3)
    wrong = np.zeros(1, dtype=[("F", np.float32)])  # sim_specs["out"] is [("f", float)]
    for sim_id in range(2):
        _give(dispatcher, sim_id + 1, sim_id)
        futures[sim_id].set_result((wrong, {}))
    answers = _answers(dispatcher, (1, 2))
    assert [a["calc_status"] for a in answers] == [TASK_FAILED, TASK_FAILED]
    assert all(np.isnan(a["calc_out"]["f"]).all() for a in answers)  # not a silent 0
    text = dispatcher.errors[0]
    assert "('F', float32)" in text and "('f', float64)" in text, text
    _give(dispatcher, 1, 2)
    futures[2].set_result((wrong, {}))
    with pytest.raises(SystematicSimError, match=r"fields \[\('F', float32\)\]") as info:
        dispatcher.recv(1, timeout=10)
    assert "Hint: fix what sim_f returns" in str(info.value)
