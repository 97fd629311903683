"""The sbatch jobscripts, submitted unedited to the real Slurm cluster."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
import typing as t

import numpy as np
import pytest

from bundle.templates import jobscripts_dir

HERE = pathlib.Path(__file__).resolve().parent
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


@pytest.fixture
def submit(slurm: None) -> t.Iterator[t.Callable[..., str]]:
    """``submit(script, *args, cwd=..., env=...)`` runs sbatch and returns the job id; jobs are cancelled after."""
    jobs: list[str] = []

    def _submit(script: pathlib.Path, *args: str, cwd: pathlib.Path, env: dict[str, str]) -> str:
        exports = ",".join(["ALL", *(f"{k}={v}" for k, v in env.items())])
        out = subprocess.run(
            ["sbatch", "--parsable", "-N", "1", "-t", "00:10:00", f"--export={exports}", str(script), *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        job_id = out.stdout.strip().split(";")[0]
        jobs.append(job_id)
        return job_id

    yield _submit
    if jobs:
        subprocess.run(["scancel", *jobs], capture_output=True, timeout=60)
        end = time.monotonic() + 60
        while time.monotonic() < end and any(_state(j)[0] not in TERMINAL | {"GONE"} for j in jobs):
            time.sleep(0.5)


def _state(job_id: str) -> tuple[str, str]:
    """(JobState, ExitCode) of a job; ("GONE", "") once Slurm has forgotten it."""
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30)
    state = re.search(r"JobState=(\S+)", out.stdout)
    code = re.search(r"\bExitCode=(\S+)", out.stdout)
    return (state.group(1) if state else "GONE", code.group(1) if code else "")


def _finish(job_id: str, timeout: float = 300) -> tuple[str, str]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state, code = _state(job_id)
        if state in TERMINAL or state == "GONE":
            return state, code
        time.sleep(0.5)
    pytest.fail(f"job {job_id} still {_state(job_id)} after {timeout} s")


def _env() -> dict[str, str]:
    bin_dir = os.path.dirname(sys.executable)
    return {"LIBE_GC_PYTHON": sys.executable, "PATH": f"{bin_dir}:/usr/bin:/bin"}


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    from tests.executor.conftest import build

    return build(HERE.parent / "executor" / "apps" / "mpi_probe.c", tmp_path_factory.mktemp("job-apps") / "probe")


def _job_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    shutil.copy(HERE / "ensemble_job.py", tmp_path / "ensemble_job.py")
    return tmp_path


def test_ensemble_sbatch_runs_an_mpi_ensemble_to_completion(submit, probe, tmp_path):
    work = _job_dir(tmp_path)
    job = submit(jobscripts_dir() / "slurm" / "ensemble.sbatch", "ensemble_job.py", str(probe), cwd=work, env=_env())
    state, code = _finish(job)
    log = work / f"libe-gc-ensemble-{job}.out"
    assert log.is_file(), sorted(p.name for p in work.iterdir())
    assert (state, code) == ("COMPLETED", "0:0"), log.read_text()[-3000:]
    text = log.read_text()
    match = re.search(rf"job {job} on 1 node\(s\) (\S+)\n", text)
    assert match and "calling script exited with status 0" in text, text[-3000:]
    host = match.group(1)  # the job's one node: every sim's ranks must run there
    H = np.load(work / f"history_{job}.npy")
    assert H["sim_ended"].all() and len(H) == 3
    np.testing.assert_array_equal(H["ranks_seen"], [2, 2, 2])
    for sim in range(3):
        launch = (work / f"launch-{sim}.txt").read_text()
        assert launch.startswith(f"mpiexec -n 2 -ppn 2 -hosts {host} {probe} sim{sim}\n"), launch
        assert "size=2\n" in launch and f"argv=sim{sim}\n" in launch


def test_failing_ensemble_fails_the_job(submit, probe, tmp_path):
    work = _job_dir(tmp_path)
    job = submit(
        jobscripts_dir() / "slurm" / "ensemble.sbatch", "ensemble_job.py", str(probe), "--fail", cwd=work, env=_env()
    )
    state, code = _finish(job)
    text = (work / f"libe-gc-ensemble-{job}.out").read_text()
    assert state == "FAILED" and code != "0:0", (state, code, text[-3000:])
    assert "this ensemble was asked to fail" in text
    assert re.search(r"calling script exited with status [1-9]", text)


def test_endpoint_sbatch_dry_run_renders_and_loads_its_config_in_a_job(submit, tmp_path):
    marker = tmp_path / "injected"
    hostile = f"worker_init=echo hi; touch {marker} $(touch {marker}) `touch {marker}`"
    job = submit(
        jobscripts_dir() / "slurm" / "endpoint.sbatch",
        "my-ep",
        "max_workers_per_block=2",
        hostile,
        cwd=tmp_path,
        env={**_env(), "LIBE_GC_DRY_RUN": "1"},
    )
    state, code = _finish(job)
    text = (tmp_path / f"libe-gc-endpoint-{job}.out").read_text()
    assert (state, code) == ("COMPLETED", "0:0"), text[-3000:]
    assert "dry run: template 'local', endpoint 'my-ep'" in text
    assert "GlobusMPIEngine" in text and "max_workers_per_block: 2" in text
    assert "globus_compute_endpoint.cli start my-ep" in text
    assert not marker.exists(), "an option value was executed by the jobscript"


def test_endpoint_sbatch_dry_run_refuses_a_bad_option(submit, tmp_path):
    job = submit(
        jobscripts_dir() / "slurm" / "endpoint.sbatch",
        "slots_per_node=-3",
        cwd=tmp_path,
        env={**_env(), "LIBE_GC_DRY_RUN": "1"},
    )
    state, _ = _finish(job)
    text = (tmp_path / f"libe-gc-endpoint-{job}.out").read_text()
    assert state == "FAILED", text
    assert "slots_per_node" in text
