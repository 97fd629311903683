"""Run libEnsemble's shipped test scripts from a copy of its tests tree, and account for their processes.

The tree is copied once per session (:func:`copy_tree`); each run then gets a folder of its
own (:func:`run_folder`) holding a fresh copy of the script's folder and links to the
tree's other folders, so ``../unit_tests`` and ``../forces_app`` resolve as in the tree while
the files a script leaves (``libE_stats.txt``, histories, ensemble folders) never reach
another run.  :func:`run_script` starts ``runner.py`` in its own session with a marker in its
environment, waits for it with a time limit, and afterwards finds every process that carries
the marker: one still alive after a grace period is reported (and stopped).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import uuid

import psutil

RUNNER = pathlib.Path(__file__).resolve().with_name("runner.py")
MARK = "LIBE_GC_PEER_RUN"
"""Environment variable set for a run's processes; its value names the run."""

ARGS = ("--nworkers", "3", "--comms", "local")
"""How the peer suite runs every script, as libEnsemble's own test runner does for local comms."""

_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.prof")
"""Left out of copies: byte code, and the profiles the 1.6.1 wheel ships (a profiling test checks it makes them)."""


def libensemble_tests() -> pathlib.Path:
    """Return the ``tests`` folder of the installed libEnsemble."""
    import libensemble

    return pathlib.Path(libensemble.__file__).resolve().parent / "tests"


def copy_tree(dest: pathlib.Path) -> pathlib.Path:
    """Copy libEnsemble's shipped tests tree to ``dest`` and build its forces app; return the copy.

    The wheel's ``forces_app/forces.x`` is a prebuilt binary for another platform (macOS, arm64
    in 1.6.1), so it is rebuilt from the source the wheel ships, with this environment's ``mpicc``.
    """
    from tests.executor.conftest import build

    tree = dest / "tests"
    shutil.copytree(libensemble_tests(), tree, ignore=_IGNORED)
    forces = tree / "forces_app" / "forces.x"
    forces.unlink(missing_ok=True)
    build(tree / "scaling_tests" / "forces" / "forces_app" / "forces.c", forces)
    return tree


def run_folder(tree: pathlib.Path, script: str, base: pathlib.Path) -> pathlib.Path:
    """Lay out a run of ``script`` (relative to the tree) under ``base``; return the script's path there.

    ``base`` gets a fresh copy of the script's folder and a link to every other folder of the tree.
    """
    rel = pathlib.PurePosixPath(script)
    folder = rel.parts[0]
    base.mkdir(parents=True)
    for entry in tree.iterdir():
        if entry.name == folder:
            shutil.copytree(entry, base / folder, ignore=_IGNORED)
        else:
            (base / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return base / rel


@dataclasses.dataclass
class RunResult:
    """What one run of a script did."""

    script: str
    mode: str
    returncode: int | None
    """The script's exit status (None: stopped at the time limit)."""
    seconds: float
    stdout: str
    stderr: str
    leftover: list[str]
    """Command lines of the run's processes still alive after it ended (they have been stopped)."""
    folder: pathlib.Path
    cpu_seconds: float = 0.0
    """CPU time (user and system) of the run's process and the descendants it waited for: a load-independent
    measure of its cost."""

    def tail(self, chars: int = 4000) -> str:
        """Return the end of the run's output, for assertion messages."""
        return f"--- stdout ---\n{self.stdout[-chars:]}\n--- stderr ---\n{self.stderr[-chars:]}"


def _env(token: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env[MARK] = token
    # With unbuffered output, Python's print writes the text and its newline apart, so the lines of
    # several MPI ranks (libEnsemble's six_hump_camel app prints one per rank) interleave in a shared
    # output file and test_stats_output's sim reads "1.231.23" as its first line.
    env.pop("PYTHONUNBUFFERED", None)
    return env


def marked(token: str) -> list[psutil.Process]:
    """Return the live processes started with ``token`` in their environment, and their descendants."""
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get(MARK) == token:
                found[proc.pid] = proc
                for child in proc.children(recursive=True):
                    found[child.pid] = child
        except (psutil.Error, OSError):
            continue
    alive = []
    for proc in found.values():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.Error:
            continue
    return alive


def _stop(procs: list[psutil.Process]) -> list[str]:
    """Stop ``procs`` (SIGTERM, then SIGKILL); return their command lines."""
    lines = []
    for proc in procs:
        try:
            lines.append(" ".join(proc.cmdline()) or proc.name())
            proc.terminate()
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(procs, timeout=5)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            continue
    return lines


_LIVE: set[int] = set()
"""Process ids of the runs going on (each leads a session of its own): what :func:`stop_live` stops."""


def _wait(pid: int, timeout: float | None) -> tuple[int | None, float]:
    """Wait for child ``pid``; return its exit status (None: still running at ``timeout``) and its CPU seconds.

    ``os.wait4`` gives the CPU time of this child and of the descendants it waited for, whatever
    else this process runs meanwhile (other runs in other threads).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime
        if deadline is not None and time.monotonic() >= deadline:
            return None, 0.0
        time.sleep(0.1)


def stop_live() -> None:
    """Stop the runs still going (an interrupted session): each run's whole session, at once."""
    for pid in list(_LIVE):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            continue


def run_script(
    tree: pathlib.Path, script: str, mode: str, base: pathlib.Path, timeout: float, grace: float = 15.0
) -> RunResult:
    """Run ``script`` (relative to ``tree``) in ``mode`` from its own folder under ``base``.

    Parameters
    ----------
    tree : pathlib.Path
        The session's copy of libEnsemble's tests tree.
    script : str
        For example ``"functionality_tests/test_uniform_sampling.py"``.
    mode : str
        ``stock``, ``executor`` or ``gconly``.
    base : pathlib.Path
        A folder that does not exist yet: the run's own.
    timeout : float
        Seconds before the run is stopped (its ``returncode`` is then None).
    grace : float
        Seconds the run's processes (engines, worker pools, MPI ranks) get to end after it exits.
    """
    path = run_folder(tree, script, base)
    token = uuid.uuid4().hex
    out_path, err_path = base / "run.out", base / "run.err"
    start = time.monotonic()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(RUNNER), mode, str(path), *ARGS],
            cwd=path.parent,
            env=_env(token),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        _LIVE.add(proc.pid)
        returncode: int | None = None
        try:
            returncode, cpu = _wait(proc.pid, timeout)
            if returncode is None:
                os.killpg(proc.pid, signal.SIGTERM)
                if _wait(proc.pid, 10)[0] is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    _wait(proc.pid, None)
        finally:
            _LIVE.discard(proc.pid)
            proc.returncode = -9 if returncode is None else returncode  # reaped here: Popen must not wait again
    seconds = time.monotonic() - start
    deadline = time.monotonic() + grace
    left = marked(token)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = marked(token)
    leftover = _stop(left)
    return RunResult(
        script,
        mode,
        returncode,
        seconds,
        out_path.read_text(errors="replace"),
        err_path.read_text(errors="replace"),
        leftover,
        base,
        cpu,
    )
