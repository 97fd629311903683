"""GPU binding and packing on the local template with declared (stand-in) GPUs.

No real GPU is needed: the probe app reports the visible-devices variables every rank
sees, and the start and end time of each task, so binding and packing are checked from
what the ranks saw.
"""

from __future__ import annotations

import itertools
import pathlib
import time

import pytest
from libensemble import Ensemble
from libensemble.specs import ExitCriteria, SimSpecs

from bundle import GlobusComputeExecutor
from bundle.executor.gpus import LOCK_DIR_ENV, WRAPPER_NAME
from tests.ensembles import executor_libe_specs, given_rows
from tests.executor import sims
from tests.executor.conftest import APPS, build

SLOTS = 6
"""More task slots than GPUs: the device claims, not the slots, must keep tasks off each other's devices."""


@pytest.fixture(scope="module")
def gpu_probe(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return build(APPS / "gpu_probe.c", tmp_path_factory.mktemp("apps") / "gpu_probe")


@pytest.fixture(scope="module")
def exctr(gpu_probe, tmp_path_factory):
    locks = tmp_path_factory.mktemp("gpu-locks")
    ex = GlobusComputeExecutor(
        "local",
        user_endpoint_config={
            "gpus_per_node": 4,
            "slots_per_node": SLOTS,
            "worker_init": f"export {LOCK_DIR_ENV}={locks}",
        },
        local_options={"start_timeout": 300},
    )
    ex.register_app(str(gpu_probe), app_name="gpu_probe")
    ex.register_app("/usr/bin/env", app_name="env", mpi=False)
    return ex


def _ranks(task) -> list[dict[str, str]]:
    assert task.state == "FINISHED", task.read_stderr()
    return [dict(kv.split("=", 1) for kv in line.split()) for line in task.read_stdout().splitlines() if line]


@pytest.mark.parametrize(("ranks", "gpus", "per_rank"), [(4, 4, 1), (2, 4, 2)])
def test_each_rank_sees_only_its_own_devices(exctr, tmp_path, monkeypatch, ranks, gpus, per_rank):
    monkeypatch.chdir(tmp_path)
    task = exctr.submit(app_name="gpu_probe", num_procs=ranks, num_gpus=gpus)
    assert f"mpiexec -n {ranks} -ppn {ranks} -hosts localhost sh -c " in task.runline
    assert WRAPPER_NAME in task.runline
    task.wait(timeout=120)
    seen = [r["cuda"].split(",") for r in sorted(_ranks(task), key=lambda r: int(r["rank"]))]
    assert len(seen) == ranks and all(len(devs) == per_rank for devs in seen)
    everything = [d for devs in seen for d in devs]
    assert sorted(everything) == ["0", "1", "2", "3"], f"ranks must split the node's 4 devices: {seen}"


def test_a_serial_app_gets_its_devices_in_the_environment(exctr, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    task = exctr.submit(app_name="env", num_gpus=2)
    task.wait(timeout=120)
    assert task.state == "FINISHED", task.read_stderr()
    env = dict(line.split("=", 1) for line in task.read_stdout().splitlines() if "=" in line)
    assert len(env["CUDA_VISIBLE_DEVICES"].split(",")) == 2
    assert set(env["CUDA_VISIBLE_DEVICES"].split(",")) <= {"0", "1", "2", "3"}


def test_sixteen_one_gpu_tasks_pack_four_at_a_time_never_sharing_a_device(exctr, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tasks = [
        exctr.submit(app_name="gpu_probe", app_args="--sleep 1", num_gpus=1, stdout=f"probe{i}.out") for i in range(16)
    ]
    for task in tasks:
        task.wait(timeout=300)
    runs = []
    for task in tasks:
        (rank,) = _ranks(task)
        runs.append((rank["cuda"], float(rank["start"]), float(rank["end"])))
    (tmp_path / "runs.txt").write_text("".join(f"{d} {s:.6f} {e:.6f}\n" for d, s, e in runs))
    assert {d for d, _, _ in runs} == {"0", "1", "2", "3"}
    for (d1, s1, e1), (d2, s2, e2) in itertools.combinations(runs, 2):
        if d1 == d2:
            assert e1 <= s2 or e2 <= s1, f"two tasks held device {d1} at once: {(s1, e1)} and {(s2, e2)}"
    edges = sorted([(s, 1) for _, s, _ in runs] + [(e, -1) for _, _, e in runs], key=lambda x: (x[0], x[1]))
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak == 4, f"{SLOTS} slots and 4 GPUs: four one-GPU tasks should run together (peak {peak})"


def test_forces_style_sims_through_the_ensemble_each_rank_on_its_own_gpu(exctr, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    n = 8
    ens = Ensemble(
        executor=exctr,
        libE_specs=executor_libe_specs(4),
        sim_specs=SimSpecs(
            sim_f=sims.run_gpu_probe,
            inputs=["x"],
            outputs=[("devices", "U32"), ("start", float), ("end", float)],
            user={"ranks": 1},
        ),
        exit_criteria=ExitCriteria(sim_max=n),
        H0=given_rows(n),
    )
    H, _, flag = ens.run()
    assert flag == 0
    done = H[H["sim_ended"]]
    assert len(done) == n
    assert set(done["devices"]) <= {"0", "1", "2", "3"}
    for a, b in itertools.combinations(done, 2):
        if a["devices"] == b["devices"]:
            assert a["end"] <= b["start"] or b["end"] <= a["start"], "two sims shared a GPU at once"
    overlapping = [
        (a, b) for a, b in itertools.combinations(done, 2) if a["start"] < b["end"] and b["start"] < a["end"]
    ]
    assert overlapping, "four workers with one-GPU sims should run sims side by side"


def test_a_task_killed_while_waiting_for_devices_never_starts(exctr, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    holder = exctr.submit(app_name="gpu_probe", num_procs=4, num_gpus=4, app_args="--sleep 3", stdout="holder.out")
    deadline = time.monotonic() + 120
    while holder.state == "WAITING" and time.monotonic() < deadline:  # RUNNING once its stdout file appears
        time.sleep(0.05)
        holder.poll()
    waiting = exctr.submit(app_name="gpu_probe", num_gpus=1, stdout="waiting.out")
    time.sleep(1.0)  # a free slot, but no free device: it waits for the holder's devices
    waiting.poll()
    assert waiting.state == "WAITING" and not (tmp_path / "waiting.out").exists()
    waiting.kill()
    assert waiting.state == "USER_KILLED"
    holder.wait(timeout=120)
    assert holder.state == "FINISHED"
    # Once the holder frees its devices the runner claims one, sees the kill file, removes it and returns.
    deadline = time.monotonic() + 60
    while list(tmp_path.glob(".libe-gc-kill-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list(tmp_path.glob(".libe-gc-kill-*")), "the runner should have seen the kill file"
    assert not (tmp_path / "waiting.out").exists(), "the killed task's app started"
