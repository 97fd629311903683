"""Stop every process a driver's local endpoints started, even if the driver is killed.

Parsl's interchange and worker pool outlive a driver killed with SIGKILL
(seen alive 20+ minutes later).  Before its first engine starts, a driver
process puts a unique token in its environment (``LIBE_GC_BUNDLE_OWNER``), so
every process it starts from then on (interchange, worker pool, workers,
``mpiexec`` and MPI ranks) inherits it, and it starts this module as a small
watcher in its own session.  When the driver exits for any reason (its pipe
closes or its pid disappears) the watcher sends SIGTERM, then SIGKILL, to every
process still carrying the token, and exits.

Only the standard library is used here, so the watcher starts fast; the scan
reads ``/proc/<pid>/environ`` (Linux; elsewhere the watcher is not started).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid

TOKEN_ENV = "LIBE_GC_BUNDLE_OWNER"
"""Environment variable that marks processes started under a driver."""

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
        Matching pids (only processes this user may read are seen).
    """
    needle = f"{TOKEN_ENV}={token}".encode()
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid in exclude:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                env = fh.read()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(pid)
    return found


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def sweep(token: str, exclude: frozenset[int] = frozenset(), grace: float = 3.0, budget: float = 20.0) -> int:
    """Terminate, then kill, every process carrying ``token``.

    Parameters
    ----------
    token : str
        The driver's token.
    exclude : frozenset of int
        Pids to spare.
    grace : float
        Seconds between SIGTERM and SIGKILL.
    budget : float
        Seconds to keep rescanning for processes started meanwhile.

    Returns
    -------
    int
        How many distinct processes were signalled.
    """
    deadline = time.monotonic() + budget
    signalled: set[int] = set()
    while time.monotonic() < deadline:
        pids = find_marked(token, exclude)
        if not pids:
            break
        signalled.update(pids)
        _signal_all(pids, signal.SIGTERM)
        end = min(deadline, time.monotonic() + grace)
        while time.monotonic() < end and find_marked(token, exclude):
            time.sleep(0.1)
        _signal_all(find_marked(token, exclude), signal.SIGKILL)
        time.sleep(0.1)
    return len(signalled)


def _driver_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


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
    fd = sys.stdin.fileno()
    while True:
        ready, _, _ = select.select([fd], [], [], poll)
        if ready and not os.read(fd, 4096):
            break
        if not _driver_alive(driver_pid):
            break
    sweep(token, exclude=frozenset({os.getpid()}))


def ensure_watcher() -> str | None:
    """Start this process's watcher once and mark the environment.

    Returns
    -------
    str or None
        The token now in ``os.environ``, or None where ``/proc`` is missing.
    """
    if not os.path.isdir("/proc/self"):
        return None
    with _lock:
        if _state.get("pid") == os.getpid():
            return str(_state["token"])
        token = f"{os.getpid()}-{uuid.uuid4().hex}"
        env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
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


def current_token() -> str | None:
    """The token of this process's watcher, if one was started."""
    with _lock:
        return str(_state["token"]) if _state.get("pid") == os.getpid() else None


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch(sys.argv[1], int(sys.argv[2]))
