"""Simulation functions for the reliability tests: importable on the engine's workers (light imports only)."""

from __future__ import annotations

import os
import time

import numpy as np
from libensemble.message_numbers import TASK_FAILED, WORKER_DONE


def marked_sleep(H, persis_info, sim_specs):
    """GC-only sim: leave a ``start-<sim_id>-<pid>`` file (one per attempt), sleep, return f = x[0]."""
    user = sim_specs["user"]
    sim_id = int(H["sim_id"][0])
    with open(os.path.join(user["mark_dir"], f"start-{sim_id}-{os.getpid()}-{time.monotonic_ns()}"), "w"):
        pass
    time.sleep(user["sleep"])
    out = np.zeros(len(H), dtype=sim_specs["out"])
    out["f"] = H["x"][:, 0]
    return out, persis_info


def trivial(H, persis_info, sim_specs):
    """GC-only sim: f = x[0] at once."""
    out = np.zeros(len(H), dtype=sim_specs["out"])
    out["f"] = H["x"][:, 0]
    return out, persis_info


def probe_task(H, persis_info, sim_specs, libE_info):
    """Executor-mode sim: run the MPI probe app; record the task's marker, state and error in the history."""
    exctr = libE_info["executor"]
    user = sim_specs["user"]
    args = f"--sleep {user['sleep']}" if user.get("sleep") else f"sim{int(H['sim_id'][0])}"
    task = exctr.submit(app_name="probe", app_args=args, num_procs=user.get("num_procs", 1))
    task.wait(timeout=user.get("wait", 600))
    out = np.zeros(1, dtype=sim_specs["out"])
    out["marker"] = task.marker
    out["state"] = task.state
    out["error"] = str(task.error or "")[-400:]
    return out, persis_info, WORKER_DONE if task.state == "FINISHED" else TASK_FAILED
