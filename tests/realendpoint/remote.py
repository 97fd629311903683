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
