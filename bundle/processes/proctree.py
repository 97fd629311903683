"""Process trees, with psutil: find processes by an environment marker, list descendants, stop them.

The one place the bundle looks at other processes.  Users: the driver's watcher
(:mod:`bundle.endpoints.local.reaper`), the lost-block watch (:mod:`bundle.endpoints.local.blocks`), the engine's
shutdown (:mod:`bundle.endpoints.local.engine_host`) and the task runner that stops a killed app's
launcher and ranks on the endpoint (:mod:`bundle.executor.remote`).

:func:`find_with_env` and :func:`terminate` are also sent to endpoints **by value** inside the
task runner (see :mod:`bundle.wire.byvalue`), where this package may be missing: they use only
builtins and what they import themselves (``os``, ``signal``, ``time`` and ``psutil``, a
dependency of ``globus-compute-endpoint``), and call no other function of this module.

The watcher imports psutil too.  It starts in a process of its own that the driver does not
wait for; importing psutil added about 30 ms to its start here
(``python -X importtime -c "import psutil"``: 27-34 ms cumulative, on the shared 2-core test machine).
A scan costs more than reading ``/proc`` by hand did: :func:`descendants` took about 27-28 ms with
about 140 processes against 10-22 ms for the former reader, :func:`find_with_env` 15-17 ms against
6-9 ms (same machine, under load); the block watch scans each local block every 0.5 s.
"""

from __future__ import annotations

import os
import typing as t

import psutil


def find_with_env(name: str, value: str, exclude: frozenset[int] = frozenset()) -> list[int]:
    """Return the pids of processes started with ``name=value`` in their environment.

    Parameters
    ----------
    name, value : str
        The environment variable and its value.
    exclude : frozenset of int
        Pids to leave out (this process is always left out).

    Returns
    -------
    list of int
        Matching pids this user may read.  A process that renamed itself with ``setproctitle``
        may have overwritten its environment and is then not seen.
    """
    import os

    import psutil

    skip = set(exclude) | {os.getpid()}
    found = []
    for proc in psutil.process_iter():
        if proc.pid in skip:
            continue
        try:
            if proc.environ().get(name) == value:
                found.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return found


def terminate(pids: t.Iterable[int], grace: float = 3.0, tracker_wait: float = 1.0) -> None:
    """Send SIGTERM to ``pids``, then SIGKILL to those still alive after ``grace`` seconds.

    Returns once every process is gone (or a zombie), or ``grace`` seconds after the SIGKILL.
    A pid that now names another process (reused since it was found) is not signalled.  Once all
    are gone, the shared-memory segments MPICH names after a stopped launcher's pid are removed
    from ``/dev/shm`` (a job stopped before ``MPI_Finalize`` leaves them, and a later launcher
    with the same pid would attach to them and fail in ``MPI_Init``).

    Python's multiprocessing resource trackers among ``pids`` (a Parsl worker pool starts one for
    the queues it shares with its spawned workers) ignore SIGTERM and remove their processes' named
    semaphores (``/dev/shm/sem.mp-*``) once those processes are gone.  They are killed last: the
    others first, then a tracker still there ``tracker_wait`` seconds later (even with
    ``grace=0``); killed with the others, a tracker would leave the semaphores behind.

    Parameters
    ----------
    pids : iterable of int
        Processes to stop.
    grace : float
        Seconds between SIGTERM and SIGKILL, and at most as long again after SIGKILL.
    tracker_wait : float
        Seconds at least that a resource tracker among ``pids`` gets to end on its own after the others' SIGKILL.
    """
    import os
    import time

    import psutil

    def running(proc: psutil.Process) -> bool:
        try:
            return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def remove_mpich_segments(stopped: list[int]) -> None:
        # MPICH names a job's shared-memory segments after its launcher's PMI name, "kvs_<launcher pid>_0"
        # (FNV-1a hash); a job stopped before MPI_Finalize leaves them in /dev/shm, and a later launcher given
        # the same pid (pid numbers wrap) attaches to the stale segment and fails in MPI_Init.
        import glob

        for pid in stopped:
            digest = 2166136261
            for byte in f"kvs_{pid}_0".encode():
                digest = ((digest ^ byte) * 16777619) & 0xFFFFFFFF
            for kind in ("shm", "vci"):
                for path in glob.glob(f"/dev/shm/mpich_{kind}_{digest:x}_*"):
                    try:
                        os.remove(path)
                    except OSError:
                        pass

    def resource_tracker(proc: psutil.Process) -> bool:
        try:
            return "multiprocessing.resource_tracker" in " ".join(proc.cmdline())
        except psutil.Error:
            return False

    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.Error:
            continue
    stopped = [p.pid for p in procs]
    trackers = {p.pid for p in procs if resource_tracker(p)}
    for stop in ("terminate", "kill", "kill trackers"):
        procs = [p for p in procs if running(p)]
        for proc in procs:
            if stop == "kill" and proc.pid in trackers:
                continue  # it ends on its own once the others are gone, after removing their semaphores
            try:
                if stop == "terminate" and proc.name() == "mpiexec.gforker":
                    # MPICH's gforker takes a second to end after a SIGTERM (it polls its ranks); they are
                    # among the processes signalled here, so it is killed at once.
                    proc.kill()
                else:
                    getattr(proc, stop.split()[0])()
            except psutil.Error:
                pass
        wait = max(grace, tracker_wait) if stop == "kill" and trackers else grace
        end = time.monotonic() + wait
        while procs and time.monotonic() < end:
            time.sleep(0.05)
            procs = [p for p in procs if running(p)]
        if not procs:
            remove_mpich_segments(stopped)
            return


