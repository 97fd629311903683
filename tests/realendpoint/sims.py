"""Sims that run on libEnsemble's workers and launch MPI apps through the executor (executor mode)."""

from __future__ import annotations

import numpy as np
from libensemble.message_numbers import TASK_FAILED, WORKER_DONE


def two_rank_probe(H, persis_info, sim_specs, libE_info):
    """An executor-mode sim as written for libEnsemble's MPIExecutor: one 2-rank launch of the probe app."""
    exctr = libE_info["executor"]
    sim_id = int(H["sim_id"][0])
    task = exctr.submit(app_name="probe", app_args=f"sim{sim_id}", num_procs=2)
    task.wait(timeout=300)
    out = task.read_stdout()
    output = np.zeros(1, dtype=sim_specs["out"])
    output["ranks"] = out.count("rank=") if f"argv=sim{sim_id}" in out else -1
    return output, persis_info, WORKER_DONE if task.state == "FINISHED" else TASK_FAILED
