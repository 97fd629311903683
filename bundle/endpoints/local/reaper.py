"""Stop every process a driver's local endpoints started, even if the driver is killed.

Parsl's interchange and worker pool outlive a driver killed with SIGKILL
(seen alive 20+ minutes later).  Two marks find them:

* before its first engine starts, a driver process puts a unique token in its
  environment (``LIBE_GC_BUNDLE_OWNER``), which every process it starts from
  then on inherits (the block's shell, ``mpiexec``, MPI ranks);
* the interchange and worker pool rename themselves with ``setproctitle``,
  which overwrites ``/proc/<pid>/environ``, so the driver also registers the
  pids of the engine's root processes (interchange, block shells) with the
  watcher, which kills their whole process trees.

Blocks submitted to a batch scheduler are jobs, not local processes: the
driver also registers each job's cancel command (``scancel <id>``), which the
watcher runs when the driver is gone.  Temporary folders the driver made (a
local endpoint's run folder, the blocks' ``TMPDIR``) are registered too, and
removed once the processes are stopped, unless the driver said to keep one
(an engine that failed keeps its logs).

The watcher is this module, started once per driver in its own session.
When the driver exits for any reason (its pipe closes or its pid disappears)
the watcher cancels the registered batch jobs, sends SIGTERM, then SIGKILL, to
every marked process and all their descendants, and exits.

Processes are found and stopped with :mod:`bundle.processes.proctree` (psutil; the start-up cost of the
watcher is measured there).  The watcher runs on Linux only (elsewhere it is not started).

With ``LIBE_GC_WATCHER_LOG_DIR`` set to a folder in the driver's environment, the watcher writes what it was told
and, at the end, what it found and signalled to ``watcher-<token>.log`` there (the test suite sets it, so that a
process left behind can be explained).
"""

from __future__ import annotations

import atexit
import datetime
import os
import pathlib
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import typing as t
import uuid

import psutil

from bundle.processes.forksafe import after_fork_in_child
from bundle.processes.proctree import alive, descendants, find_with_env, same_start, start_time, terminate

__all__ = [
    "LOG_DIR_ENV",
    "TOKEN_ENV",
    "current_token",
    "descendants",
    "ensure_watcher",
    "find_marked",
    "find_with_env",
    "register",
    "register_cancel",
    "register_folder",
    "sweep",
    "terminate",
]

TOKEN_ENV = "LIBE_GC_BUNDLE_OWNER"
"""Environment variable that marks processes started under a driver."""

LOG_DIR_ENV = "LIBE_GC_WATCHER_LOG_DIR"
"""Environment variable naming a folder where each watcher writes ``watcher-<token>.log`` (unset: no log)."""

_lock = threading.Lock()
_state: dict[str, object] = {}


def find_marked(token: str, exclude: frozenset[int] = frozenset()) -> list[int]:
    """Return the pids of processes whose environment carries ``token``.

    Parameters
    ----------
    token : str
        The driver's token.
    exclude : frozenset of int
        Pids to leave out (the watcher itself).

    Returns
    -------
    list of int
        Matching pids (only processes this user may read are seen; processes
        that called ``setproctitle`` are not, see :func:`register`).
    """
    return find_with_env(TOKEN_ENV, token, exclude)


def targets(token: str, roots: dict[int, float], exclude: frozenset[int] = frozenset()) -> list[int]:
    """Token-marked processes plus live registered roots, with all their descendants.

    Parameters
    ----------
    token : str
        The driver's token.
    roots : dict
        Registered pid -> start time.
    exclude : frozenset of int
        Pids to leave out.

    Returns
    -------
    list of int
        Pids to stop.
    """
    seeds = set(find_marked(token, exclude))
    seeds.update(pid for pid, start in roots.items() if same_start(start_time(pid), start))
    return descendants(seeds, exclude)


def _named(pids: list[int]) -> str:
    """``pid:name`` of each pid, for the watcher's log."""
    words = []
    for pid in pids:
        try:
            words.append(f"{pid}:{psutil.Process(pid).name()}")
        except psutil.Error:
            words.append(f"{pid}:gone")
    return " ".join(words)


