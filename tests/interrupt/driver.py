"""An ensemble a test interrupts: ``python driver.py MODE ENDPOINT [COMMS] [--slow-stopper]``.

MODE is ``executor`` (each sim launches a 2-rank ``sleep 60`` through a GlobusComputeExecutor, as
the README's executor example does) or ``gconly`` (each sim sleeps 60 s on the endpoint).  Two sims
run at once and more wait (executor: 2 workers, one MPI launch at a time; GC-only: 4 in flight, 2
worker slots), so a signal finds tasks running and tasks queued.  ``--slow-stopper`` registers an
interrupt stopper that hangs, to show that a second Ctrl-C ends the run at once; ``--quick`` makes
each sim take 1 s, for a run that finishes.
"""

import shutil
import signal
import sys
import time

import numpy as np
from libensemble.gen_funcs.sampling import uniform_random_sample
from libensemble.specs import ExitCriteria, GenSpecs, LibeSpecs, SimSpecs

from bundle import Ensemble, GCOnlySpecs, GlobusComputeExecutor

SECONDS = "1" if "--quick" in sys.argv else "60"


def mpi_sim(H, persis_info, sim_specs, libE_info):
    task = libE_info["executor"].submit(app_name="sleep", app_args=SECONDS, num_procs=2)
    task.wait(timeout=300)
    out = np.zeros(1, dtype=sim_specs["out"])
    out["f"] = task.runtime
    return out, persis_info


def py_sim(H, persis_info, sim_specs, libE_info):
    import os
    import pathlib
    import time

    marks = os.environ.get("INTERRUPT_MARKS")
    if marks:  # the test waits for a sim to be running
        pathlib.Path(marks, f"sim-{os.getpid()}-{time.time()}").touch()
    time.sleep(float(sim_specs["user"]["seconds"]))
    out = np.zeros(len(H), dtype=sim_specs["out"])
    out["f"] = 1.0
    return out, persis_info


def main() -> None:
    # As a terminal starts a foreground job: SIGINT at Python's default.  A CI runner, or a shell that started the
    # tests in the background, may pass it on ignored, and an ignored SIGINT stays ignored across exec.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    mode, endpoint = sys.argv[1], sys.argv[2]
    comms = sys.argv[3] if len(sys.argv) > 3 and not sys.argv[3].startswith("--") else "threads"
    if "--slow-stopper" in sys.argv:
        from bundle.processes import interrupt

        interrupt.on_interrupt(lambda kill: None if kill else time.sleep(120))
    slurm = {"partition": "debug", "nodes_per_block": 1} if endpoint == "local:slurm" else {}
    gen = GenSpecs(
        gen_f=uniform_random_sample,
        outputs=[("x", float, (1,))],
        user={"gen_batch_size": 8, "lb": np.zeros(1), "ub": np.ones(1)},
    )
    if mode == "executor":
        exctr = GlobusComputeExecutor(endpoint, user_endpoint_config={"max_workers_per_block": 1, **slurm})
        exctr.register_app(full_path=shutil.which("sleep"), app_name="sleep")
        ensemble = Ensemble(
            executor=exctr,
            libE_specs=LibeSpecs(nworkers=2, comms=comms),
            sim_specs=SimSpecs(sim_f=mpi_sim, inputs=["x"], outputs=[("f", float)]),
            gen_specs=gen,
            exit_criteria=ExitCriteria(sim_max=8),
        )
    else:
        options = {"engine_type": "GlobusComputeEngine", "max_workers_per_node": 2, **slurm}
        ensemble = Ensemble(
            libE_specs=LibeSpecs(nworkers=4),
            sim_specs=SimSpecs(
                sim_f=py_sim,
                inputs=["x"],
                outputs=[("f", float)],
                globus_compute_endpoint=endpoint,
                user={"seconds": SECONDS},
            ),
            gen_specs=gen,
            exit_criteria=ExitCriteria(sim_max=8),
            gc_specs=GCOnlySpecs(user_endpoint_config=options),
        )
    ensemble.add_random_streams()
    print("STARTED", flush=True)
    ensemble.run()
    print("FINISHED", flush=True)


if __name__ == "__main__":
    main()
