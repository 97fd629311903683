"""Ctrl-C to the process group of a run on ``local:slurm``: the block's Slurm job is cancelled, in both modes."""

import signal
import subprocess
import time

import pytest

from tests.interrupt.conftest import driver_run  # noqa: F401  (the fixture)
from tests.interrupt.runs import assert_stopped_cleanly


def _jobs_under(folder) -> list[str]:
    """Queued or running jobs whose batch script lies under ``folder`` (the run's own)."""
    out = subprocess.run(
        ["squeue", "--noheader", "--format=%i|%o"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return [line.split("|")[0] for line in out.splitlines() if line.split("|", 1)[-1].startswith(str(folder))]


@pytest.mark.parametrize("mode", ["executor", "gconly"])
def test_ctrl_c_cancels_the_slurm_job(slurm, driver_run, mode):  # noqa: F811
    run = driver_run(mode, "local:slurm")
    run.wait_for("running", timeout=180)
    jobs = _jobs_under(run.tmpdir)
    assert jobs, "the run's block is not a Slurm job"
    result = run.signal(signal.SIGINT)
    assert_stopped_cleanly(result, "SIGINT")
    deadline = time.monotonic() + 10
    while _jobs_under(run.tmpdir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _jobs_under(run.tmpdir) == [], f"Slurm jobs {jobs} still queued or running after Ctrl-C"
    states = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "State", "-j", ",".join(jobs)], capture_output=True, text=True, timeout=30
    ).stdout.splitlines()
    assert states and all(s.startswith("CANCELLED") for s in states), states
