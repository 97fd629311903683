"""Simulation functions for the GC-only tests: importable on the engine's workers."""

from __future__ import annotations

import time

import numpy as np
from libensemble.message_numbers import TASK_FAILED, WORKER_DONE
from libensemble.specs import input_fields, output_data


def six_hump(H, persis_info, sim_specs, libE_info):
    """Deterministic six-hump camel, one value per row (3-tuple return)."""
    x = H["x"]
    out = np.zeros(len(H), dtype=sim_specs["out"])
    x1, x2 = x[:, 0], x[:, 1]
    out["f"] = (4 - 2.1 * x1**2 + x1**4 / 3) * x1**2 + x1 * x2 + (-4 + 4 * x2**2) * x2**2
    return out, persis_info, WORKER_DONE


def trivial(H, persis_info, sim_specs):
    """The cheapest sim: f = 1 (2-tuple H_o, persis_info)."""
    out = np.ones(len(H), dtype=sim_specs["out"])
    return out, persis_info


def bare(H, _, sim_specs):
    """Return a bare H_o."""
    out = np.zeros(len(H), dtype=sim_specs["out"])
    out["f"] = H["x"][:, 0] * 2
    return out


def with_status(H, _, sim_specs):
    """Return (H_o, calc_status)."""
    out = np.zeros(len(H), dtype=sim_specs["out"])
    out["f"] = H["x"][:, 0] + 1
    return out, WORKER_DONE


def counting(H, persis_info, sim_specs, libE_info):
    """Count calls in persis_info and return (H_o, persis_info)."""
    persis_info["calls"] = persis_info.get("calls", 0) + 1
    persis_info.setdefault("workers", []).append(libE_info["workerID"])
    out = np.zeros(len(H), dtype=sim_specs["out"])
    out["f"] = H["x"][:, 0]
    return out, persis_info


def self_failed(H, persis_info, sim_specs):
    """Return TASK_FAILED itself for negative x."""
    out = np.zeros(len(H), dtype=sim_specs["out"])
    out["f"] = H["x"][:, 0]
    return out, persis_info, TASK_FAILED if H["x"][0, 0] < 0 else WORKER_DONE


def fails_on_negative(H, persis_info, sim_specs):
    """Raise for negative x[0]."""
    if H["x"][0, 0] < 0:
        raise ValueError(f"negative x {H['x'][0, 0]:.6f} refused")
    out = np.zeros(len(H), dtype=sim_specs["out"])
    out["f"] = H["x"][:, 0]
    return out, persis_info


def sleepy(H, persis_info, sim_specs):
    """Sleep sim_specs['user']['sleep'] seconds."""
    time.sleep(sim_specs["user"]["sleep"])
    out = np.zeros(len(H), dtype=sim_specs["out"])
    out["f"] = H["x"][:, 0]
    return out, persis_info


def returns_dict(H, persis_info, sim_specs):
    """A gest-api style function wrongly given as sim_f."""
    return {"f": 1.0}


def gest_simulator(input_dict, **kwargs):
    """A gest-api simulator: a dict in, a dict out."""
    return {"f": float(input_dict["x0"] ** 2 + input_dict["x1"] ** 2)}


def sleep_if_positive(H, persis_info, sim_specs):
    """Sleep 120 s for positive x[0] (to be killed), return at once otherwise."""
    if H["x"][0, 0] > 0:
        time.sleep(120)
    out = np.zeros(len(H), dtype=sim_specs["out"])
    out["f"] = H["x"][:, 0]
    return out, persis_info


class Unpicklable:
    """An object no serializer can send (like an open connection)."""

    def __reduce__(self):
        raise TypeError("this handle cannot be pickled")


def dies_on_negative(H, persis_info, sim_specs):
    """Kill the engine's worker process for negative x[0]: the task is lost."""
    if H["x"][0, 0] < 0:
        import os

        os._exit(3)
    out = np.zeros(len(H), dtype=sim_specs["out"])
    out["f"] = H["x"][:, 0]
    return out, persis_info


@input_fields(["x"])
@output_data([("f", float)])
def decorated(x, persis_info, sim_specs):
    """A sim whose inputs and outputs come from libEnsemble's decorators."""
    out = np.zeros(len(x), dtype=sim_specs["out"])
    out["f"] = x["x"][:, 1]
    return out, persis_info


def in_its_directory(H, persis_info, sim_specs, libE_info):
    """Read ``scale.txt`` (relative: the sim's working directory) and leave ``x.txt`` there; f = scale * x0."""
    import os

    with open("scale.txt") as fh:
        scale = float(fh.read())
    with open("x.txt", "w") as fh:
        fh.write(f"{H['x'][0, 0]!r} {libE_info['workerID']} {os.getcwd()}\n")
    out = np.zeros(len(H), dtype=sim_specs["out"])
    out["f"] = scale * H["x"][:, 0]
    return out, persis_info
