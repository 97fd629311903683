"""Executor-mode benchmarks, each a ratio of two things measured side by side in one run.

1. ``executor_overhead``: time per trivial 1-rank MPI task submitted through
   :class:`~bundle.GlobusComputeExecutor` (submit, then ``task.wait()``) divided by
   the time per the same ``MPIFunction`` submitted straight to the same engine
   (``future.result()``).  Goal: <= 1.15.
2. ``packing``: throughput of 1-rank 0.5 s MPI tasks with ``slots_per_node=2``
   divided by ``slots_per_node=1`` (two engines, same machine).  Goal: >= 1.8 on 2 cores.

Run ``python -m benchmarks.bench_executor`` (add ``--quick`` for a short run that
checks the benchmark works; it asserts nothing about speed).  Results go to a JSON
file and a markdown table.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import types
import typing as t
from pathlib import Path

import click
from globus_compute_sdk import MPIFunction

from benchmarks.cli import run_command
from bundle import GlobusComputeExecutor
from bundle.session import GCSession

ONE_RANK = {"num_nodes": 1, "ranks_per_node": 1, "num_ranks": 1}


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "spread": (max(values) - min(values)) / statistics.median(values) if statistics.median(values) else 0.0,
    }


def executor_overhead(reps: int, tasks: int) -> dict[str, t.Any]:
    """Seconds per sequential 1-rank ``/bin/true`` MPI task: executor vs. the engine straight."""
    exctr = GlobusComputeExecutor("local", user_endpoint_config={"max_workers_per_block": 1})
    exctr.register_app(shutil.which("true") or "/bin/true", app_name="true")
    gce = exctr.gc_executor()
    fn = MPIFunction(shutil.which("true") or "/bin/true")
    gce.resource_specification = ONE_RANK
    fid = gce.register_function(fn)
    gce.resource_specification = None

    def via_executor() -> float:
        start = time.perf_counter()
        for _ in range(tasks):
            task = exctr.submit(app_name="true", num_procs=1)
            task.wait()
            assert task.state == "FINISHED", task.state
        return (time.perf_counter() - start) / tasks

    def straight() -> float:
        start = time.perf_counter()
        for _ in range(tasks):
            gce.resource_specification = ONE_RANK
            res = gce.submit_to_registered_function(fid).result()
            gce.resource_specification = None
            assert res.returncode == 0, res
        return (time.perf_counter() - start) / tasks

    via_executor(), straight()  # warm-up: engine start, first launches
    ex_times, raw_times = [], []
    for i in range(reps):  # alternate the order so drift hits both sides alike
        first, second = (via_executor, straight) if i % 2 == 0 else (straight, via_executor)
        a, b = first(), second()
        ex_t, raw_t = (a, b) if first is via_executor else (b, a)
        ex_times.append(ex_t)
        raw_times.append(raw_t)
    ratios = [e / r for e, r in zip(ex_times, raw_times, strict=True)]
    return {
        "name": "executor_overhead",
        "what": "s per 1-rank MPI task: GlobusComputeExecutor / MPIFunction straight to the engine",
        "goal": "<= 1.15",
        "ratio": _summary(ratios),
        "executor_s_per_task": _summary(ex_times),
        "engine_s_per_task": _summary(raw_times),
        "tasks_per_rep": tasks,
        "reps": reps,
        "met": statistics.median(ratios) <= 1.15,
    }


def packing(reps: int, tasks: int, seconds: float) -> dict[str, t.Any]:
    """Throughput of 1-rank sleep tasks with two slots on the node vs. one."""
    sleep = shutil.which("sleep") or "/bin/sleep"
    execs = {}
    for slots in (1, 2):
        ex = GlobusComputeExecutor(
            "local", user_endpoint_config={"slots_per_node": slots, "max_workers_per_block": slots}
        )
        ex.register_app(sleep, app_name="sleep")
        execs[slots] = ex

    def throughput(slots: int) -> float:
        ex = execs[slots]
        start = time.perf_counter()
        batch = [ex.submit(app_name="sleep", app_args=str(seconds), num_procs=1) for _ in range(tasks)]
        for task in batch:
            task.wait()
            assert task.state == "FINISHED", task.state
        return tasks / (time.perf_counter() - start)

    for slots in (1, 2):  # warm-up: start both engines
        execs[slots].submit(app_name="sleep", app_args="0").wait()
    one, two = [], []
    for i in range(reps):
        order = (1, 2) if i % 2 == 0 else (2, 1)
        got = {s: throughput(s) for s in order}
        one.append(got[1])
        two.append(got[2])
    ratios = [b / a for a, b in zip(one, two, strict=True)]
    return {
        "name": "packing",
        "what": f"tasks/s of 1-rank {seconds} s MPI tasks: slots_per_node=2 / slots_per_node=1",
        "goal": ">= 1.8",
        "ratio": _summary(ratios),
        "slots2_tasks_per_s": _summary(two),
        "slots1_tasks_per_s": _summary(one),
        "tasks_per_rep": tasks,
        "reps": reps,
        "met": statistics.median(ratios) >= 1.8,
    }


def markdown(results: list[dict[str, t.Any]]) -> str:
    """Render results as a markdown table."""
    lines = [
        "| benchmark | ratio (median) | spread | goal | met | raw numbers (median) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        raw = ", ".join(
            f"{k} {v['median']:.4g}" for k, v in r.items() if isinstance(v, dict) and k != "ratio" and "median" in v
        )
        lines.append(
            f"| {r['name']}: {r['what']} | {r['ratio']['median']:.3f} | {r['ratio']['spread']:.1%} | {r['goal']} "
            f"| {'yes' if r['met'] else 'no'} | {raw} |"
        )
    return "\n".join(lines) + "\n"


@click.command(help=__doc__.splitlines()[0])
@click.option("--quick", is_flag=True, help="a short run that checks the benchmarks work")
@click.option("--out", default="benchmark-results", help="folder for executor.json and executor.md")
def cli(**opts: t.Any) -> int:
    """Run the executor benchmarks and write JSON and markdown results."""
    args = types.SimpleNamespace(**opts)
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    work = tempfile.mkdtemp(prefix="libe-gc-bench-")
    os.chdir(work)  # the tasks' stdout/stderr files land here
    try:
        if args.quick:
            results = [executor_overhead(reps=2, tasks=5), packing(reps=1, tasks=4, seconds=0.5)]
        else:
            results = [executor_overhead(reps=7, tasks=40), packing(reps=5, tasks=16, seconds=0.5)]
    finally:
        os.chdir(cwd)
        GCSession.clear()
        shutil.rmtree(work, ignore_errors=True)
    meta = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "quick": args.quick,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "executor.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    table = markdown(results)
    (out / "executor.md").write_text(table)
    print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the executor benchmarks and write JSON and markdown results."""
    return run_command(cli, argv, "python -m benchmarks.bench_executor")


if __name__ == "__main__":
    sys.exit(main())
