"""A gest-api simulator (a dict in, a dict out) and a gest-api generator, in GC-only mode.

    python run_gest_api.py [--nworkers 4] [--sim-max 40]

The VOCS object names the variables and the objective; the generator is a small
gest-api class (``suggest`` / ``ingest`` / ``finalize``) that runs on the manager,
the simulator a plain function sent to the endpoint. Runs as written on the local
endpoint; for a site endpoint change ENDPOINT to its UUID.
"""

import argparse
import sys

import numpy as np
from gest_api.vocs import VOCS
from libensemble.alloc_funcs.start_only_persistent import only_persistent_gens
from libensemble.specs import AllocSpecs, ExitCriteria, GenSpecs, LibeSpecs, SimSpecs

from bundle import Ensemble, GCOnlySpecs

ENDPOINT = "local"  # a site endpoint: its UUID, e.g. "5f0c6ae5-8d2c-4fb8-9f0a-1b0c7f6f2e11"
TEMPLATE = None  # for a site endpoint, the bundled template it was configured from


class UniformSampler:
    """A gest-api generator: uniform points over the VOCS variables, best value kept from the results."""

    def __init__(self, vocs: VOCS, seed: int = 7) -> None:
        self.vocs = vocs
        self.rng = np.random.default_rng(seed)
        self.best = float("inf")

    def suggest(self, num_points: int) -> list[dict[str, float]]:
        """Return ``num_points`` points as dicts of variable values."""
        return [
            {name: float(self.rng.uniform(*var.domain)) for name, var in self.vocs.variables.items()}
            for _ in range(num_points)
        ]

    def ingest(self, results: list[dict[str, float]]) -> None:
        """Take evaluated points back."""
        self.best = min([self.best, *(r["f"] for r in results if "f" in r)])

    def finalize(self) -> None:
        """Nothing to clean up."""


def rosenbrock(input_dict, **kwargs):
    """Return the Rosenbrock function of the two VOCS variables."""
    x, y = input_dict["x0"], input_dict["x1"]
    return {"f": float((1 - x) ** 2 + 100 * (y - x**2) ** 2)}


def main() -> int:
    """Run the ensemble; exit status 0 when it completed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nworkers", type=int, default=4)
    parser.add_argument("--sim-max", type=int, default=40)
    args = parser.parse_args()

    vocs = VOCS(variables={"x0": [-2.0, 2.0], "x1": [-1.0, 3.0]}, objectives={"f": "MINIMIZE"})
    options = {"engine_type": "GlobusComputeEngine", "max_workers_per_node": 2} if ENDPOINT == "local" else {}
    ensemble = Ensemble(
        libE_specs=LibeSpecs(nworkers=args.nworkers),
        gen_specs=GenSpecs(generator=UniformSampler(vocs), batch_size=args.nworkers, vocs=vocs),
        sim_specs=SimSpecs(simulator=rosenbrock, vocs=vocs, globus_compute_endpoint=ENDPOINT),
        alloc_specs=AllocSpecs(alloc_f=only_persistent_gens),
        exit_criteria=ExitCriteria(sim_max=args.sim_max),
        gc_specs=GCOnlySpecs(user_endpoint_config=options, template=TEMPLATE),
    )
    H, _, flag = ensemble.run()
    done = H[H["sim_ended"]]
    best = done[np.argmin(done["f"])]
    print(f"{len(done)} sims; best f {best['f']:.4f} at x0={best['x0']:.3f}, x1={best['x1']:.3f}; exit flag {flag}")
    return 0 if flag == 0 and not ensemble.sim_errors else 1


if __name__ == "__main__":
    sys.exit(main())
