"""A GC-only calling script on the real Slurm endpoint, to SIGKILL and resume, or to see its endpoint stopped.

Run as ``python -m tests.realendpoint.resume_driver ENDPOINT_UUID WORKDIR SIM_MAX [--resume] [--sleep S]
[--offline-timeout T]`` from the repository root, in the environment that reaches the services
(``GLOBUS_SDK_ENVIRONMENT=local`` ...): the driver of ``tests/reliability/resume_helpers.py`` (a persistent sampler
on the manager, four virtual workers, sims that log each start to ``WORKDIR/executions.log`` and sleep ``S``
seconds, 1.5 by default, history saved every few sims), sent to the endpoint UUID with the ``slurm`` template.  It
prints the bundle's resume line and ends with ``DONE flag=...``; the final history goes to ``WORKDIR/final.npy``.
An error ends it as it ends a user's script (traceback, exit code 1).
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]

PY_CONFIG = {
    "engine_type": "GlobusComputeEngine",
    "max_workers_per_node": 4,
    # the sims live in this repository's tests: the workers import them from there
    "worker_init": f"export PYTHONPATH={ROOT}",
}
"""The ``user_endpoint_config`` of every GC-only case on the Slurm endpoint: one user endpoint, a one-node block."""


def main(argv: list[str]) -> int:
    """Run (or resume) the ensemble."""
    import importlib

    import numpy as np

    from bundle.gconly import GCOnlySpecs
    from bundle.gconly.launch import run_gconly

    parser = argparse.ArgumentParser(prog="resume_driver")
    parser.add_argument("endpoint")
    parser.add_argument("workdir", type=pathlib.Path)
    parser.add_argument("sim_max", type=int)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--sleep", type=float, default=1.5)
    parser.add_argument("--offline-timeout", type=float, default=None)
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logging.getLogger("bundle.gconly.resume").addHandler(handler)
    logging.getLogger("bundle.gconly.resume").setLevel(logging.INFO)
    # By name: a sim defined in __main__ would travel without its module's globals.
    helpers = importlib.import_module("tests.reliability.resume_helpers")
    specs = helpers.driver_specs(workdir, args.sim_max)
    specs["sim_specs"]["globus_compute_endpoint"] = args.endpoint
    specs["sim_specs"]["user"]["sleep"] = args.sleep
    offline = {} if args.offline_timeout is None else {"offline_timeout": args.offline_timeout}
    gc = GCOnlySpecs(
        template="slurm", user_endpoint_config=dict(PY_CONFIG), resume=args.resume, result_timeout=300, **offline
    )
    started = time.monotonic()
    out = run_gconly(
        specs["sim_specs"],
        specs["gen_specs"],
        specs["exit_criteria"],
        specs["persis_info"],
        specs["alloc_specs"],
        specs["libE_specs"],
        gc_specs=gc,
    )
    np.save(workdir / "final.npy", out.H)
    print(f"DONE flag={out.exit_flag} tasks={out.tasks} seconds={time.monotonic() - started:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
