"""Run ensembles in both modes, with failing sims and a failing MPI app, writing everything under one folder.

Run as a subprocess by ``test_security.py`` with secrets in its environment::

    python -m tests.reliability.secret_run ROOT APP

Each phase runs in its own folder under ROOT (its ensemble.log, libE_stats.txt, GC-only error files) with
the local endpoint's run directory (engine logs, submit scripts, task folders) kept under ROOT too.
"""

from __future__ import annotations

import os
import pathlib
import sys
import typing as t

import numpy as np


def _executor_phase(root: pathlib.Path, app: str, name: str, sim_f: t.Any) -> None:
    from libensemble import Ensemble
    from libensemble.alloc_funcs.give_sim_work_first import give_sim_work_first
    from libensemble.gen_funcs.sampling import uniform_random_sample
    from libensemble.specs import AllocSpecs, ExitCriteria, GenSpecs, LibeSpecs, SimSpecs

    from bundle import GlobusComputeExecutor
    from bundle.endpoints.session import GCSession
    from tests.reliability.guard_helpers import MPI_OPTS

    work = root / name
    work.mkdir()
    os.chdir(work)
    exctr = GlobusComputeExecutor(
        "local", user_endpoint_config=MPI_OPTS, local_options={"run_dir": str(root / f"{name}-engine")}
    )
    exctr.register_app(full_path=app, app_name="app")
    ens = Ensemble(
        executor=exctr,
        libE_specs=LibeSpecs(comms="threads", nworkers=2, gen_on_manager=True, disable_resource_manager=True),
        sim_specs=SimSpecs(sim_f=sim_f, inputs=["x", "sim_id"], outputs=[("f", float)]),
        gen_specs=GenSpecs(
            gen_f=uniform_random_sample,
            outputs=[("x", float, (2,))],
            user={"gen_batch_size": 4, "lb": np.array([-1.0, -1.0]), "ub": np.array([1.0, 1.0])},
        ),
        alloc_specs=AllocSpecs(alloc_f=give_sim_work_first),
        exit_criteria=ExitCriteria(sim_max=4),
    )
    ens.add_random_streams()
    try:
        H, _, flag = ens.run()
        print(f"{name}: flag {flag}, sims ended {int(H['sim_ended'].sum())}, f {H['f'][H['sim_ended']].tolist()}")
    except Exception as err:
        print(f"{name}: run raised {type(err).__name__}: {err}")
    finally:
        GCSession.clear()


def _gconly_phase(root: pathlib.Path) -> None:
    from bundle.endpoints.session import GCSession
    from tests.reliability import guard_helpers as gh

    work = root / "gconly"
    work.mkdir()
    os.chdir(work)
    try:
        H, _, flag, errors, _ = gh.run_gconly(
            gh.gconly_specs(gh.fails_on_negative, 2, 8),
            2,
            local_options={"run_dir": str(root / "gconly-engine")},
        )
        print(f"gconly: flag {flag}, sims ended {int(H['sim_ended'].sum())}, failed {sorted(errors)}")
    finally:
        GCSession.clear()


def main(argv: list[str]) -> int:
    """Run the three phases under ``argv[0]`` with the MPI app ``argv[1]``."""
    from tests.reliability import guard_helpers as gh

    root, app = pathlib.Path(argv[0]).resolve(), argv[1]
    _executor_phase(root, app, "executor-mpi-app-fails", gh.mpi_app_sim)
    _executor_phase(root, app, "executor-sim-raises", gh.raising_sim)
    _gconly_phase(root)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
