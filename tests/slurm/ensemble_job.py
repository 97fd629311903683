"""A calling script for the jobscript tests: an MPI ensemble on the local endpoint inside the batch job.

    python ensemble_job.py PROBE_APP [--fail] [--nodes N | --pack]

Each sim launches the probe app on 2 ranks through GlobusComputeExecutor and records
what the app saw; the history is saved as history_<job id>.npy.  With ``--fail`` the
sims raise, so the ensemble (and the job) fails.  With ``--nodes N`` each sim's task
spans N nodes of the allocation (2 ranks per node); with ``--pack`` four one-rank sims
of 3 s run at once, two per node of a 2-node allocation (``slots_per_node: 2``).
"""

import os
import sys
import time

import numpy as np
from libensemble import Ensemble
from libensemble.specs import ExitCriteria, LibeSpecs, SimSpecs

from bundle import GlobusComputeExecutor

FAIL = "--fail" in sys.argv
NODES = int(sys.argv[sys.argv.index("--nodes") + 1]) if "--nodes" in sys.argv else None
PACK = "--pack" in sys.argv


def sim_probe(H, persis_info, sim_specs, libE_info):
    if FAIL:
        raise RuntimeError("this ensemble was asked to fail")
    exctr = libE_info["executor"]
    sim = int(H["sim_id"][0])
    if NODES:
        task = exctr.submit(app_name="probe", app_args=f"sim{sim}", num_nodes=NODES, procs_per_node=2)
    elif PACK:
        task = exctr.submit(app_name="probe", app_args=f"--sleep 3 sim{sim}", num_procs=1)
    else:
        task = exctr.submit(app_name="probe", app_args=f"sim{sim}", num_procs=2)
    task.wait()
    with open(f"launch-{int(H['sim_id'][0])}.txt", "w") as fh:
        fh.write(task.runline + "\n" + task.read_stdout())
        # When the app ran: its output file was written as it started; the task has ended now.
        started = os.path.getmtime(os.path.join(task.workdir, task.stdout))
        fh.write(f"window={started} {time.time()}\n")
    out = np.zeros(1, dtype=sim_specs["out"])
    out["ranks_seen"] = task.read_stdout().count("rank=")
    return out, persis_info


if __name__ == "__main__":
    options = {"slots_per_node": 2, "max_workers_per_block": 4} if PACK else {"max_workers_per_block": 1}
    exctr = GlobusComputeExecutor("local", user_endpoint_config=options)
    exctr.register_app(full_path=sys.argv[1], app_name="probe")
    n = 4 if PACK else 3
    H0 = np.zeros(n, dtype=[("x", float, (1,)), ("sim_id", int), ("sim_started", bool)])
    H0["sim_id"] = np.arange(n)
    ens = Ensemble(
        executor=exctr,
        # One engine for every worker (threads) when the sims share the allocation's nodes.
        libE_specs=LibeSpecs(
            comms="threads" if PACK or NODES else "local",
            nworkers=4 if PACK else 2,
            gen_on_manager=True,
            disable_resource_manager=True,
        ),
        sim_specs=SimSpecs(sim_f=sim_probe, inputs=["x", "sim_id"], outputs=[("ranks_seen", int)]),
        exit_criteria=ExitCriteria(sim_max=n),
        H0=H0,
    )
    H, _, flag = ens.run()
    np.save(f"history_{os.environ.get('SLURM_JOB_ID') or os.environ.get('PBS_JOBID') or 'local'}.npy", H)
    print("ensemble exit flag", flag, "sims done", int(H["sim_ended"].sum()))
    sys.exit(0 if flag == 0 and H["sim_ended"].all() else 1)
