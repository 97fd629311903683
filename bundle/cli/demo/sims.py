"""The demo's sim functions: one launching the MPI objective, one computing it in Python."""

from __future__ import annotations

import os
import sys
import typing as t

import numpy as np


def sim_mpi(H: t.Any, persis_info: dict[str, t.Any], sim_specs: dict[str, t.Any], libE_info: dict[str, t.Any]) -> t.Any:
    """Launch the objective as an MPI app through the executor and read its output file (executor mode)."""
    from libensemble.message_numbers import TASK_FAILED, WORKER_DONE

    x0, x1 = (float(v) for v in H["x"][0])
    outfile = os.path.join(sim_specs["user"]["out_dir"], f"objective-{int(H['sim_id'][0])}.txt")
    exctr = libE_info["executor"]
    task = exctr.submit(
        app_name="objective",
        app_args=f"-m bundle.cli.demo.objective {x0!r} {x1!r} {outfile}",
        num_procs=sim_specs["user"]["mpi_ranks"],
    )
    task.wait()
    out = np.zeros(1, dtype=sim_specs["out"])
    try:
        with open(outfile) as fh:
            out["f"] = float(fh.read())
        status = WORKER_DONE if task.state == "FINISHED" else TASK_FAILED
    except (OSError, ValueError):
        out["f"] = np.nan
        status = TASK_FAILED
    return out, persis_info, status


def sim_python(
    H: t.Any, persis_info: dict[str, t.Any], sim_specs: dict[str, t.Any], libE_info: dict[str, t.Any]
) -> t.Any:
    """Compute the objective in Python (GC-only mode: this runs on the endpoint)."""
    from bundle.cli.demo.objective import smoothed

    out = np.zeros(1, dtype=sim_specs["out"])
    out["f"] = smoothed(float(H["x"][0][0]), float(H["x"][0][1]))
    return out, persis_info


MPI_APP = sys.executable
"""The objective app is this Python, run with ``-m bundle.cli.demo.objective``."""
