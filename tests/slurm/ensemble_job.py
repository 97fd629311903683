"""A calling script for the jobscript tests: an MPI ensemble on the local endpoint inside the batch job.

    python ensemble_job.py PROBE_APP [--fail]

Each sim launches the probe app on 2 ranks through GlobusComputeExecutor and records
what the app saw; the history is saved as history_<job id>.npy.  With ``--fail`` the
sims raise, so the ensemble (and the job) fails.
"""

import os
import sys

import numpy as np
from libensemble import Ensemble
from libensemble.specs import ExitCriteria, LibeSpecs, SimSpecs

from bundle import GlobusComputeExecutor

FAIL = "--fail" in sys.argv


def sim_probe(H, persis_info, sim_specs, libE_info):
    if FAIL:
        raise RuntimeError("this ensemble was asked to fail")
    exctr = libE_info["executor"]
    task = exctr.submit(app_name="probe", app_args=f"sim{int(H['sim_id'][0])}", num_procs=2)
    task.wait()
    with open(f"launch-{int(H['sim_id'][0])}.txt", "w") as fh:
        fh.write(task.runline + "\n" + task.read_stdout())
    out = np.zeros(1, dtype=sim_specs["out"])
    out["ranks_seen"] = task.read_stdout().count("rank=")
    return out, persis_info


if __name__ == "__main__":
    exctr = GlobusComputeExecutor("local", user_endpoint_config={"max_workers_per_block": 1})
    exctr.register_app(full_path=sys.argv[1], app_name="probe")
    n = 3
    H0 = np.zeros(n, dtype=[("x", float, (1,)), ("sim_id", int), ("sim_started", bool)])
    H0["sim_id"] = np.arange(n)
    ens = Ensemble(
        executor=exctr,
        libE_specs=LibeSpecs(comms="local", nworkers=2, gen_on_manager=True, disable_resource_manager=True),
        sim_specs=SimSpecs(sim_f=sim_probe, inputs=["x", "sim_id"], outputs=[("ranks_seen", int)]),
        exit_criteria=ExitCriteria(sim_max=n),
        H0=H0,
    )
    H, _, flag = ens.run()
    np.save(f"history_{os.environ.get('SLURM_JOB_ID') or os.environ.get('PBS_JOBID') or 'local'}.npy", H)
    print("ensemble exit flag", flag, "sims done", int(H["sim_ended"].sum()))
    sys.exit(0 if flag == 0 and H["sim_ended"].all() else 1)
