"""Ctrl-C and SIGTERM: stop what the run started, in order, and let libEnsemble save its history.

A terminal's Ctrl-C sends SIGINT to its whole foreground process group.  The engine's
processes (interchange, worker pools, MPI ranks, the watcher) run in process groups of their
own, so they never see it: the driver decides the order of shutdown.

On the first SIGINT or SIGTERM the handler

1. prints one line saying what it does (in the process that installed it; a forked libEnsemble
   worker stays quiet),
2. starts a thread that runs every registered stopper: tasks in flight are cancelled, the local
   endpoints' process trees are stopped and their batch jobs cancelled,
3. keeps libEnsemble's traceback of the abort off the console (``ensemble.log`` still has it),
4. raises :class:`~bundle.errors.RunInterrupted` in the main thread.  libEnsemble's manager takes
   it as any abort: it collects its workers and saves ``libE_history_at_abort_<n>.npy``;
   the uncaught exception then ends the script with one line naming that file, not a traceback.

A second signal (while the first is being handled, or within :data:`SECOND_WITHIN` seconds of it)
runs the stoppers at once with no grace (SIGKILL) and exits the process with ``128 + signal number``.

The handler is installed only from the main thread and only over Python's defaults
(``default_int_handler`` for SIGINT, ``SIG_DFL`` for SIGTERM): a handler of the user's stays.
"""

from __future__ import annotations

import glob
import logging
import os
import signal
import sys
import threading
import time
import types
import typing as t

from bundle.errors import RunInterrupted

__all__ = ["HISTORY_GLOB", "error", "expect_history_in", "install", "interrupted", "on_interrupt"]

log = logging.getLogger(__name__)

HISTORY_GLOB = "libE_history_at_abort_*.npy"
"""The files libEnsemble saves its history to on an abort."""

Stopper = t.Callable[[bool], None]
"""Called with ``now``: False on the first signal (stop with a short grace), True on the second (kill)."""

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_STOP_BUDGET = 8.0
"""Seconds the stoppers may take before the script's own exit goes on without them."""

SECOND_WITHIN = 30.0
"""A signal within this many seconds of the first (or while its stoppers run) is the second: exit at once.

Later, it starts a new stop (a notebook's next run, minutes after, is not killed by its first Ctrl-C)."""

_lock = threading.Lock()
_stoppers: list[Stopper] = []
_history_dirs: list[str] = []
_state: dict[str, t.Any] = {"owner": None, "count": 0, "signum": None, "at": 0.0, "thread": None, "hook": None}


def on_interrupt(stopper: Stopper) -> Stopper:
    """Register ``stopper`` to run when the run is interrupted; usable as a decorator.

    Parameters
    ----------
    stopper : callable
        Takes one bool, ``now``: stop with a short grace (first signal) or kill at once (second).
        It must not raise for "nothing to stop".

    Returns
    -------
    callable
        ``stopper`` itself.
    """
    with _lock:
        if stopper not in _stoppers:
            _stoppers.append(stopper)
    return stopper


def expect_history_in(path: str | os.PathLike[str]) -> None:
    """Name a folder where libEnsemble saves its history on an abort (the working directory is looked at too).

    Parameters
    ----------
    path : str or path-like
        libEnsemble's ``workflow_dir_path`` or the ensemble's working directory.
    """
    folder = os.path.abspath(os.fspath(path))
    with _lock:
        if folder not in _history_dirs:
            _history_dirs.append(folder)


def interrupted() -> int:
    """Return the signal number that interrupted this process, or 0."""
    return int(_state["signum"] or 0)


def error() -> RunInterrupted | None:
    """Return the error that says this process was interrupted, or None (for loops that must stop waiting)."""
    signum = interrupted()
    return RunInterrupted(f"the run was interrupted by {signal.Signals(signum).name}") if signum else None


def install() -> bool:
    """Install the handler for SIGINT and SIGTERM, where Python's defaults are in place.

    Called as a run is set up (executor, local endpoint, GC-only run); an interrupt already handled in
    this process is forgotten then, so a notebook's next run is not taken as interrupted.

    Returns
    -------
    bool
        Whether the handler is in place for SIGINT now (False outside the main thread, or where the
        user installed a handler of their own).
    """
    if threading.current_thread() is not threading.main_thread():
        return signal.getsignal(signal.SIGINT) is _handle
    thread = _state["thread"]
    if _state["signum"] and (thread is None or not thread.is_alive()):
        # A process that goes on after an interrupt (a notebook): the next run starts uninterrupted.
        _state.update(count=0, signum=None, at=0.0, thread=None)
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    for signum in _SIGNALS:
        if signal.getsignal(signum) in (defaults[signum], None):
            signal.signal(signum, _handle)
    if _state["owner"] is None:
        _state["owner"] = os.getpid()
    return signal.getsignal(signal.SIGINT) is _handle


