"""Which Python task histories stop further submissions (no endpoint needed)."""

from __future__ import annotations

import types

from globus_compute_sdk.errors import TaskExecutionFailed

from bundle.executor.failfast import systematic_failure


def _task(state: str, error: str | None = None, kind: str = "python", finished: bool = True) -> types.SimpleNamespace:
    failed = None if error is None else TaskExecutionFailed(error)  # what a failed task's future holds
    return types.SimpleNamespace(kind=kind, state=state, finished=finished, error=failed, name="t")


def test_only_the_first_ended_python_tasks_failing_alike_stop_submissions():
    name_error = (
        "Traceback (most recent call last):\n  File \"f.py\", line 1, in f\nNameError: name 'np' is not defined\n"
    )
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


def test_errors_that_mention_pickle_are_compared_by_their_own_type_and_message():
    """The SDK appends the same help paragraph (ending in a URL) to both: they must not count as alike."""
    tb = 'Traceback (most recent call last):\n  File "f.py", line 1, in f\n    pickle.dumps(state)\n{}\n'
    differ = [
        _task("FAILED", tb.format(e)) for e in ("ValueError: bad state", "KeyError: 'f'", "ValueError: bad state")
    ]
    assert systematic_failure(differ, 3) is None
    alike = [_task("FAILED", tb.format("ValueError: bad state")) for _ in range(3)]
    stop = systematic_failure(alike, 3)
    assert stop is not None and stop.cause == "ValueError: bad state" and "http" not in str(stop)
