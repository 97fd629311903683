"""An executor-mode run that a sim stopped with an error the bundle explains: its cause said once.

A sim that raises ends libEnsemble's run: the manager logs the worker's message and its
traceback on the console, then raises ``LoggedException`` quoting the message again, which
Python prints with a traceback of its own.  When the sim's error is one the bundle raised with a
message that already says what happened and what to change (fail-fast's
:class:`~bundle.executor.failfast.SystematicTaskError`, a return whose fields differ from
``sim_specs["out"]``: :class:`~bundle.gconly.normalize.SimOutputError`), a run of
:class:`bundle.Ensemble` or ``bundle.libE`` keeps libEnsemble's copies of it off the console
(:func:`off_console_once_explained`; ``ensemble.log`` keeps every record) and ends with
:class:`RunStoppedBySim` (:func:`stopped_by`): the message once, then where the details and the
saved history are.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import typing as t

from libensemble.manager import LoggedException

from bundle.errors import BundleError
from bundle.gconly.resume import find_saved_history

__all__ = ["EXPLAINED", "RunStoppedBySim", "off_console_once_explained", "stopped_by", "workflow_dir_of"]

EXPLAINED = ("bundle.executor.failfast.SystematicTaskError", "bundle.gconly.normalize.SimOutputError")
"""The errors (as libEnsemble's worker names them) whose message says it all."""

_LOGGERS = ("libensemble.manager", "libensemble.libE")
"""libEnsemble's loggers that report a worker's error and the abort that follows."""


class RunStoppedBySim(BundleError, LoggedException, RuntimeError):  # type: ignore[misc]  # libensemble is untyped
    """A sim stopped an executor-mode run with an error the bundle explains (fail-fast, a malformed return).

    Also libEnsemble's ``LoggedException``, which a stock run raises when a sim's error stops the manager.

    Attributes
    ----------
    error_type : str
        The sim's error, as libEnsemble's worker names it (``module.Class``).
    """

    def __init__(self, message: str, *, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def _explained(text: str) -> str | None:
    """Return the explained error's name that ``text`` starts with or quotes, or None."""
    return next((name for name in EXPLAINED if f"{name}: " in text), None)


class _OffConsoleOnceExplained(logging.Filter):
    """From the first record quoting an explained error on: such records go to libEnsemble's log files only.

    Set on the loggers that emit them (libEnsemble adds its console handler when the run starts,
    after this filter is in place), it hands each such record to the ``libensemble`` logger's
    handlers other than its console one, and keeps it from the console.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        if not self.seen and _explained(record.getMessage()) is None:
            return True
        self.seen = True
        for handler in logging.getLogger("libensemble").handlers:
            if type(handler) is not logging.StreamHandler and record.levelno >= handler.level:
                handler.handle(record)
        return False


def workflow_dir_of(libE_specs: t.Any) -> str | None:
    """Return ``workflow_dir_path`` of ``libE_specs`` (a dict, libEnsemble's ``LibeSpecs`` or None), or None."""
    if isinstance(libE_specs, dict):
        return libE_specs.get("workflow_dir_path")
    found = getattr(libE_specs, "workflow_dir_path", None)
    return None if found is None else str(found)


def stopped_by(err: BaseException, workflow_dir: str | pathlib.Path | None = None) -> RunStoppedBySim | None:
    """Return the error to end the run with, when ``err`` is libEnsemble's report of an explained sim error.

    Parameters
    ----------
    err : BaseException
        What the run raised.
    workflow_dir : path, optional
        Where libEnsemble saves its history on an abort (``libE_specs["workflow_dir_path"]``; default the
        working directory).

    Returns
    -------
    RunStoppedBySim or None
        The message once, then where the details and the saved history are; None for any other error.
    """
    if not isinstance(err, LoggedException) or isinstance(err, RunStoppedBySim):
        return None
    texts = [str(arg) for arg in err.args]
    name = next((found for found in map(_explained, texts) if found), None)
    if name is None:
        return None
    quoted = next(text for text in texts if f"{name}: " in text)
    message = quoted.split(f"{name}: ", 1)[1].rstrip()
    where = next((text for text in texts if text.startswith("Received error message from worker")), "")
    worker = where.removeprefix("Received error message from ").strip() or "a worker"
    saved = find_saved_history(pathlib.Path(workflow_dir or ".").absolute())
    history = f"history saved in {saved}" if saved is not None else "no history was saved"
    details = f"Raised by a sim on {worker} ({name.rsplit('.', 1)[1]}); details in ensemble.log; {history}."
    return RunStoppedBySim(f"{message}\n{details}", error_type=name)


@contextlib.contextmanager
def off_console_once_explained() -> t.Iterator[None]:
    """Keep libEnsemble's console copies of an explained sim error (and of the abort after it) off stderr.

    For the run inside the context; ``ensemble.log`` still gets every record.  The caller then ends
    the run with :func:`stopped_by`'s error.
    """
    quiet = _OffConsoleOnceExplained()
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)
