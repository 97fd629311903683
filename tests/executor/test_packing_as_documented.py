"""``slots_per_node`` alone packs tasks, exactly as the README and the GPU page tell a user to write it.

The README's executor example sets ``{"slots_per_node": 2}`` ("two MPI launches at once") with two
workers on ``threads`` comms; the GPU page sets ``gpus_per_node: 4`` with ``slots_per_node: 4`` ("four
tasks that each ask for ``num_gpus=1`` run together").  Each sim launches the probe app, which
records when its ranks started and ended, and the peak concurrency is read from those times.
"""

from __future__ import annotations

import itertools
import pathlib

import numpy as np
import pytest
from libensemble import Ensemble
from libensemble.specs import ExitCriteria, LibeSpecs, SimSpecs

from bundle import GlobusComputeExecutor
from bundle.executor.gpus import LOCK_DIR_ENV
from tests.ensembles import given_rows
from tests.executor import sims
from tests.executor.conftest import APPS, build

OUTPUTS = [("ranks", int), ("devices", "U32"), ("start", float), ("end", float)]


@pytest.fixture(scope="module")
def gpu_probe(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return build(APPS / "gpu_probe.c", tmp_path_factory.mktemp("apps") / "gpu_probe")


def peak(done: np.ndarray) -> int:
    """Most sims whose apps ran at the same moment."""
    edges = sorted([(s, 1) for s in done["start"]] + [(e, -1) for e in done["end"]], key=lambda x: (x[0], x[1]))
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def _run(exctr: GlobusComputeExecutor, nworkers: int, n: int, user: dict) -> np.ndarray:
    ensemble = Ensemble(
        executor=exctr,
        libE_specs=LibeSpecs(nworkers=nworkers, comms="threads"),
        sim_specs=SimSpecs(sim_f=sims.run_timed_probe, inputs=["x"], outputs=OUTPUTS, user=user),
        exit_criteria=ExitCriteria(sim_max=n),
        H0=given_rows(n),
    )
    H, _, flag = ensemble.run()
    assert flag == 0
    done = H[H["sim_ended"]]
    assert len(done) == n
    return done


def test_readme_slots_per_node_2_runs_two_mpi_launches_at_once(gpu_probe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = {"slots_per_node": 2}  # the README: "two MPI launches at once"
    exctr = GlobusComputeExecutor("local", user_endpoint_config=options)
    exctr.register_app(full_path=str(gpu_probe), app_name="gpu_probe")
    done = _run(exctr, nworkers=2, n=6, user={"num_procs": 2, "seconds": 1.5})
    assert (done["ranks"] == 2).all()
    assert peak(done) == 2, f"slots_per_node: 2 should run two 2-rank launches at once (peak {peak(done)})"


def test_gpu_page_four_one_gpu_tasks_run_together(gpu_probe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "gpu-locks"))  # this test's own device claims
    exctr = GlobusComputeExecutor("local", user_endpoint_config={"gpus_per_node": 4, "slots_per_node": 4})
    exctr.register_app(full_path=str(gpu_probe), app_name="gpu_probe")
    done = _run(exctr, nworkers=4, n=8, user={"num_procs": 1, "num_gpus": 1, "seconds": 1.5})
    assert set(done["devices"]) <= {"0", "1", "2", "3"}
    for a, b in itertools.combinations(done, 2):
        if a["devices"] == b["devices"]:
            assert a["end"] <= b["start"] or b["end"] <= a["start"], "two tasks held one GPU at once"
    assert peak(done) == 4, f"gpus_per_node: 4 with slots_per_node: 4 should run four tasks at once (peak {peak(done)})"
