"""The functions that run a task on the endpoint.

:func:`run_app` and :func:`run_python` are registered once per endpoint; each task
sends only its arguments, so a task costs one submission and no function
registration.  :func:`run_app` wraps the command in the SDK's
:class:`~globus_compute_sdk.MPIFunction` (``$PARSL_MPI_PREFIX`` prepended, so the
engine's launcher starts the ranks) or :class:`~globus_compute_sdk.ShellFunction`
(a serial app) and returns its ``ShellResult``.

The endpoint need not have this package installed: :func:`portable` makes copies
that are serialized by value (:mod:`bundle.wire.byvalue`).  For that, these functions may use only
builtins, what they import themselves, and the names :func:`portable` binds: the marker
constants below and :func:`bundle.processes.proctree.find_with_env` / :func:`bundle.processes.proctree.terminate`
(by-value copies; they import psutil, which ``globus-compute-endpoint`` depends on).
"""

from __future__ import annotations

import types
import typing as t

from bundle.processes.proctree import find_with_env, terminate
from bundle.wire.byvalue import by_value

MARKER_ENV = "LIBE_GC_TASK"
"""Environment variable set for an app's processes (launcher and ranks); its value names the task."""

KILL_FILE = ".libe-gc-kill-{marker}"
"""Name, in the task's working directory, of the file that asks :func:`run_app` to stop the task."""


def run_app(
    cmd: str,
    mpi: bool,
    workdir: str | None,
    stdout: str,
    stderr: str,
    walltime: float | None,
    marker: str,
    snippet_lines: int = 1000,
    env: dict[str, str] | None = None,
    gpus: dict[str, t.Any] | None = None,
    script: bool = False,
) -> t.Any:
    """Run ``cmd`` in ``workdir`` with its output in ``stdout`` and ``stderr``; stop it at ``walltime`` or when asked.

    Parameters
    ----------
    cmd : str
        The app and its arguments, shell-quoted (the launcher prefix is added for MPI apps).
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
    env : dict, optional
        Extra environment variables for the app (``LIBENSEMBLE_SIM_DIR``).
    gpus : dict, optional
        The task's GPUs (see ``bundle.executor.gpus``): free devices of its nodes are claimed with
        ``gpus["claim"]`` before the app starts (a kill ends the wait) and released when it ends.
    script : bool
        ``cmd`` is a script that places ``$PARSL_MPI_PREFIX`` itself (``bundle.executor.scripts``): run it as
        written, as a ``ShellFunction`` (also when ``mpi``, which then only records the launch line).

    Returns
    -------
    ShellResult
        The command line run, output snippets and return code (143 when the task was killed); for an MPI
        app also ``launch_prefix``, the ``$PARSL_MPI_PREFIX`` the ranks were launched with.  When the app
        ran, ``app_started`` and ``app_ended`` hold ``time.time()`` on the endpoint just before it started
        and just after it ended (the task's ``runtime``).
    """
    import os
    import threading
    import time

    from globus_compute_sdk import MPIFunction, ShellFunction, ShellResult

    marker_env = MARKER_ENV
    kill_file = os.path.abspath(os.path.join(workdir or ".", KILL_FILE.format(marker=marker)))

    def stop_marked() -> None:
        terminate(find_with_env(marker_env, marker), grace=3.0)

    if os.path.exists(kill_file):  # killed before it started
        os.remove(kill_file)
        return ShellResult(cmd, "", "killed before it started\n", 143, "KilledBeforeStart")

    done = threading.Event()
    killed = threading.Event()

    def watch_kill_file() -> None:
        while not done.wait(0.25):
            if os.path.exists(kill_file):
                killed.set()
                stop_marked()
                return

    result = None
    held: list[t.Any] = []
    if gpus:
        # Waits until enough devices are free (at most gpus["timeout"] s), or until the task is killed.
        gpu_env, held = gpus["claim"](gpus, lambda: os.path.exists(kill_file))
        if os.path.exists(kill_file):  # killed while it waited for devices
            for handle in held:
                handle.close()
            os.remove(kill_file)
            return ShellResult(cmd, "", "killed before it started\n", 143, "KilledBeforeStart")
        env = {**(env or {}), **gpu_env}
    saved_cwd = os.getcwd()
    saved_env = {k: os.environ.get(k) for k in (marker_env, "GC_TASK_SANDBOX_DIR", *(env or {}))}
    watcher = threading.Thread(target=watch_kill_file, daemon=True)
    try:
        if workdir:
            os.makedirs(workdir, exist_ok=True)
            os.chdir(workdir)
        for path in (stdout, stderr):
            if os.path.exists(path):
                os.remove(path)
        os.environ.update(env or {})
        os.environ[marker_env] = marker
        # ShellFunction runs in GC_TASK_SANDBOX_DIR (and warns into stderr when it is unset): point it here.
        os.environ["GC_TASK_SANDBOX_DIR"] = os.getcwd()
        watcher.start()
        cls = MPIFunction if mpi and not script else ShellFunction
        fn = cls(cmd, stdout=stdout, stderr=stderr, walltime=walltime, snippet_lines=snippet_lines)
        started = time.time()
        result = fn()
        ended = time.time()
        if isinstance(result, ShellResult):
            result.app_started, result.app_ended = started, ended  # type: ignore[attr-defined]
        if mpi and isinstance(result, ShellResult):
            # The launch line the ranks were started with (the worker composed it for the nodes it gave the task).
            result.launch_prefix = " ".join(os.environ.get("PARSL_MPI_PREFIX", "").split())  # type: ignore[attr-defined]
        if killed.is_set() and isinstance(result, ShellResult):
            result.returncode = 143
            result.exception_name = "Killed"
        return result
    finally:
        done.set()
        # ShellFunction leaves a timed-out command running: stop the app's processes here.
        if walltime is not None and getattr(result, "returncode", 124) == 124:
            stop_marked()
        if os.path.exists(kill_file):
            os.remove(kill_file)
        for handle in held:  # frees the task's GPUs
            handle.close()
        os.chdir(saved_cwd)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_python(
    fn: t.Callable[..., t.Any], args: tuple[t.Any, ...], kwargs: dict[str, t.Any], workdir: str | None
) -> t.Any:
    """Call ``fn(*args, **kwargs)`` in ``workdir`` when that folder exists on the endpoint.

    Parameters
    ----------
    fn : callable
        The Python function (sent with each task, so it need not be registered).
    args, kwargs
        Its arguments.
    workdir : str or None
        The submitting sim's working directory.

    Returns
    -------
    tuple
        ``(value, started, ended)``: what ``fn`` returns, and ``time.time()`` on the endpoint just before
        and just after the call (the task's ``runtime``).
    """
    import os
    import time

    saved = os.getcwd()
    try:
        if workdir and os.path.isdir(workdir):
            os.chdir(workdir)
        started = time.time()
        value = fn(*args, **kwargs)
        return value, started, time.time()
    finally:
        os.chdir(saved)


def portable(which: str = "run_app") -> types.FunctionType:
    """Return a copy of :func:`run_app` or :func:`run_python` that serializes by value.

    Parameters
    ----------
    which : {"run_app", "run_python"}
        Which runner.

    Returns
    -------
    function
        Same code and defaults, with only builtins as globals (the endpoint need not import this package).
    """
    if which == "run_app":
        return by_value(run_app, callees=(find_with_env, terminate), MARKER_ENV=MARKER_ENV, KILL_FILE=KILL_FILE)
    return by_value({"run_python": run_python}[which])
