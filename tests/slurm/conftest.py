"""A real multi-node Slurm (n1, n2, n3 on this machine) for the tests in this folder.

The session fixture ``slurm`` starts Slurm with ``.ci/slurm.sh up`` when it is
not running and this is root; otherwise the tests skip, saying why.  In CI
(``CI`` set) they never skip: a Slurm that cannot be started fails them.
At the end every job the tests submitted is cancelled, and the fixture checks
that none is left.  A job is this session's when its name marks it as the
bundle's (``parsl.libe-gc-*``) and its batch script lies under this session's
pytest temporary folder, so sessions sharing one Slurm leave each other's jobs
alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import typing as t
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SLURM_SH = ROOT / ".ci" / "slurm.sh"
JOB_PREFIX = "parsl.libe-gc-"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _unavailable(reason: str) -> t.NoReturn:
    if _in_ci():
        pytest.fail(f"Slurm tests must run in CI, but {reason}", pytrace=False)
    pytest.skip(reason)


def _slurm_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    return subprocess.run(["bash", str(SLURM_SH), "status"], capture_output=True).returncode == 0


_SESSION_ROOT: list[str] = []
"""This session's pytest temporary folder, set by the ``slurm`` fixture."""


def our_jobs() -> list[tuple[str, str, str]]:
    """(job id, name, state) of this session's jobs that are queued, running or completing."""
    out = subprocess.run(
        ["squeue", "--noheader", "--format=%i|%j|%T|%o"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    jobs = []
    for line in out.splitlines():
        parts = line.split("|", 3)
        if len(parts) != 4 or not parts[1].startswith(JOB_PREFIX):
            continue
        if _SESSION_ROOT and not parts[3].startswith(_SESSION_ROOT[0]):
            continue
        jobs.append((parts[0], parts[1], parts[2]))
    return jobs


def wait_no_jobs(timeout: float = 90.0) -> list[tuple[str, str, str]]:
    """Wait until none of this session's jobs is queued, running or completing; return those left."""
    deadline = time.monotonic() + timeout
    left = our_jobs()
    while left and time.monotonic() < deadline:
        time.sleep(1.0)
        left = our_jobs()
    return left


def cancel_ours() -> None:
    """Cancel this session's jobs."""
    ids = [job_id for job_id, _, _ in our_jobs()]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=30)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[None]:
    """A running Slurm cluster; every job the tests submitted is gone afterwards."""
    _SESSION_ROOT[:] = [str(tmp_path_factory.getbasetemp().resolve())]
    if not _slurm_up():
        if os.geteuid() != 0:
            _unavailable("Slurm is not running here and starting it (.ci/slurm.sh up) needs root")
        if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
            _unavailable("Slurm is not installed and there is no apt-get to install it")
        proc = subprocess.run(["bash", str(SLURM_SH), "up"], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not _slurm_up():
            _unavailable(f".ci/slurm.sh up failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    yield
    left = our_jobs()
    cancel_ours()
    assert wait_no_jobs() == [], "Slurm jobs were left behind"
    assert left == [], f"tests left Slurm jobs that had to be cancelled: {left}"


@pytest.fixture
def no_jobs_left(slurm: None) -> t.Iterator[None]:
    """After the test, no job of ours remains (the test must have stopped its engine)."""
    yield
    left = wait_no_jobs()
    if left:
        cancel_ours()
    assert left == [], f"the engine's shutdown left Slurm jobs: {left}"