def _describe(token: str, roots: dict[int, float], exclude: frozenset[int]) -> str:
    """One line for the watcher's log: the marked processes, and each registered root's state."""
    states = []
    for pid, start in sorted(roots.items()):
        now = start_time(pid)
        state = "gone" if now is None else "same" if same_start(now, start) else f"other (started {now!r})"
        states.append(f"{pid}@{start!r}:{state}")
    return f"marked={sorted(find_marked(token, exclude))} roots=[{' '.join(states)}]"


def sweep(
    token: str,
    roots: dict[int, float] | None = None,
    exclude: frozenset[int] = frozenset(),
    grace: float = 3.0,
    budget: float = 20.0,
    log: t.Callable[[str], None] | None = None,
) -> int:
    """Terminate, then kill, every marked process and its descendants.

    Parameters
    ----------
    token : str
        The driver's token.
    roots : dict, optional
        Registered pid -> start time.
    exclude : frozenset of int
        Pids to spare.
    grace : float
        Seconds between SIGTERM and SIGKILL.
    budget : float
        Seconds to keep rescanning for processes started meanwhile.
    log : callable, optional
        Called with a line saying what each round found and signalled.

    Returns
    -------
    int
        How many distinct processes were signalled.
    """
    roots = dict(roots or {})
    deadline = time.monotonic() + budget
    signalled: set[int] = set()
    while time.monotonic() < deadline:
        if log is not None:
            log(f"sweep: {_describe(token, roots, exclude)}")
        pids = targets(token, roots, exclude)
        if log is not None:
            log(f"sweep: signalling {_named(pids)}")
        if not pids:
            break
        signalled.update(pids)
        terminate(pids, grace=max(0.0, min(grace, deadline - time.monotonic())))
        time.sleep(0.1)
    return len(signalled)


def watch(token: str, driver_pid: int, poll: float = 0.5) -> None:
    """Block until the driver is gone (stdin EOF or pid gone), then sweep.

    Parameters
    ----------
    token : str
        The driver's token.
    driver_pid : int
        The driver's pid.
    poll : float
        Seconds between liveness checks of the driver.
    """
    log = _log_file(token)
    log(f"watching driver {driver_pid}")
    fd = sys.stdin.fileno()
    roots: dict[int, float] = {}
    cancels: dict[str, list[str]] = {}
    folders: set[str] = set()
    pending = b""
    while True:
        ready, _, _ = select.select([fd], [], [], poll)
        if ready:
            data = os.read(fd, 4096)
            if not data:
                log("driver closed the pipe")
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.startswith(b"cancel "):
                    words = line.decode(errors="replace").split()[1:]
                    cancels[" ".join(words)] = words
                    continue
                if line.startswith((b"folder ", b"keep ")):
                    verb, _, path = line.partition(b" ")
                    (folders.add if verb == b"folder" else folders.discard)(os.fsdecode(path))
                    continue
                try:
                    pid, start = line.split()
                    roots[int(pid)] = float(start)
                except ValueError:
                    log(f"unreadable line from the driver: {line!r}")
                    continue
                log(f"root {int(pid)} started at {float(start)!r}")
        if not alive(driver_pid):
            log("driver is gone")
            break
    cancel_jobs(list(cancels.values()))
    count = sweep(token, roots, exclude=frozenset({os.getpid(), driver_pid}), log=log)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    log(f"done: {count} processes signalled, {len(cancels)} cancel commands run, {len(folders)} folders removed")


def _log_file(token: str) -> t.Callable[[str], None]:
    """Return the watcher's log: appends time-stamped lines to ``watcher-<token>.log`` in ``LOG_DIR_ENV``'s folder."""
    folder = os.environ.get(LOG_DIR_ENV)
    if not folder:
        return lambda line: None
    path = os.path.join(folder, f"watcher-{token}.log")

    def write(line: str) -> None:
        try:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(f"{datetime.datetime.now().isoformat(timespec='milliseconds')} {line}\n")
        except OSError:
            pass

    return write


def cancel_jobs(commands: list[list[str]], timeout: float = 30.0) -> None:
    """Run batch-job cancel commands (``scancel <id>``), ignoring failures (the job may be gone already).

    Parameters
    ----------
    commands : list of list of str
        Argument vectors, run without a shell.
    timeout : float
        Seconds each command may take.
    """
    for argv in commands:
        try:
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout, check=False)
        except (OSError, subprocess.SubprocessError):
            pass


