"""The forces sim, exactly as written for libEnsemble's MPIExecutor.

It launches the forces MPI app through ``libE_info["executor"]`` and reads the
app's ``forces.stat`` from its own working directory.
"""

import numpy as np
from libensemble.message_numbers import TASK_FAILED, WORKER_DONE, WORKER_KILL


def run_forces(H, persis_info, sim_specs, libE_info):
    """Run the forces app on ``num_procs`` ranks for ``x`` particles and return the final energy."""
    particles = str(int(H["x"][0][0]))
    args = f"{particles} {sim_specs['user']['steps']} {particles}"
    exctr = libE_info["executor"]

    num_procs = sim_specs["user"]["num_procs"]
    num_gpus = sim_specs["user"].get("gpus_per_rank", 0) * num_procs or None  # one GPU per rank when asked
    task = exctr.submit(app_name="forces", app_args=args, num_procs=num_procs, num_gpus=num_gpus)
    calc_status = exctr.polling_loop(task, timeout=sim_specs["user"]["timeout"], poll_manager=True)

    output = np.zeros(1, dtype=sim_specs["out"])
    try:
        output["energy"] = np.loadtxt("forces.stat")[-1]
    except (OSError, ValueError, IndexError):
        output["energy"] = np.nan
        if calc_status == WORKER_DONE:
            calc_status = TASK_FAILED
    if calc_status == WORKER_KILL:
        output["energy"] = np.nan
    return output, persis_info, calc_status