def _after_fork_in_child() -> None:
    """Forget an interrupt seen by the parent, in a forked child (a libEnsemble worker process)."""
    _state.update(count=0, signum=None, at=0.0, thread=None)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _say(text: str) -> None:
    """Write one line to stderr, in the process that installed the handler only."""
    if _state["owner"] == os.getpid():
        try:
            sys.stderr.write(f"libe-gc: {text}\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # stderr closed
            pass


def _run_stoppers(now: bool) -> None:
    with _lock:
        stoppers = list(_stoppers)
    for stopper in stoppers:
        try:
            stopper(now)
        except Exception:
            log.exception("stopping after an interrupt failed in %r", stopper)


class _QuietAfterInterrupt(logging.Filter):
    """Drop libEnsemble's console copies of the abort's traceback; its log file keeps them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _state["signum"]


def _quiet_libensemble_console() -> None:
    for handler in logging.getLogger("libensemble").handlers:
        stream = getattr(handler, "stream", None)
        if stream in (sys.stderr, sys.__stderr__) and not any(
            isinstance(f, _QuietAfterInterrupt) for f in handler.filters
        ):
            handler.addFilter(_QuietAfterInterrupt())


def _saved_histories() -> list[str]:
    """History files libEnsemble saved since the interrupt, newest first."""
    with _lock:
        folders = [*_history_dirs, os.getcwd()]
    found = []
    for folder in dict.fromkeys(folders):
        for path in glob.glob(os.path.join(folder, HISTORY_GLOB)):
            try:
                if os.path.getmtime(path) >= _state["at"] - 1.0:
                    found.append(path)
            except OSError:
                pass
    return sorted(found, key=os.path.getmtime, reverse=True)


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: types.TracebackType | None, /) -> None:
    """After an interrupt, end the script with one line instead of the abort's traceback."""
    signum = _state["signum"]
    if not signum:
        previous = _state["hook"] or sys.__excepthook__
        previous(exc_type, exc, tb)
        return
    thread = _state["thread"]
    if thread is not None:
        thread.join(_STOP_BUDGET)
    histories = _saved_histories()
    where = f"history saved in {os.path.relpath(histories[0])}" if histories else "no history was saved"
    _say(f"run stopped by {signal.Signals(signum).name}; tasks cancelled, local endpoints stopped; {where}")


def _join_stoppers() -> None:
    """Let the stoppers finish (within their budget) before the process exits."""
    thread = _state["thread"]
    if thread is not None and thread is not threading.current_thread():
        thread.join(_STOP_BUDGET)


def _finish_stopping_at_exit() -> None:
    """Join the stoppers at exit: ``atexit`` in the driver, a ``multiprocessing`` finalizer in a worker process.

    A libEnsemble worker process on ``local`` comms ends through ``os._exit``, which skips ``atexit``
    and would cut the stoppers short (its local endpoint's run folder would stay in ``/tmp``).
    """
    import atexit
    import multiprocessing.util

    atexit.register(_join_stoppers)
    multiprocessing.util.Finalize(None, _join_stoppers, exitpriority=200)


def _stopping() -> bool:
    """Whether an interrupt is being handled: its stoppers still run, or it came less than ``SECOND_WITHIN`` ago."""
    thread = _state["thread"]
    return bool(_state["signum"]) and (
        (thread is not None and thread.is_alive()) or time.time() - _state["at"] < SECOND_WITHIN
    )


def _handle(signum: int, frame: types.FrameType | None) -> None:
    """Handle SIGINT and SIGTERM (see the module docstring)."""
    _state["count"] = _state["count"] + 1 if _stopping() else 1
    name = signal.Signals(signum).name
    if _state["count"] > 1:
        _say(f"second {name}: killing the local endpoints' processes and exiting now")
        worker = threading.Thread(target=_run_stoppers, args=(True,), name="libe-gc-kill", daemon=True)
        worker.start()
        worker.join(3.0)
        os._exit(128 + signum)
    _state.update(signum=signum, at=time.time())
    _say(
        f"{name}: stopping the run: cancelling its tasks and stopping the local endpoints; libEnsemble saves its "
        f"history ({HISTORY_GLOB}). Press Ctrl-C again to exit at once."
    )
    _quiet_libensemble_console()
    worker = threading.Thread(target=_run_stoppers, args=(False,), name="libe-gc-interrupt", daemon=True)
    _state["thread"] = worker
    worker.start()
    _finish_stopping_at_exit()
    if sys.excepthook is not _excepthook:
        _state["hook"] = sys.excepthook
        sys.excepthook = _excepthook
    raise RunInterrupted(f"the run was interrupted by {name}")  # the same words as error()