def ensure_watcher() -> str | None:
    """Start this process's watcher once and mark the environment.

    Returns
    -------
    str or None
        The token now in ``os.environ``, or None off Linux.
    """
    if not sys.platform.startswith("linux"):
        return None
    with _lock:
        if _state.get("pid") == os.getpid():
            return str(_state["token"])
        token = f"{os.getpid()}-{uuid.uuid4().hex}"
        env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
        # The watcher runs this file as a script: make the package it imports findable from there.
        root = str(pathlib.Path(__file__).resolve().parents[3])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        read_end, write_end = os.pipe()
        proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), token, str(os.getpid())],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
        os.close(read_end)
        os.environ[TOKEN_ENV] = token
        _state.update(pid=os.getpid(), token=token, proc=proc, fd=write_end)
        return token


def _stop_watcher() -> None:
    """At interpreter exit: close the pipe so the watcher sweeps now, and wait for it."""
    with _lock:
        if _state.get("pid") != os.getpid():
            return
        try:
            os.close(int(t.cast(int, _state["fd"])))
        except OSError:
            pass
        proc = t.cast("subprocess.Popen[bytes]", _state["proc"])
        _state.clear()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass


# Registered at import, before any LocalEndpoint's own exit handler, so it runs after them.
atexit.register(_stop_watcher)


@after_fork_in_child
def _forget_parent_watcher() -> None:
    """In a forked child: drop the parent's pipe (its watcher must see EOF when the parent exits)."""
    global _lock
    _lock = threading.Lock()  # the parent's may have been held by another thread at fork time
    fd = _state.get("fd")
    _state.clear()
    if isinstance(fd, int):
        try:
            os.close(fd)
        except OSError:
            pass


def register(pid: int) -> None:
    """Have this process's watcher stop ``pid`` and its descendants when the driver exits.

    Parameters
    ----------
    pid : int
        A process the driver started (an interchange or a block's shell).
    """
    with _lock:
        if _state.get("pid") != os.getpid():
            return
        start = start_time(pid)
        if start is not None:
            os.write(int(t.cast(int, _state["fd"])), f"{pid} {start!r}\n".encode())


def register_cancel(argv: t.Sequence[str]) -> None:
    """Have this process's watcher run ``argv`` (a batch-job cancel command) when the driver exits.

    Parameters
    ----------
    argv : sequence of str
        The command, e.g. ``["scancel", "1234"]``; words must not contain whitespace.
    """
    words = [str(w) for w in argv]
    if not words or any(not w or any(c.isspace() for c in w) for w in words):
        raise ValueError(f"cancel command words must be non-empty and without whitespace: {words!r}")
    with _lock:
        if _state.get("pid") != os.getpid():
            return
        os.write(int(t.cast(int, _state["fd"])), ("cancel " + " ".join(words) + "\n").encode())


def register_folder(path: str | os.PathLike[str], keep: bool = False) -> None:
    """Have this process's watcher remove a temporary folder the driver made, once the driver is gone.

    Parameters
    ----------
    path : str or os.PathLike
        The folder (a local endpoint's run folder, a block's ``TMPDIR``); its name must not contain a newline.
    keep : bool
        True: forget an earlier registration, the folder stays (an engine that failed keeps its logs).
    """
    raw = os.fsencode(os.path.abspath(path))
    if b"\n" in raw:
        return  # cannot be told to the watcher; the driver's own clean-up still applies
    with _lock:
        if _state.get("pid") != os.getpid():
            return
        os.write(int(t.cast(int, _state["fd"])), (b"keep " if keep else b"folder ") + raw + b"\n")


def current_token() -> str | None:
    """Return the token of this process's watcher, if one was started."""
    with _lock:
        return str(_state["token"]) if _state.get("pid") == os.getpid() else None


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        watch(sys.argv[1], int(sys.argv[2]))
    except BaseException:
        import traceback

        _log_file(sys.argv[1])("the watcher failed:\n" + traceback.format_exc())
        raise
