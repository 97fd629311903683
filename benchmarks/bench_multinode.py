"""Several Slurm nodes per block: one-node task throughput across nodes, and time to the first 2-node MPI result.

    python -m benchmarks.bench_multinode            # 5 repetitions, 18 tasks of 1 s per measurement
    python -m benchmarks.bench_multinode --quick    # 1 repetition, 6 tasks

Each measurement creates a local endpoint from the bundled ``slurm`` template (GlobusMPIEngine;
one batch job with ``--exclusive``, the worker pool on its first node) and times, side by side
in this process, alternating which goes first:

* ``throughput``: ``--tasks`` one-rank MPI tasks of ``--seconds`` s (``sleep``), submitted at
  once after a first task has returned (start-up timed on neither side), on a block of 3 nodes
  with ``slots_per_node=2`` (six tasks at once, two per node) and on a block of 1 node with
  ``slots_per_node=1`` (one at a time).  Same tasks, same launcher on both sides.  Ratio: 3-node
  tasks/s / 1-node tasks/s (goal >= 5; 6 is ideal).
* ``first_2node_result_s``: seconds from creating an endpoint with ``nodes_per_block=2`` to the
  result of a first MPI task spanning both nodes (``num_nodes=2``, one rank per node): job
  submission, scheduling, worker start-up and one 2-node launch (goal <= 10 s).  The 1-node
  endpoint's first result is reported beside it.

The cluster is shared: before each measurement the benchmark waits (up to ``--wait`` s) until
no job is queued or running (``waited_s``; ``busy`` marks a measurement taken while others' jobs
were there).  Every job it submitted is cancelled, and it checks none is left.  Without a Slurm
of 3 nodes it writes ``{"skipped": "..."}``.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import typing as t

import click

from benchmarks.bench_slurm import SlurmSettings, cancel_and_wait, slurm_status, summary, wait_for_free_node
from benchmarks.common import (
    MIN_REPS,
    benchmark_command,
    entry_point,
    load_average,
    machine,
    output_option,
    quick_option,
    reps_option,
    slurm_options,
)

ONE_RANK = {"num_nodes": 1, "ranks_per_node": 1, "num_ranks": 1}
TWO_NODES = {"num_nodes": 2, "ranks_per_node": 1, "num_ranks": 2}
THROUGHPUT_GOAL = 5.0
FIRST_RESULT_GOAL_S = 10.0


def nodes_up() -> int:
    """Nodes of the cluster that can run jobs."""
    out = subprocess.run(["sinfo", "--noheader", "-N", "--format=%N %t"], capture_output=True, text=True, timeout=30)
    return len(
        {
            line.split()[0]
            for line in out.stdout.splitlines()
            if line.split()[-1].rstrip("*~#$@^-") in ("idle", "mix", "alloc")
        }
    )


def _endpoint(options: dict[str, t.Any], spec: dict[str, int], run_dir: pathlib.Path, start_timeout: float) -> t.Any:
    from bundle.endpoints.local import LocalEndpoint

    return LocalEndpoint(
        template="slurm",
        user_endpoint_config=options,
        resource_specification=spec,
        run_dir=run_dir,
        start_timeout=start_timeout,
    )


def first_result(options: dict[str, t.Any], spec: dict[str, int], run_dir: pathlib.Path, timeout: float) -> float:
    """Seconds from creating an endpoint to the result of one MPI task with ``spec``; the endpoint is stopped."""
    from globus_compute_sdk import MPIFunction

    start = time.perf_counter()
    ep = _endpoint(options, spec, run_dir, timeout)
    try:
        res = ep.submit(MPIFunction("printenv SLURMD_NODENAME")).result(timeout=timeout + 60)
        seconds = time.perf_counter() - start
        if res.returncode != 0:
            raise RuntimeError(f"first MPI task failed: {res.stderr}")
        nodes = set(res.stdout.split())
        if len(nodes) != spec["num_nodes"]:
            raise RuntimeError(f"the task's ranks ran on {sorted(nodes)}, not on {spec['num_nodes']} node(s)")
    finally:
        ep.shutdown(wait=False, cancel_futures=True)
    return seconds


def tasks_per_s(
    options: dict[str, t.Any], tasks: int, seconds: float, run_dir: pathlib.Path, timeout: float
) -> dict[str, float]:
    """One-rank tasks/s on an endpoint with ``options``, timed after a first task returned."""
    from globus_compute_sdk import MPIFunction

    sleep = shutil.which("sleep") or "/bin/sleep"
    ep = _endpoint(options, ONE_RANK, run_dir, timeout)
    try:
        start = time.perf_counter()
        ep.submit(MPIFunction("true")).result(timeout=timeout + 60)
        started = time.perf_counter() - start
        # The whole command under the launcher, so each task reports the node it ran on.
        fn = MPIFunction(f"sh -c '{sleep} {seconds}; printenv SLURMD_NODENAME'")
        t0 = time.perf_counter()
        futures = [ep.submit(fn) for _ in range(tasks)]
        nodes = set()
        for fut in futures:
            res = fut.result(timeout=600)
            if res.returncode != 0:
                raise RuntimeError(f"MPI task failed: {res.stderr}")
            nodes.update(res.stdout.split())
        rate = tasks / (time.perf_counter() - t0)
    finally:
        ep.shutdown(wait=False, cancel_futures=True)
    return {"tasks_per_s": rate, "first_result_s": started, "nodes_used": len(nodes)}


def run(settings: SlurmSettings) -> dict[str, t.Any]:
    """Run every measurement; return the results (or why they were skipped)."""
    why = slurm_status()
    if not why and nodes_up() < 3:
        why = f"no Slurm of 3 nodes: {nodes_up()} node(s) up"
    if why:
        return {"skipped": why}
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    base = settings.endpoint_options()
    sides = {
        "three_nodes_slots2": {**base, "nodes_per_block": 3, "slots_per_node": 2},
        "one_node_slots1": {**base, "nodes_per_block": 1, "slots_per_node": 1},
    }
    root = pathlib.Path(tempfile.mkdtemp(prefix="libe-gc-bench-multinode-")).resolve()
    runs: dict[str, list[dict[str, t.Any]]] = {name: [] for name in sides}
    first2: list[dict[str, t.Any]] = []
    left: list[str] = []

    def settle() -> tuple[float, bool]:
        nonlocal left
        left = cancel_and_wait(str(root))  # each measurement's job is gone before the next
        if left:
            raise RuntimeError(f"Slurm jobs still listed after cancelling them: {left}")
        return wait_for_free_node(settings.wait)

    try:
        for rep in range(settings.reps):
            order = list(sides) if rep % 2 == 0 else list(reversed(sides))
            for name in order:
                waited, busy = settle()
                got: dict[str, t.Any] = tasks_per_s(
                    sides[name], settings.tasks, settings.seconds, root / f"rep{rep}-{name}", settings.start_timeout
                )
                got.update(waited_s=waited, busy=busy, load_average=load_average())
                runs[name].append(got)
                print(f"multinode rep {rep + 1}/{settings.reps}, {name}: {got['tasks_per_s']:.2f} tasks/s", flush=True)
            waited, busy = settle()
            seconds = first_result(
                {**base, "nodes_per_block": 2}, TWO_NODES, root / f"rep{rep}-first2", settings.start_timeout
            )
            first2.append({"seconds": seconds, "waited_s": waited, "busy": busy, "load_average": load_average()})
            print(f"multinode rep {rep + 1}/{settings.reps}: first 2-node result after {seconds:.1f} s", flush=True)
    finally:
        left = cancel_and_wait(str(root))
        shutil.rmtree(root, ignore_errors=True)
    if left:
        raise RuntimeError(f"Slurm jobs left behind: {left}")
    a, b = runs["three_nodes_slots2"], runs["one_node_slots1"]
    ratios = [x["tasks_per_s"] / y["tasks_per_s"] for x, y in zip(a, b, strict=True)]
    firsts = [f["seconds"] for f in first2]
    one_node_first = [r["first_result_s"] for r in b]
    return {
        "options": base,
        "tasks": settings.tasks,
        "seconds": settings.seconds,
        "reps": settings.reps,
        **runs,
        "first_2node": first2,
        "ratios": {
            "multinode_throughput": {
                **summary(ratios),
                "values": ratios,
                "goal": f">= {THROUGHPUT_GOAL:g}",
                "met": statistics.median(ratios) >= THROUGHPUT_GOAL,
                "what": f"tasks/s of 1-rank {settings.seconds:g} s MPI tasks: 3-node block, slots_per_node=2 / "
                "1-node block, slots_per_node=1",
                "raw": {
                    "three_nodes_slots2_tasks_per_s": statistics.median(r["tasks_per_s"] for r in a),
                    "one_node_slots1_tasks_per_s": statistics.median(r["tasks_per_s"] for r in b),
                },
            },
            "first_2node_result_s": {
                **summary(firsts),
                "values": firsts,
                "goal": f"<= {FIRST_RESULT_GOAL_S:g} s",
                "met": statistics.median(firsts) <= FIRST_RESULT_GOAL_S,
                "what": "seconds from endpoint creation to the first 2-node MPI result (nodes_per_block=2)",
                "raw": {"one_node_first_result_s": statistics.median(one_node_first)},
            },
        },
    }


@benchmark_command(__doc__)
@quick_option(help="one repetition of 6 tasks")
@reps_option(help=f"repetitions (default {MIN_REPS}, quick 1)")
@click.option("--tasks", type=int, default=None, help="MPI tasks per throughput measurement (default 18, quick 6)")
@click.option("--seconds", type=float, default=1.0, help="seconds each MPI task sleeps (1.0)")
@slurm_options(wait_help="seconds to wait for a free cluster (900)")
@output_option("multinode.json")
def cli(quick: bool, reps: int | None, tasks: int | None, output: str, **options: t.Any) -> int:
    """Run the multi-node benchmark (or record why it was skipped) and write the JSON file; return the exit code."""
    settings = SlurmSettings(reps=reps or (1 if quick else MIN_REPS), tasks=tasks or (6 if quick else 18), **options)
    result = {
        "command": " ".join([os.path.basename(sys.executable), "-m", "benchmarks.bench_multinode", *sys.argv[1:]]),
        "machine": machine(),
        "quick": quick,
        **run(settings),
    }
    pathlib.Path(output).write_text(json.dumps(result, indent=2) + "\n")
    if "skipped" in result:
        print(f"multinode: skipped ({result['skipped']})")
    else:
        for name, ratio in result["ratios"].items():
            print(f"{name}: median {ratio['median']:.3f} (min {ratio['min']:.3f}, max {ratio['max']:.3f})")
    print(f"wrote {output}")
    return 0


main = entry_point(cli, "python -m benchmarks.bench_multinode")


if __name__ == "__main__":
    sys.exit(main())
