"""Sims and a generator for the multi-node tests: importable on the engine's workers (light imports only)."""

from __future__ import annotations

import os
import time

import numpy as np
from libensemble.message_numbers import TASK_FAILED, WORKER_DONE


def where(H, persis_info, sim_specs):
    """GC-only sim: sleep, then report the Slurm node the worker pool runs on (``$SLURMD_NODENAME``)."""
    user = sim_specs["user"]
    if user.get("mark_dir"):
        sim_id = int(H["sim_id"][0])
        node, job = os.environ.get("SLURMD_NODENAME", "-"), os.environ.get("SLURM_JOB_ID", "-")
        name = f"start-{sim_id}-{node}-{job}-{os.getpid()}-{time.monotonic_ns()}"
        with open(os.path.join(user["mark_dir"], name), "w"):
            pass
    time.sleep(user.get("sleep", 0.0))
    out = np.zeros(len(H), dtype=sim_specs["out"])
    out["f"] = H["x"][:, 0]
    out["node"] = os.environ.get("SLURMD_NODENAME", "-")
    if "job" in out.dtype.names:
        out["job"] = os.environ.get("SLURM_JOB_ID", "-")
    return out, persis_info


def sized_nodes(H, persis_info, gen_specs, libE_info):
    """Generator: ``gen_batch_size`` points whose ``nodes`` alternate 1, 2, 1, 2, ..."""
    n = gen_specs["user"]["gen_batch_size"]
    out = np.zeros(n, dtype=gen_specs["out"])
    start = int(persis_info.get("made", 0))
    out["x"][:, 0] = np.arange(start, start + n)
    out["nodes"] = 1 + (np.arange(start, start + n) % 2)
    persis_info["made"] = start + n
    return out, persis_info


def span_task(H, persis_info, sim_specs, libE_info):
    """Executor-mode sim: run the node probe on ``H["nodes"]`` nodes, two ranks each; record where it ran.

    ``H["sleep"]`` (when present) or ``user["sleep"]`` is how long the ranks stay; with ``user["mark_dir"]``
    each run of the app leaves a line in ``<mark_dir>/sim<id>``, and with ``user["unless"]`` the ranks do
    not sleep once that file exists.
    """
    exctr = libE_info["executor"]
    user = sim_specs["user"]
    sim_id = int(H["sim_id"][0])
    nodes = int(H["nodes"][0])
    sleep = float(H["sleep"][0]) if "sleep" in H.dtype.names else float(user.get("sleep", 0))
    args = f"--sleep {sleep}"
    if user.get("unless"):
        args += f" --unless {user['unless']}"
    if user.get("mark_dir"):
        args += f" --mark {os.path.join(user['mark_dir'], f'sim{sim_id}')}"
    task = exctr.submit(app_name="probe", app_args=args, num_nodes=nodes, procs_per_node=2)
    task.wait(timeout=user.get("wait", 300))
    out = np.zeros(1, dtype=sim_specs["out"])
    out["state"] = task.state
    out["runline"] = task.runline
    out["stdout"] = task.read_stdout() if task.state == "FINISHED" else ""
    out["error"] = str(task.error or "")[-600:]
    if "ended" in out.dtype.names:
        out["ended"] = time.time()
    return out, persis_info, WORKER_DONE if task.state == "FINISHED" else TASK_FAILED
