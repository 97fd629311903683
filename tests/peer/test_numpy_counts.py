"""Counts a sim reads from its history rows (NumPy integers) are taken as MPIExecutor takes them.

libEnsemble's sims size their launches from ``H`` fields and resource sets, e.g.
``submit(num_procs=H["procs"][0])`` hands the executor a ``numpy.int64``.  Dry runs: the launch line
and the ``resource_specification`` are checked without starting an engine.
"""

from __future__ import annotations

import shutil
import typing as t

import numpy as np
import pytest

from bundle import GlobusComputeExecutor

HOSTNAME = shutil.which("hostname") or "/bin/hostname"


TWO_RANKS = {"num_nodes": 1, "ranks_per_node": 2, "num_ranks": 2}


@pytest.mark.parametrize(
    "words",
    [
        {"num_procs": np.int64(2)},
        {"num_procs": np.int32(2), "num_nodes": np.int64(1)},
        {"num_nodes": np.int64(1), "procs_per_node": np.uint8(2)},
    ],
    ids=["num_procs-int64", "num_procs-int32-num_nodes-int64", "procs_per_node-uint8"],
)
def test_numpy_integer_counts(words: dict[str, t.Any]) -> None:
    exctr = GlobusComputeExecutor("local", user_endpoint_config={"slots_per_node": 2, "max_workers_per_block": 2})
    exctr.register_app(full_path=HOSTNAME, app_name="hostname")
    task = exctr.submit(app_name="hostname", dry_run=True, **words)
    assert task.resource_specification == TWO_RANKS
    assert all(type(v) is int for k, v in task.resource_specification.items() if k != "launcher_options")
    assert task.runline.startswith("mpiexec -n 2 -ppn 2 ")


def test_numpy_integer_gpu_count() -> None:
    exctr = GlobusComputeExecutor("local", user_endpoint_config={"gpus_per_node": 2})
    exctr.register_app(full_path=HOSTNAME, app_name="hostname")
    task = exctr.submit(app_name="hostname", num_gpus=np.int64(2), dry_run=True)
    assert task.runline.startswith("mpiexec -n 1 -ppn 1 ")
    assert "CUDA_VISIBLE_DEVICES" in task.runline
