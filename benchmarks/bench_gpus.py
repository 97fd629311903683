"""GPU packing benchmark: one-GPU tasks packed onto a 4-GPU node vs. the node given to one task at a time.

``gpu_packing``: throughput of 1-rank 0.5 s MPI tasks that each ask for ``num_gpus=1`` on a
``local`` endpoint declaring ``gpus_per_node: 4`` with four task slots (each task pinned to its
own device through the per-rank wrapper and a device claim), divided by the same tasks on the
same template with one slot (Parsl's MPI mode default: a task holds the whole node).  Goal: >= 3.5.

Fair: the same tasks (same app, arguments, ``num_gpus`` and binding) on both sides, both
endpoints started and warmed before timing (start-up timed on neither), the order alternated
per repetition, medians and spread of several repetitions in one process.  The GPUs are
stand-ins (no device is touched), so the figure measures scheduling and binding, not GPU work.

Run ``python -m benchmarks.bench_gpus`` (``--quick`` checks it works; it says nothing about speed).
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
import typing as t
from pathlib import Path

from benchmarks.common import benchmark_command, entry_point, out_option, quick_option
from bundle import GlobusComputeExecutor
from bundle.executor.gpus import LOCK_DIR_ENV

GPUS = 4
GOAL = 3.5


def _summary(values: list[float]) -> dict[str, float]:
    med = statistics.median(values)
    return {"median": med, "min": min(values), "max": max(values), "spread": (max(values) - min(values)) / med}


def gpu_packing(reps: int, tasks: int, seconds: float, lock_dir: str) -> dict[str, t.Any]:
    """Tasks/s of one-GPU sleep tasks: four slots on a 4-GPU node vs. one."""
    sleep = shutil.which("sleep") or "/bin/sleep"
    execs = {}
    for slots in (1, GPUS):
        ex = GlobusComputeExecutor(
            "local",
            user_endpoint_config={
                "gpus_per_node": GPUS,
                "slots_per_node": slots,
                "worker_init": f"export {LOCK_DIR_ENV}={lock_dir}/slots{slots}",
            },
            local_options={"start_timeout": 300},  # start-up is not timed; a loaded machine may be slow
        )
        ex.register_app(sleep, app_name="sleep")
        execs[slots] = ex

    def throughput(slots: int) -> float:
        ex = execs[slots]
        start = time.perf_counter()
        batch = [ex.submit(app_name="sleep", app_args=str(seconds), num_procs=1, num_gpus=1) for _ in range(tasks)]
        for task in batch:
            task.wait()
            assert task.state == "FINISHED", task.read_stderr()
        return tasks / (time.perf_counter() - start)

    for slots in execs:  # warm-up: start both engines, first launches
        for task in [execs[slots].submit(app_name="sleep", app_args="0", num_gpus=1) for _ in range(slots)]:
            task.wait()
    whole, packed = [], []
    for i in range(reps):
        order = (1, GPUS) if i % 2 == 0 else (GPUS, 1)
        got = {s: throughput(s) for s in order}
        whole.append(got[1])
        packed.append(got[GPUS])
    ratios = [p / w for w, p in zip(whole, packed, strict=True)]
    return {
        "name": "gpu_packing",
        "what": f"tasks/s of 1-rank {seconds} s num_gpus=1 MPI tasks on a {GPUS}-GPU node: {GPUS} slots / whole node",
        "goal": f">= {GOAL}",
        "ratio": _summary(ratios),
        "packed_tasks_per_s": _summary(packed),
        "whole_node_tasks_per_s": _summary(whole),
        "tasks_per_rep": tasks,
        "reps": reps,
        "met": statistics.median(ratios) >= GOAL,
    }


@benchmark_command(__doc__)
@quick_option(help="a short run that checks the benchmark works")
@out_option(help="folder for gpus.json and gpus.md")
def cli(quick: bool, out: str) -> int:
    """Run the GPU packing benchmark and write ``gpus.json`` and ``gpus.md``; return the exit code."""
    from benchmarks.bench_executor import in_scratch_folder, write_results

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    with in_scratch_folder("libe-gc-bench-gpus-") as work:  # the tasks' files and the device locks land here
        if quick:
            results = [gpu_packing(reps=1, tasks=4, seconds=0.5, lock_dir=work)]
        else:
            results = [gpu_packing(reps=5, tasks=16, seconds=0.5, lock_dir=work)]
    write_results(folder, "gpus", results, quick)
    return 0


main = entry_point(cli, "python -m benchmarks.bench_gpus")


if __name__ == "__main__":
    sys.exit(main())
