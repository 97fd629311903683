"""Shared specs for the GC-only integration tests."""

from __future__ import annotations

import pathlib
import typing as t

import numpy as np
from libensemble.alloc_funcs.start_only_persistent import only_persistent_gens
from libensemble.gen_funcs.persistent_sampling import persistent_uniform
from libensemble.tools import add_unique_random_streams

REPO = pathlib.Path(__file__).resolve().parents[2]

# The engine's workers must import this repository's ``tests`` package (globus-compute-endpoint
# installs a top-level ``tests`` package of its own), whatever the driver's working directory.
PY_ENGINE = {
    "engine_type": "GlobusComputeEngine",
    "max_workers_per_node": 2,
    "worker_init": f"export PYTHONPATH={REPO}${{PYTHONPATH:+:$PYTHONPATH}}",
}


def uniform_specs(
    sim_f: t.Callable[..., t.Any], nworkers: int, sim_max: int, *, endpoint: str = "local", seed: int = 7
) -> dict[str, t.Any]:
    """Specs for a persistent uniform sampler on the manager feeding ``sim_f``."""
    sim_specs: dict[str, t.Any] = {"sim_f": sim_f, "in": ["x"], "out": [("f", float)], "user": {}}
    if endpoint:
        sim_specs["globus_compute_endpoint"] = endpoint
    return {
        "sim_specs": sim_specs,
        "gen_specs": {
            "gen_f": persistent_uniform,
            "persis_in": ["f", "x", "sim_id"],
            "out": [("x", float, (2,))],
            "user": {"initial_batch_size": nworkers, "lb": np.array([-3.0, -2.0]), "ub": np.array([3.0, 2.0])},
        },
        "exit_criteria": {"sim_max": sim_max},
        "persis_info": add_unique_random_streams({}, nworkers + 1, seed=seed),
        "alloc_specs": {"alloc_f": only_persistent_gens},
    }


def run_with(run: t.Callable[..., t.Any], specs: dict[str, t.Any], libE_specs: t.Any, **kwargs: t.Any) -> t.Any:
    """Call ``run`` (``bundle.libE``, ``run_gconly``, stock ``libE``) on ``specs`` (from :func:`uniform_specs`)."""
    return run(
        specs["sim_specs"],
        specs["gen_specs"],
        specs["exit_criteria"],
        specs["persis_info"],
        specs["alloc_specs"],
        libE_specs,
        **kwargs,
    )


def run_specs(specs: dict[str, t.Any], nworkers: int, **gc: t.Any) -> t.Any:
    """Run ``specs`` (from :func:`uniform_specs`) in GC-only mode with ``GCOnlySpecs(**gc)``."""
    from bundle.gconly import GCOnlySpecs
    from bundle.gconly.launch import run_gconly

    return run_with(run_gconly, specs, {"nworkers": nworkers}, gc_specs=GCOnlySpecs(**gc))
