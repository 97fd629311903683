"""Which Python task histories stop further submissions (no endpoint needed)."""

from __future__ import annotations

import types

from bundle.executor.failfast import systematic_failure


def _task(state: str, error: str | None = None, kind: str = "python", finished: bool = True) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        kind=kind, state=state, finished=finished, error=None if error is None else RuntimeError(error), name="t"
    )


def test_only_the_first_ended_python_tasks_failing_alike_stop_submissions():
    name_error = "Traceback ...\nNameError: name 'np' is not defined"
    alike = [_task("FAILED", name_error), _task("RUNNING", finished=False), _task("FINISHED", kind="mpi")]
    alike += [_task("FAILED", name_error), _task("FAILED", name_error)]
    stop = systematic_failure(alike, 3)
    assert stop is not None and stop.cause == "NameError: name 'np' is not defined"
    assert systematic_failure(alike, 0) is None
    assert systematic_failure(alike, 4) is None  # only three have ended
    success_first = [_task("FINISHED"), *[_task("FAILED", name_error)] * 3]
    assert systematic_failure(success_first, 3) is None
    differ = [_task("FAILED", "KeyError: 'a'"), _task("FAILED", "ValueError: 3"), _task("FAILED", "KeyError: 'a'")]
    assert systematic_failure(differ, 3) is None
    digits = [_task("FAILED", f"ValueError: bad row {i}") for i in range(3)]
    assert systematic_failure(digits, 3) is not None
