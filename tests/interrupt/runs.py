"""Start the interrupt driver as a terminal would (its own process group), signal the group, watch it end."""

from __future__ import annotations

import dataclasses
import glob
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psutil

from tests.conftest import cmdlines, wait_until_gone

DRIVER = pathlib.Path(__file__).with_name("driver.py")
ROOT = pathlib.Path(__file__).resolve().parents[2]
LEFT_IN_TMP = ("pymp-*", "libe-gc-*")
"""What runs used to leave in the temporary folder: multiprocessing listener folders, local endpoint run folders."""


@dataclasses.dataclass
class Interrupted:
    """What a signalled run did."""

    returncode: int | None
    seconds: float
    stdout: str
    stderr: str
    workdir: pathlib.Path
    tmpdir: pathlib.Path
    engine_pids: list[int]
    engine_names: str

    def tmp_left(self) -> list[str]:
        return tmp_left(self.tmpdir)

    def histories(self) -> list[pathlib.Path]:
        return sorted(self.workdir.glob("libE_history_at_abort_*.npy"))


def tmp_left(tmpdir: pathlib.Path) -> list[str]:
    """What a run left in ``tmpdir`` of the kinds it used to leave."""
    return sorted(p for pattern in LEFT_IN_TMP for p in glob.glob(str(tmpdir / pattern)))


class DriverRun:
    """The driver in a process group of its own, with a private ``TMPDIR`` and working directory."""

    def __init__(self, tmp_path: pathlib.Path, *args: str) -> None:
        self.workdir = tmp_path / "run"
        self.workdir.mkdir(parents=True)
        # Short, as a user's TMPDIR is: a Unix socket's path (the worker pool's listener) has ~100 bytes.
        self.tmpdir = pathlib.Path(tempfile.mkdtemp(prefix="itr-", dir="/tmp"))
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        env = dict(
            os.environ,
            TMPDIR=str(self.tmpdir),
            INTERRUPT_MARKS=str(self.marks),
            PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]),
        )
        self.proc = subprocess.Popen(
            [sys.executable, str(DRIVER), *args],
            cwd=self.workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            process_group=0,  # as a shell starts a job: the terminal signals this group
        )
        self.started = time.monotonic()

    def engine(self) -> list[psutil.Process]:
        """The processes the driver's engines started (its descendants, block shells detached by Parsl too)."""
        procs = {}
        try:
            for proc in psutil.Process(self.proc.pid).children(recursive=True):
                procs[proc.pid] = proc
        except psutil.Error:
            pass
        for proc in psutil.process_iter(["environ"]):
            try:
                if proc.info["environ"] and str(self.tmpdir) in proc.info["environ"].get("TMPDIR", ""):
                    if proc.pid != self.proc.pid:
                        procs[proc.pid] = proc
                        for child in proc.children(recursive=True):
                            procs[child.pid] = child
            except psutil.Error:
                continue
        return [p for p in procs.values() if "reaper.py" not in " ".join(_cmdline(p))]

    def wait_for(self, what: str, timeout: float = 120) -> None:
        """Wait until the run is at ``what``: ``starting`` (the engine is being started) or ``running``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the driver ended before {what}: {self.proc.communicate()}")
            if what == "starting" and glob.glob(str(self.tmpdir / "libe-gc-local-*" / "engine-0")):
                return
            if what == "running" and self._running():
                return
            time.sleep(0.1)
        raise AssertionError(f"the driver did not reach {what!r} within {timeout} s")

    def _running(self) -> bool:
        """An MPI app's ranks (executor mode) or a sim's start mark (GC-only) are there."""
        return any(self.marks.iterdir()) or "sleep 60" in cmdlines(self.engine())

    def signal(self, sig: int = signal.SIGINT, second_after: float | None = None, timeout: float = 30) -> Interrupted:
        """Send ``sig`` to the driver's process group (twice with ``second_after``); wait for it to end."""
        engine = self.engine()
        names = cmdlines(engine)
        t0 = time.monotonic()
        os.killpg(self.proc.pid, sig)
        if second_after is not None:
            time.sleep(second_after)
            os.killpg(self.proc.pid, sig)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            out, err = self.proc.communicate()
        seconds = time.monotonic() - t0
        return Interrupted(
            self.proc.returncode, seconds, out, err, self.workdir, self.tmpdir, [p.pid for p in engine], names
        )

    def kill(self) -> None:
        """Kill the driver's group and what its engines started (a test that failed midway)."""
        if self.proc.poll() is None:
            for proc in self.engine():
                try:
                    proc.kill()
                except psutil.Error:
                    pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(30)

    def tmp_left(self) -> list[str]:
        """What the run left in its TMPDIR."""
        return tmp_left(self.tmpdir)

    def remove_tmpdir(self) -> None:
        """Remove the private TMPDIR (after the test looked at what was left in it)."""
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def assert_stopped_cleanly(result: Interrupted, sig_name: str = "SIGINT", history: bool = True) -> None:
    """The run ended within 10 s, said so in one line, saved its history and left no process or /tmp folder."""
    assert result.returncode is not None and result.seconds < 10, (
        f"still running {result.seconds:.1f} s after {sig_name}:\n{result.stderr[-3000:]}"
    )
    assert result.returncode != 0, result.stdout
    assert "FINISHED" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("libe-gc: run stopped by")]
    assert len(lines) == 1 and sig_name in lines[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    if history:
        assert result.histories(), f"no libE_history_at_abort_*.npy in {result.workdir}: {result.stderr[-2000:]}"
        assert f"history saved in {result.histories()[-1].name}" in lines[0]
    left = wait_until_gone(result.engine_pids, 10)
    assert left == [], f"engine processes alive after {sig_name}: {left}\n{result.engine_names}"
    assert result.tmp_left() == [], f"left in TMPDIR: {result.tmp_left()}"
