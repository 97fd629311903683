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

from bundle.endpoints.templates import jobscripts_dir

HERE = pathlib.Path(__file__).resolve().parent
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


@pytest.fixture
def submit(slurm: None) -> t.Iterator[t.Callable[..., str]]:
    """``submit(script, *args, cwd=..., env=...)`` runs sbatch and returns the job id; jobs are cancelled after."""
    jobs: list[str] = []

    def _submit(script: pathlib.Path, *args: str, cwd: pathlib.Path, env: dict[str, str], nodes: int = 1) -> str:
        exports = ",".join(["ALL", *(f"{k}={v}" for k, v in env.items())])
        flags = ["-N", str(nodes), *(["--exclusive"] if nodes > 1 else []), "-t", "00:10:00", f"--export={exports}"]
        out = subprocess.run(
            ["sbatch", "--parsable", *flags, str(script), *args],
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


@pytest.fixture(scope="module")
def node_probe(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    from tests.executor.conftest import build

    return build(HERE / "apps" / "node_probe.c", tmp_path_factory.mktemp("job-apps") / "node_probe")


def _job_nodes(text: str, job: str) -> list[str]:
    match = re.search(rf"job {job} on 2 node\(s\) (\S+)\n", text)
    assert match, text[-3000:]
    out = subprocess.run(["scontrol", "show", "hostnames", match.group(1)], capture_output=True, text=True, timeout=30)
    nodes = out.stdout.split()
    assert len(nodes) == 2, (match.group(1), nodes)
    return nodes


def test_two_node_job_runs_an_ensemble_of_two_node_mpi_sims(submit, node_probe, tmp_path):
    from tests.slurm.multinode import check_placement

    work = _job_dir(tmp_path)
    script = jobscripts_dir() / "slurm" / "ensemble.sbatch"
    job = submit(script, "ensemble_job.py", str(node_probe), "--nodes", "2", cwd=work, env=_env(), nodes=2)
    state, code = _finish(job)
    text = (work / f"libe-gc-ensemble-{job}.out").read_text()
    assert (state, code) == ("COMPLETED", "0:0"), text[-3000:]
    nodes = _job_nodes(text, job)
    H = np.load(work / f"history_{job}.npy")
    assert H["sim_ended"].all() and len(H) == 3
    np.testing.assert_array_equal(H["ranks_seen"], [4, 4, 4])
    for sim in range(3):
        runline, stdout = (work / f"launch-{sim}.txt").read_text().split("\n", 1)
        hosts = check_placement(stdout, runline, f"{node_probe} sim{sim}", 2, 2)
        assert sorted(hosts) == nodes, (hosts, nodes)


def test_two_node_job_packs_one_node_sims_two_per_node(submit, node_probe, tmp_path):
    from tests.slurm.multinode import check_placement

    work = _job_dir(tmp_path)
    script = jobscripts_dir() / "slurm" / "ensemble.sbatch"
    job = submit(script, "ensemble_job.py", str(node_probe), "--pack", cwd=work, env=_env(), nodes=2)
    state, code = _finish(job)
    text = (work / f"libe-gc-ensemble-{job}.out").read_text()
    assert (state, code) == ("COMPLETED", "0:0"), text[-3000:]
    nodes = _job_nodes(text, job)
    H = np.load(work / f"history_{job}.npy")
    assert H["sim_ended"].all() and len(H) == 4
    placed, windows = [], []
    for sim in range(4):
        runline, stdout = (work / f"launch-{sim}.txt").read_text().split("\n", 1)
        (host,) = check_placement(stdout, runline, f"{node_probe} --sleep 3 sim{sim}", 1, 1)
        placed.append(host)
        start, end = (float(v) for v in re.search(r"^window=(\S+) (\S+)$", stdout, re.MULTILINE).groups())
        windows.append((start, end))
    # Two slots per node: two sims on each node of the job, all four running at once.
    assert sorted(placed) == sorted(nodes * 2), (placed, nodes)
    assert max(s for s, _ in windows) < min(e for _, e in windows), f"the four sims did not overlap: {windows}"


def test_endpoint_sbatch_dry_run_in_a_two_node_job_lists_both_nodes(submit, tmp_path):
    job = submit(
        jobscripts_dir() / "slurm" / "endpoint.sbatch",
        "two-node-ep",
        cwd=tmp_path,
        env={**_env(), "LIBE_GC_DRY_RUN": "1"},
        nodes=2,
    )
    state, code = _finish(job)
    text = (tmp_path / f"libe-gc-endpoint-{job}.out").read_text()
    assert (state, code) == ("COMPLETED", "0:0"), text[-3000:]
    nodes = _job_nodes(text, job)
    assert re.search(rf"^libe-gc: nodes: {' '.join(nodes)}$", text, re.MULTILINE), text[-3000:]
