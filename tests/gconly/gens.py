"""Generators for the GC-only tests."""

from __future__ import annotations

import numpy as np
from libensemble.message_numbers import EVAL_GEN_TAG, FINISHED_PERSISTENT_GEN_TAG, PERSIS_STOP, STOP_TAG
from libensemble.tools.persistent_support import PersistentSupport


def cancel_slow(_, persis_info, gen_specs, libE_info):
    """Send points with x[0] from gen_specs['user']['x0']; once one returns, cancel those with x[0] > 0.

    Returns (ending the run) once every point has come back, done or killed.
    """
    ps = PersistentSupport(libE_info, EVAL_GEN_TAG)
    x0 = np.asarray(gen_specs["user"]["x0"], dtype=float)
    H_o = np.zeros(len(x0), dtype=gen_specs["out"])
    H_o["x"][:, 0] = x0
    tag, _, calc_in = ps.send_recv(H_o)
    slow = [int(i) for i in np.nonzero(x0 > 0)[0]]
    if tag not in (STOP_TAG, PERSIS_STOP):
        ps.request_cancel_sim_ids(slow)  # keep_state: the manager still waits for this gen's next output
    back: set[int] = set()
    while tag not in (STOP_TAG, PERSIS_STOP):
        back.update(int(i) for i in calc_in["sim_id"])
        if len(back) == len(x0):
            break
        tag, _, calc_in = ps.send_recv(np.zeros(0, dtype=gen_specs["out"]))
    return None, persis_info, FINISHED_PERSISTENT_GEN_TAG


class DictSampler:
    """A gest-api style generator: suggest() gives a list of dicts over the VOCS variables."""

    def __init__(self, vocs, seed: int = 3) -> None:
        self.vocs = vocs
        self.rng = np.random.default_rng(seed)

    def suggest(self, num_points: int) -> list[dict[str, float]]:
        return [
            {name: float(self.rng.uniform(*var.domain)) for name, var in self.vocs.variables.items()}
            for _ in range(num_points)
        ]

    def ingest(self, results: list[dict[str, float]]) -> None:
        pass

    def finalize(self) -> None:
        pass


def with_object_field(_, persis_info, gen_specs):
    """A non-persistent generator whose rows carry an object the endpoint cannot receive."""
    b = gen_specs["user"]["batch"]
    H_o = np.zeros(b, dtype=gen_specs["out"])
    H_o["x"] = persis_info["rand_stream"].uniform(-1, 1, (b, 2))
    for i in range(b):
        H_o["handle"][i] = gen_specs["user"]["make"]()
    return H_o, persis_info
