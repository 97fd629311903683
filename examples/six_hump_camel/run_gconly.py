"""Six-hump camel in GC-only mode: the libEnsemble manager sends pure-Python sims to an endpoint.

    python run_gconly.py [--nworkers 4] [--sim-max 200] [--batch-size 1]

No worker processes start: ``nworkers`` is the number of sims in flight, the
persistent generator runs in this process (on worker 1, as a stock run places
it). Runs as written on the bundle's local endpoint; for a site endpoint change
ENDPOINT to its UUID (and set TEMPLATE to the template it was configured from).
The sim is defined in this script, so it is sent by value (it imports what it
needs itself): the endpoint needs only NumPy.
"""

import argparse
import sys

import numpy as np
from libensemble.alloc_funcs.start_only_persistent import only_persistent_gens
from libensemble.gen_funcs.persistent_sampling import persistent_uniform
from libensemble.specs import AllocSpecs, ExitCriteria, GenSpecs, LibeSpecs, SimSpecs
from libensemble.tools import add_unique_random_streams

from bundle import Ensemble, GCOnlySpecs

ENDPOINT = "local"  # a site endpoint: its UUID, e.g. "5f0c6ae5-8d2c-4fb8-9f0a-1b0c7f6f2e11"
TEMPLATE = None  # for a site endpoint, the bundled template it was configured from (e.g. "perlmutter")


def six_hump_camel(H, persis_info, sim_specs, libE_info):
    """Evaluate the six-hump camel function at each row's ``x`` (imports inside: it runs on the endpoint)."""
    import numpy as np

    out = np.zeros(len(H), dtype=sim_specs["out"])
    for i, (x0, x1) in enumerate(H["x"]):
        out["f"][i] = (4 - 2.1 * x0**2 + x0**4 / 3) * x0**2 + x0 * x1 + (-4 + 4 * x1**2) * x1**2
    return out, persis_info


def main() -> int:
    """Run the ensemble; exit status 0 when it completed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nworkers", type=int, default=4)
    parser.add_argument("--sim-max", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=1, help="sims packed into one endpoint task")
    args = parser.parse_args()

    options = {"engine_type": "GlobusComputeEngine", "max_workers_per_node": 2} if ENDPOINT == "local" else {}
    ensemble = Ensemble(
        libE_specs=LibeSpecs(nworkers=args.nworkers),
        sim_specs=SimSpecs(
            sim_f=six_hump_camel, inputs=["x"], outputs=[("f", float)], globus_compute_endpoint=ENDPOINT
        ),
        gen_specs=GenSpecs(
            gen_f=persistent_uniform,
            persis_in=["f", "x", "sim_id"],
            outputs=[("x", float, (2,))],
            user={"initial_batch_size": args.nworkers, "lb": np.array([-3.0, -2.0]), "ub": np.array([3.0, 2.0])},
        ),
        alloc_specs=AllocSpecs(alloc_f=only_persistent_gens, user={"async_return": True}),
        exit_criteria=ExitCriteria(sim_max=args.sim_max),
        gc_specs=GCOnlySpecs(user_endpoint_config=options, template=TEMPLATE, batch_size=args.batch_size),
    )
    ensemble.persis_info = add_unique_random_streams({}, args.nworkers + 1, seed=1234)
    H, _, flag = ensemble.run()
    done = H[H["sim_ended"]]
    best = done[np.argmin(done["f"])]
    print(
        f"{len(done)} sims, {len(ensemble.sim_errors)} failed; best f {best['f']:.5f} at {best['x']}; exit flag {flag}"
    )
    ensemble.save_output(__file__)
    return 0 if flag == 0 and not ensemble.sim_errors else 1


if __name__ == "__main__":
    sys.exit(main())