def start_time(pid: int) -> float | None:
    """Return psutil's ``create_time()`` of ``pid`` (tells it from a later process with its pid); None if gone."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


START_TIME_SLACK = 2.0
"""Seconds two :func:`start_time` readings of one process may differ by, read in different processes.

psutil adds the kernel's boot time (``btime`` of ``/proc/stat``, whole seconds, moved when the wall clock is
stepped) to a process's start ticks, and caches it per process: a clock step between two processes' first
readings shifts their values by a second or more.  A pid reused within this window would need the pid counter
to wrap within it."""


def same_start(first: float | None, second: float | None) -> bool:
    """Return whether two :func:`start_time` readings name one process start (None: unknown, never the same).

    Parameters
    ----------
    first, second : float or None
        Readings, possibly taken in different processes.

    Returns
    -------
    bool
        True when both are known and within :data:`START_TIME_SLACK` of each other.
    """
    return first is not None and second is not None and abs(first - second) < START_TIME_SLACK


def alive(pid: int) -> bool:
    """Return True while ``pid`` exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def same_process(pid: int, start: float | None) -> bool:
    """Return whether ``pid`` still runs and is the process that started at ``start``.

    Parameters
    ----------
    pid : int
        The process.
    start : float or None
        Its :func:`start_time` when it was seen (None: unknown, never the same).

    Returns
    -------
    bool
        True for the same live process.
    """
    return start is not None and alive(pid) and same_start(start_time(pid), start)


def descendants(seeds: t.Iterable[int], exclude: frozenset[int] = frozenset()) -> list[int]:
    """Return ``seeds`` and all their descendants.

    Parameters
    ----------
    seeds : iterable of int
        Pids whose process trees to collect.
    exclude : frozenset of int
        Pids to leave out, with their subtrees.

    Returns
    -------
    list of int
        Sorted pids.
    """
    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        ppid = proc.info.get("ppid")
        if ppid is not None:
            children.setdefault(int(ppid), []).append(proc.pid)
    found: set[int] = set()
    stack = list(seeds)
    while stack:
        pid = stack.pop()
        if pid in found or pid in exclude:
            continue
        found.add(pid)
        stack.extend(children.get(pid, []))
    return sorted(found)


def process_group(pid: int) -> int | None:
    """Return the process group id of ``pid``, or None when it is gone."""
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def group_members(group: int) -> list[int]:
    """Return the live (not zombie) processes of process group ``group``."""
    return [pid for pid in psutil.pids() if process_group(pid) == group and alive(pid)]


def command_mentions(pid: int, text: str) -> bool:
    """Return whether the command line or name of ``pid`` contains ``text``.

    Parameters
    ----------
    pid : int
        The process.
    text : str
        What to look for (the name covers a title set with ``setproctitle``).

    Returns
    -------
    bool
        False also when the process is gone or not readable.
    """
    try:
        proc = psutil.Process(pid)
        return any(text in part for part in (*proc.cmdline(), proc.name()))
    except psutil.Error:
        return False
