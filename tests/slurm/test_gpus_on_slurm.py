"""GPU binding through srun on the Slurm cluster's stand-in GRES GPUs (four per node)."""

from __future__ import annotations

import itertools
import pathlib

import numpy as np
import pytest

from bundle import GlobusComputeExecutor
from bundle.endpoints.session import GCSession

pytestmark = pytest.mark.usefixtures("no_jobs_left")

HERE = pathlib.Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def gpu_probe(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    from tests.executor.conftest import build

    return build(HERE.parent / "executor" / "apps" / "gpu_probe.c", tmp_path_factory.mktemp("apps") / "gpu_probe")


def _gpu_ensemble(exctr: GlobusComputeExecutor, ranks: int, sims: int) -> np.ndarray:
    from libensemble import Ensemble
    from libensemble.specs import ExitCriteria, SimSpecs

    from tests.ensembles import executor_libe_specs, given_rows
    from tests.executor.sims import run_gpu_probe

    ens = Ensemble(
        executor=exctr,
        libE_specs=executor_libe_specs(2),
        sim_specs=SimSpecs(
            sim_f=run_gpu_probe,
            inputs=["x"],
            outputs=[("devices", "U32"), ("start", float), ("end", float)],
            user={"ranks": ranks},
        ),
        exit_criteria=ExitCriteria(sim_max=sims),
        H0=given_rows(sims),
    )
    H, _, flag = ens.run()
    assert flag == 0
    done = H[H["sim_ended"]]
    assert len(done) == sims
    return done


def _ranks(task) -> list[dict[str, str]]:
    assert task.state == "FINISHED", task.read_stderr()
    return [dict(kv.split("=", 1) for kv in line.split()) for line in task.read_stdout().splitlines() if line]


def test_srun_binds_each_rank_and_concurrent_tasks_get_disjoint_devices(gpu_probe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = {
        "partition": "debug",
        "walltime": "00:10:00",
        "network_interface": "lo",
        "mpi_launcher": "srun",
        "gpus_per_node": 4,
        "slots_per_node": 4,
    }
    exctr = GlobusComputeExecutor(
        "local:slurm", user_endpoint_config=options, local_options={"run_dir": tmp_path, "start_timeout": 600}
    )
    exctr.register_app(str(gpu_probe), app_name="gpu_probe")
    try:
        pair = exctr.submit(app_name="gpu_probe", num_gpus=2, match_procs_to_gpus=True)
        assert pair.runline.startswith("srun --ntasks 2 --ntasks-per-node 2 ")
        assert "--gpus-per-node=2 --gpus-per-task=1" in pair.runline
        pair.wait(timeout=900)
        ranks = _ranks(pair)
        assert len(ranks) == 2 and len({r["node"] for r in ranks}) == 1
        seen = sorted(r["cuda"] for r in ranks)
        assert len(set(seen)) == 2 and all("," not in d for d in seen), f"one device per rank: {seen}"
        for r in ranks:  # Slurm sets every vendor's variable alike
            assert r["cuda"] == r["rocr"] == r["ze"]

        tasks = [
            exctr.submit(app_name="gpu_probe", app_args="--sleep 1", num_gpus=1, stdout=f"p{i}.out") for i in range(6)
        ]
        runs = []
        for task in tasks:
            task.wait(timeout=300)
            (rank,) = _ranks(task)
            runs.append((rank["node"], rank["cuda"], float(rank["start"]), float(rank["end"])))
        assert all(len(d.split(",")) == 1 for _, d, _, _ in runs), f"one device per task: {runs}"
        together = 0
        for (n1, d1, s1, e1), (n2, d2, s2, e2) in itertools.combinations(runs, 2):
            if n1 == n2 and s1 < e2 and s2 < e1:
                together += 1
                assert d1 != d2, f"two running tasks got device {d1} on {n1}"
        # The stand-in nodes have 2 CPUs, so at most two one-rank steps run at once on a node.
        assert together >= 1, f"one-GPU tasks on a 4-GPU node should overlap: {runs}"

        # A forces-style sim asking for one GPU per rank, through libEnsemble's workers.
        done = _gpu_ensemble(exctr, ranks=2, sims=4)
        for devices in done["devices"]:
            assert len(set(devices.split(";"))) == 2 and "," not in devices, f"one device per rank: {devices}"
    finally:
        GCSession.clear()


@pytest.mark.parametrize("launcher", ["srun", "mpiexec"])
def test_a_two_node_task_binds_one_gpu_per_rank_on_each_node(gpu_probe, tmp_path, monkeypatch, launcher):
    """srun binds through Slurm; mpiexec through the device claims and the per-rank wrapper's node map."""
    monkeypatch.chdir(tmp_path)
    options = {
        "partition": "debug",
        "walltime": "00:10:00",
        "network_interface": "lo",
        "mpi_launcher": launcher,
        "gpus_per_node": 4,
        "nodes_per_block": 2,
        "worker_init": f"export LIBE_GC_GPU_LOCK_DIR={tmp_path / 'locks'}",
    }
    exctr = GlobusComputeExecutor(
        "local:slurm", user_endpoint_config=options, local_options={"run_dir": tmp_path, "start_timeout": 600}
    )
    exctr.register_app(str(gpu_probe), app_name="gpu_probe")
    try:
        task = exctr.submit(app_name="gpu_probe", num_nodes=2, num_procs=4, num_gpus=4)
        assert ("--gpus-per-task=1" in task.runline) == (launcher == "srun")
        assert ("libe-gc-gpu-bind" in task.runline) == (launcher == "mpiexec")
        task.wait(timeout=900)
        ranks = _ranks(task)
        by_node: dict[str, list[str]] = {}
        for r in ranks:
            by_node.setdefault(r["node"], []).append(r["cuda"])
        assert len(by_node) == 2, f"two nodes: {ranks}"
        for node, devices in by_node.items():
            assert len(devices) == 2 and len(set(devices)) == 2, f"one device per rank on {node}: {devices}"
            assert all("," not in d for d in devices)
    finally:
        GCSession.clear()
