"""Stop submitting Python tasks whose first runs all failed with the same error.

In executor mode a sim that submits a Python task (``submit(func=f)`` or a ``pyobj`` app) and
tolerates its failure would let a systematic bug (a ``NameError``, a module missing on the
endpoint) fail every task of the run.  When the first ``GlobusComputeExecutor.fail_fast``
Python tasks to end all failed with the same error (the remote exception's type and message,
digits ignored, see :mod:`bundle.wire.remote_cause`), the next Python ``submit`` raises
:class:`SystematicTaskError` in the sim, quoting the cause with a hint that fits it;
libEnsemble then ends the run as for any sim that raises.
"""

from __future__ import annotations

import typing as t

from bundle.errors import BundleError
from bundle.wire.remote_cause import cause_line, cause_signature, error_text, hint_for

if t.TYPE_CHECKING:
    from bundle.executor.task import GlobusComputeTask


class SystematicTaskError(BundleError, RuntimeError):
    """The first Python tasks of an executor all failed with the same error.

    Attributes
    ----------
    cause : str
        The line of the remote error that names it.
    """

    def __init__(self, message: str, *, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


def _text(task: GlobusComputeTask) -> str:
    return error_text(task.error) if task.error is not None else ""


def systematic_failure(tasks: t.Iterable[GlobusComputeTask], threshold: int) -> SystematicTaskError | None:
    """Return the error to raise when the first ``threshold`` ended Python tasks all failed alike.

    Parameters
    ----------
    tasks : iterable of GlobusComputeTask
        The executor's tasks, in submission order.
    threshold : int
        How many; 0 never stops.

    Returns
    -------
    SystematicTaskError or None
        None while fewer have ended, when one of them succeeded, or when their errors differ.
    """
    if threshold <= 0:
        return None
    ended: list[GlobusComputeTask] = []
    for task in tasks:
        if task.kind != "python" or not task.finished or task.state == "USER_KILLED":
            continue
        if task.state != "FAILED" or task.error is None:
            return None  # a success among the first: not systematic
        ended.append(task)
        if len(ended) == threshold:
            break
    if len(ended) < threshold:
        return None
    texts = [_text(t) for t in ended]
    if len({cause_signature(text) for text in texts}) != 1:
        return None
    cause = cause_line(texts[0])
    own = getattr(getattr(getattr(ended[0], "app", None), "pyobj", None), "__module__", None)
    return SystematicTaskError(
        f"not submitting more Python tasks: the first {threshold} ({', '.join(t.name for t in ended)}) all failed "
        f"on the endpoint with the same error:\n    {cause}\n"
        f"Hint: {hint_for(texts[0], subject='the Python function', own_module=own)}.\n"
        "Set the executor's fail_fast=0 to keep submitting.",
        cause=cause,
    )
