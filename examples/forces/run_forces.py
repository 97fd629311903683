"""Forces ensemble in executor mode: an MPI app launched through GlobusComputeExecutor.

    python run_forces.py [--nworkers 2] [--sim-max 8] [--num-procs 2] [--gpus-per-node 4]

With ``--gpus-per-node N`` the local endpoint declares N GPUs and every sim asks
for one GPU per rank (``num_gpus=num_procs``): each rank's CUDA_VISIBLE_DEVICES
names its own device, and sims running side by side never share one.  No real
GPU is needed to try it (the CPU forces app ignores the variable); a GPU build
of the app (libEnsemble's ``forces_gpu``) uses it.

Runs as written on the bundle's local endpoint (the real Globus Compute engine
in this process, MPICH's mpiexec). For a site endpoint, change ENDPOINT to its
UUID (and set TEMPLATE to the template it was configured from); FORCES_APP must
then be the app's path on that system.
"""

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from libensemble import Ensemble
from libensemble.alloc_funcs.give_sim_work_first import give_sim_work_first
from libensemble.gen_funcs.sampling import uniform_random_sample
from libensemble.specs import AllocSpecs, ExitCriteria, GenSpecs, LibeSpecs, SimSpecs
from libensemble.tools import add_unique_random_streams

from bundle import GlobusComputeExecutor

ENDPOINT = "local"  # a site endpoint: its UUID, e.g. "5f0c6ae5-8d2c-4fb8-9f0a-1b0c7f6f2e11"
TEMPLATE = None  # for a site endpoint, the bundled template it was configured from (e.g. "perlmutter")
HERE = Path(__file__).resolve().parent
FORCES_APP = Path("forces.x").resolve()  # built here for the local endpoint; a site endpoint: its path there

sys.path.insert(0, str(HERE))
from forces_simf import run_forces  # noqa: E402


def build_forces(target: Path) -> Path:
    """Compile libEnsemble's forces app with mpicc (once)."""
    if target.exists():
        return target
    import libensemble

    source = Path(libensemble.__file__).parent / "tests/scaling_tests/forces/forces_app/forces.c"
    mpicc = shutil.which("mpicc", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    if mpicc is None:
        sys.exit("mpicc not found: pip install 'libe-gc-bundle[mpich]' or load your MPI module")
    subprocess.run([mpicc, "-O3", "-o", str(target), str(source), "-lm"], check=True)
    return target


def main() -> int:
    """Run the ensemble; exit status 0 when it completed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nworkers", type=int, default=2)
    parser.add_argument("--sim-max", type=int, default=8)
    parser.add_argument("--num-procs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--gpus-per-node", type=int, default=0, help="declare GPUs; each sim asks one per rank")
    args = parser.parse_args()

    app = build_forces(FORCES_APP) if ENDPOINT == "local" else FORCES_APP
    exctr = GlobusComputeExecutor(
        ENDPOINT,
        template=TEMPLATE,
        user_endpoint_config=(
            {"slots_per_node": args.nworkers, **({"gpus_per_node": args.gpus_per_node} if args.gpus_per_node else {})}
            if ENDPOINT == "local"
            else {}
        ),
    )
    exctr.register_app(full_path=str(app), app_name="forces")

    ensemble = Ensemble(
        executor=exctr,
        libE_specs=LibeSpecs(
            nworkers=args.nworkers,
            gen_on_manager=True,
            sim_dirs_make=True,
            ensemble_dir_path="./ensemble_forces",
            disable_resource_manager=True,
        ),
        sim_specs=SimSpecs(
            sim_f=run_forces,
            inputs=["x"],
            outputs=[("energy", float)],
            user={
                "num_procs": args.num_procs,
                "steps": args.steps,
                "timeout": 600,
                "gpus_per_rank": 1 if args.gpus_per_node else 0,
            },
        ),
        gen_specs=GenSpecs(
            gen_f=uniform_random_sample,
            outputs=[("x", float, (1,))],
            user={"gen_batch_size": args.sim_max, "lb": np.array([1000.0]), "ub": np.array([3000.0])},
        ),
        alloc_specs=AllocSpecs(alloc_f=give_sim_work_first),
        exit_criteria=ExitCriteria(sim_max=args.sim_max),
    )
    ensemble.persis_info = add_unique_random_streams({}, args.nworkers + 1, seed=1234)
    H, _, flag = ensemble.run()
    if ensemble.is_manager:
        done = H[H["sim_ended"]]
        print(f"{len(done)} sims, {int(np.isfinite(done['energy']).sum())} with an energy; exit flag {flag}")
        for row in done[:5]:
            print(f"  sim {row['sim_id']}: {int(row['x'][0])} particles -> energy {row['energy']:.6g}")
        ensemble.save_output(__file__)
        failed = len(done) - int(np.isfinite(done["energy"]).sum())
        if failed:
            print(f"{failed} of {len(done)} sims gave no energy; see ensemble.log", file=sys.stderr)
        return 0 if flag == 0 and not failed else 1
    return 0 if flag == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
