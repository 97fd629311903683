"""The function that runs a registered app on the endpoint.

:func:`run_app` is registered once per endpoint and receives each task's command
line, working directory and output files as arguments, so a task costs one
submission and no function registration.  It wraps the command in the SDK's
:class:`~globus_compute_sdk.MPIFunction` (``$PARSL_MPI_PREFIX`` prepended, so the
engine's launcher starts the ranks) or :class:`~globus_compute_sdk.ShellFunction`
(a serial app) and returns its :class:`~globus_compute_sdk.sdk.shell_function.ShellResult`.

The endpoint need not have this package installed: :func:`portable` makes a copy
of :func:`run_app` that is serialized by value.  For that, :func:`run_app` may use
only builtins and what it imports itself.
"""

from __future__ import annotations

import types
import typing as t

MARKER_ENV = "LIBE_GC_TASK"
"""Environment variable set for an app's processes (launcher and ranks); its value names the task."""


def run_app(
    cmd: str,
    mpi: bool,
    workdir: str | None,
    stdout: str,
    stderr: str,
    walltime: float | None,
    marker: str,
    snippet_lines: int = 1000,
) -> t.Any:
    """Run ``cmd`` in ``workdir`` with its output in ``stdout`` and ``stderr``; stop it at ``walltime``.

    Parameters
    ----------
    cmd : str
        The app and its arguments (the launcher prefix is added for MPI apps).
    mpi : bool
        Launch with ``$PARSL_MPI_PREFIX`` (an ``MPIFunction``) or as a serial ``ShellFunction``.
    workdir : str or None
        Working directory of the app (created if missing); None keeps the worker's.
    stdout, stderr : str
        Output files, relative to ``workdir`` unless absolute; removed first so they hold this task's output only.
    walltime : float or None
        Seconds after which the app is stopped and the return code is 124.
    marker : str
        Value of ``LIBE_GC_TASK`` in the app's environment, used to find its processes.
    snippet_lines : int
        Lines of output kept in the returned ``ShellResult``.

    Returns
    -------
    ShellResult
        The command line run, output snippets and return code.
    """
    import os
    import signal
    import time

    from globus_compute_sdk import MPIFunction, ShellFunction

    def marked() -> list[int]:
        needle = f"{MARKER_ENV}={marker}".encode()
        me = os.getpid()
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != me:
                try:
                    with open(f"/proc/{entry}/environ", "rb") as fh:
                        if needle in fh.read().split(b"\0"):
                            found.append(int(entry))
                except OSError:
                    pass
        return found

    result = None
    saved_cwd = os.getcwd()
    saved_env = {k: os.environ.get(k) for k in (MARKER_ENV, "GC_TASK_SANDBOX_DIR")}
    try:
        if workdir:
            os.makedirs(workdir, exist_ok=True)
            os.chdir(workdir)
        for path in (stdout, stderr):
            if os.path.exists(path):
                os.remove(path)
        os.environ[MARKER_ENV] = marker
        # ShellFunction runs in GC_TASK_SANDBOX_DIR (and warns into stderr when it is unset): point it here.
        os.environ["GC_TASK_SANDBOX_DIR"] = os.getcwd()
        cls = MPIFunction if mpi else ShellFunction
        fn = cls(cmd, stdout=stdout, stderr=stderr, walltime=walltime, snippet_lines=snippet_lines)
        result = fn()
        return result
    finally:
        # ShellFunction leaves a timed-out command running: stop the app's processes here.
        timed_out = walltime is not None and getattr(result, "returncode", 124) == 124
        left = marked() if timed_out else []
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in left:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            deadline = time.monotonic() + 3
            while left and time.monotonic() < deadline:
                time.sleep(0.05)
                left = [p for p in left if os.path.exists(f"/proc/{p}")]
            if not left:
                break
        os.chdir(saved_cwd)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def portable() -> types.FunctionType:
    """Return a copy of :func:`run_app` that serializes by value (the endpoint need not import this package).

    Returns
    -------
    function
        Same code and defaults, with only builtins as globals.
    """
    import builtins

    glb: dict[str, t.Any] = {"__builtins__": builtins, "__name__": "__main__", "MARKER_ENV": MARKER_ENV}
    fn = types.FunctionType(run_app.__code__, glb, "run_app", run_app.__defaults__)
    fn.__module__ = "__main__"
    fn.__qualname__ = "run_app"
    fn.__doc__ = run_app.__doc__
    return fn
