"""Functions that run on the real endpoint's workers (imported there by reference: the tests put the repository
on the workers' ``PYTHONPATH`` through the template's ``worker_init`` option, as a site user makes their modules
importable on an endpoint)."""

from __future__ import annotations

import os

import numpy as np


def where_am_i() -> dict[str, str | int]:
    """Report the worker: its pid, the user endpoint that runs it, and the node file the template wrote."""
    return {
        "pid": os.getpid(),
        "endpoint": os.environ.get("GLOBUS_COMPUTE_ENDPOINT_NAME", ""),
        "nodefile": os.environ.get("PBS_NODEFILE", ""),
    }


def sphere(H, persis_info, sim_specs, libE_info):
    """A GC-only sim: f = sum(x**2), and which user endpoint ran it."""
    out = np.zeros(len(H), dtype=sim_specs["out"])
    out["f"] = np.sum(H["x"] ** 2, axis=1)
    out["uep"] = os.environ.get("GLOBUS_COMPUTE_ENDPOINT_NAME", "")
    return out, persis_info


def on_node(H, persis_info, sim_specs):
    """A GC-only sim on a Slurm node: f = x0 and the node it ran on; fails for x0 below ``user["fail_below"]``."""
    import time

    user = sim_specs["user"]
    x0 = float(H["x"][0, 0])
    if x0 < user.get("fail_below", -np.inf):
        raise ValueError(f"x0={x0:.4f} is outside the model's range")
    time.sleep(user.get("sleep", 0.0))
    out = np.zeros(len(H), dtype=sim_specs["out"])
    out["f"] = H["x"][:, 0]
    out["node"] = os.environ.get("SLURMD_NODENAME", "-")
    return out, persis_info


def needs_a_module(H, persis_info, sim_specs):
    """A GC-only sim whose every run fails alike: it imports a module the endpoint does not have."""
    import libe_gc_missing_solver  # noqa: F401

    return np.zeros(len(H), dtype=sim_specs["out"]), persis_info
