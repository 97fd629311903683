"""Sim functions written for libEnsemble's MPIExecutor, used unchanged with GlobusComputeExecutor."""

from __future__ import annotations

import numpy as np
from libensemble.message_numbers import TASK_FAILED, WORKER_DONE


def run_forces(H, persis_info, sim_specs, libE_info):
    """Run the forces MPI app as libEnsemble's forces example does, and read ``forces.stat``."""
    particles = str(int(H["x"][0][0]))
    args = particles + " " + str(10) + " " + particles
    exctr = libE_info["executor"]
    task = exctr.submit(app_name="forces", app_args=args, num_procs=sim_specs["user"]["num_procs"])
    task.wait()
    try:
        data = np.loadtxt("forces.stat")
        final_energy = data[-1]
        calc_status = WORKER_DONE
    except Exception:
        final_energy = np.nan
        calc_status = TASK_FAILED
    output = np.zeros(1, dtype=sim_specs["out"])
    output["energy"] = final_energy
    return output, persis_info, calc_status


def run_probe(H, persis_info, sim_specs, libE_info):
    """Launch the probe with 1 or 2 ranks; report the ranks it saw and whether the executor knew this worker."""
    exctr = libE_info["executor"]
    ranks = 1 + int(H["sim_id"][0]) % 2
    task = exctr.submit(app_name="probe", app_args=f"sim{int(H['sim_id'][0])}", num_procs=ranks)
    task.wait()
    out = task.read_stdout()
    output = np.zeros(1, dtype=sim_specs["out"])
    output["ranks"] = out.count("rank=") if f"argv=sim{int(H['sim_id'][0])}" in out else -1
    output["same_worker"] = exctr.workerID == libE_info["workerID"] and f"_worker{libE_info['workerID']}_" in task.name
    return output, persis_info, WORKER_DONE if task.state == "FINISHED" else TASK_FAILED


def run_until_told(H, persis_info, sim_specs, libE_info):
    """Run the probe app for ``x`` seconds, polling the manager; a kill signal stops the app."""
    exctr = libE_info["executor"]
    seconds = float(H["x"][0][0])
    task = exctr.submit(app_name="probe", app_args=f"--sleep {seconds}")
    calc_status = exctr.polling_loop(task, delay=0.1, poll_manager=True)
    output = np.zeros(1, dtype=sim_specs["out"])
    output["energy"] = seconds
    with open("task.txt", "w") as fh:
        fh.write(f"{task.marker} {task.state}\n")
    return output, persis_info, calc_status


def run_gpu_probe(H, persis_info, sim_specs, libE_info):
    """A forces-style GPU sim: one GPU per rank (``match_procs_to_gpus``); report what each rank saw."""
    exctr = libE_info["executor"]
    ranks = sim_specs["user"]["ranks"]
    task = exctr.submit(app_name="gpu_probe", app_args="--sleep 1", num_gpus=ranks, match_procs_to_gpus=True)
    task.wait()
    lines = [dict(kv.split("=", 1) for kv in line.split()) for line in task.read_stdout().splitlines() if line]
    output = np.zeros(1, dtype=sim_specs["out"])
    output["devices"] = ";".join(rank["cuda"] for rank in lines)
    output["start"] = min((float(rank["start"]) for rank in lines), default=np.nan)
    output["end"] = max((float(rank["end"]) for rank in lines), default=np.nan)
    return output, persis_info, WORKER_DONE if task.state == "FINISHED" and len(lines) == ranks else TASK_FAILED


def run_timed_probe(H, persis_info, sim_specs, libE_info):
    """Launch the GPU probe as ``sim_specs["user"]`` says (ranks, GPUs, seconds); record when it ran and on what."""
    user = sim_specs["user"]
    task = libE_info["executor"].submit(
        app_name="gpu_probe",
        app_args=f"--sleep {user['seconds']}",
        num_procs=user["num_procs"],
        num_gpus=user.get("num_gpus"),
    )
    task.wait(timeout=300)
    lines = [dict(kv.split("=", 1) for kv in line.split()) for line in task.read_stdout().splitlines() if line]
    output = np.zeros(1, dtype=sim_specs["out"])
    output["ranks"] = len(lines)
    output["devices"] = ";".join(rank["cuda"] for rank in lines)
    output["start"] = min((float(rank["start"]) for rank in lines), default=np.nan)
    output["end"] = max((float(rank["end"]) for rank in lines), default=np.nan)
    return output, persis_info, WORKER_DONE if task.state == "FINISHED" else TASK_FAILED


def run_with_other_fields(H, persis_info, sim_specs, libE_info):
    """Compose a launch (dry run), then return a field ``sim_specs["out"]`` does not declare (``F``, not ``energy``)."""
    task = libE_info["executor"].submit(app_name="probe", num_procs=1, dry_run=True)
    output = np.zeros(1, dtype=[("F", np.float32)])
    output["F"] = len(task.runline)
    return output, persis_info


def run_span(H, persis_info, sim_specs, libE_info):
    """Run the serial ``span`` app; record when it ran and which engine's worker pool ran it."""
    task = libE_info["executor"].submit(app_name="span")
    task.wait(timeout=300)
    fields = dict(kv.split("=", 1) for kv in task.read_stdout().split())
    output = np.zeros(1, dtype=sim_specs["out"])
    output["start"], output["end"], output["pool"] = float(fields["start"]), float(fields["end"]), int(fields["pool"])
    return output, persis_info, WORKER_DONE if task.state == "FINISHED" else TASK_FAILED
