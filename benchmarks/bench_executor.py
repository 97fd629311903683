"""Executor-mode benchmarks, each a ratio of two things measured side by side in one run.

1. ``executor_overhead``: time per trivial 1-rank MPI task submitted through
   :class:`~bundle.GlobusComputeExecutor` (submit, then ``task.wait()``) divided by
   the time per the same ``MPIFunction`` submitted straight to the same engine
   (``future.result()``).  Goal: <= 1.15.
2. ``packing``: throughput of 1-rank 0.5 s ``sleep`` MPI tasks with ``slots_per_node=2``
   divided by ``slots_per_node=1`` (two engines, same machine).  Goal: >= 1.8 on 2 cores.
   It shows that tasks overlap, not that they share a node well.
3. ``packing_cpu``: the same ratio for CPU-bound tasks: libEnsemble's forces app
   (``forces.c`` from the installed ``libensemble``, built by the benchmark with ``mpicc``),
   a fixed number of particles and steps per task.  Two tasks on two cores contend with
   each other and with anything else the machine runs.

Run ``python -m benchmarks.bench_executor`` (add ``--quick`` for a short run that
checks the benchmark works; it asserts nothing about speed).  Results go to a JSON
file and a markdown table.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import typing as t
from pathlib import Path

from globus_compute_sdk import MPIFunction

from benchmarks.common import benchmark_command, entry_point, out_option, quick_option
from bundle import GlobusComputeExecutor
from bundle.endpoints.session import GCSession

ONE_RANK = {"num_nodes": 1, "ranks_per_node": 1, "num_ranks": 1}


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "spread": (max(values) - min(values)) / statistics.median(values) if statistics.median(values) else 0.0,
    }


def executor_overhead(
    reps: int, tasks: int, exctr: GlobusComputeExecutor | None = None, timeout: float | None = None
) -> dict[str, t.Any]:
    """Seconds per sequential 1-rank ``/bin/true`` MPI task: executor vs. the engine straight.

    Parameters
    ----------
    reps, tasks : int
        Repetitions, and sequential tasks per side and repetition.
    exctr : GlobusComputeExecutor, optional
        The executor measured (default: a ``"local"`` endpoint at the template's defaults).  The other side
        submits the same ``MPIFunction`` straight to the endpoint executor it holds (for an endpoint UUID, the
        SDK ``Executor``).
    timeout : float, optional
        Seconds to wait for each task.

    Returns
    -------
    dict
        The ratio's summary (``ratio``) and per-repetition values (``ratio_values``), and each side's seconds.
    """
    if exctr is None:
        exctr = GlobusComputeExecutor("local")  # the template's defaults: one slot, one task at a time
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
            task.wait(timeout=timeout)
            assert task.state == "FINISHED", task.state
        return (time.perf_counter() - start) / tasks

    def straight() -> float:
        start = time.perf_counter()
        for _ in range(tasks):
            gce.resource_specification = ONE_RANK
            res = gce.submit_to_registered_function(fid).result(timeout=timeout)
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
        "ratio_values": ratios,
        "executor_s_per_task": _summary(ex_times),
        "engine_s_per_task": _summary(raw_times),
        "tasks_per_rep": tasks,
        "reps": reps,
        "met": statistics.median(ratios) <= 1.15,
    }


FORCES_SOURCE = "tests/scaling_tests/forces/forces_app/forces.c"
"""libEnsemble's forces app (an n-body step loop, MPI), relative to the installed ``libensemble`` package."""


def build_forces(folder: str) -> str:
    """Compile libEnsemble's ``forces.c`` with ``mpicc`` into ``folder``; return the path of ``forces.x``.

    Raises
    ------
    RuntimeError
        When ``mpicc`` is not on PATH or the build fails.
    """
    import subprocess

    import libensemble

    mpicc = shutil.which("mpicc")
    if mpicc is None:
        raise RuntimeError("mpicc not found on PATH: install the 'mpich' extra or an MPI compiler wrapper")
    source = Path(libensemble.__file__).parent / FORCES_SOURCE
    exe = str(Path(folder) / "forces.x")
    proc = subprocess.run([mpicc, "-O2", "-o", exe, str(source), "-lm"], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"building {source} with {mpicc} failed:\n{proc.stderr}")
    return exe


def packing(reps: int, tasks: int, app: str, app_args: str, what: str, name: str = "packing") -> dict[str, t.Any]:
    """Throughput of 1-rank tasks of ``app`` with two slots on the node vs. one."""
    execs = {}
    for slots in (1, 2):
        ex = GlobusComputeExecutor("local", user_endpoint_config={"slots_per_node": slots})
        ex.register_app(app, app_name=name)
        execs[slots] = ex

    def throughput(slots: int) -> float:
        ex = execs[slots]
        start = time.perf_counter()
        batch = [ex.submit(app_name=name, app_args=app_args, num_procs=1) for _ in range(tasks)]
        for task in batch:
            task.wait()
            assert task.state == "FINISHED", task.state
        return tasks / (time.perf_counter() - start)

    for slots in (1, 2):  # warm-up: start both engines (start-up is timed on neither side)
        execs[slots].submit(app_name=name, app_args=app_args).wait()
    one, two, loads = [], [], []
    for i in range(reps):
        loads.append(os.getloadavg()[0])
        order = (1, 2) if i % 2 == 0 else (2, 1)
        got = {s: throughput(s) for s in order}
        one.append(got[1])
        two.append(got[2])
    ratios = [b / a for a, b in zip(one, two, strict=True)]
    return {
        "name": name,
        "what": f"tasks/s of 1-rank {what} MPI tasks: slots_per_node=2 / slots_per_node=1",
        "goal": ">= 1.8",
        "ratio": _summary(ratios),
        "slots2_tasks_per_s": _summary(two),
        "slots1_tasks_per_s": _summary(one),
        "tasks_per_rep": tasks,
        "reps": reps,
        "load_average_per_rep": loads,
        "met": statistics.median(ratios) >= 1.8,
    }


def packing_sleep(reps: int, tasks: int, seconds: float) -> dict[str, t.Any]:
    """Packing of 1-rank ``sleep`` tasks: shows that tasks overlap."""
    sleep = shutil.which("sleep") or "/bin/sleep"
    return packing(reps, tasks, sleep, str(seconds), f"{seconds} s sleep")


def packing_cpu(reps: int, tasks: int, particles: int, steps: int, work: str) -> dict[str, t.Any]:
    """Packing of 1-rank CPU-bound tasks (libEnsemble's forces app, fixed size): shows that they share the node."""
    exe = build_forces(work)
    args = f"{particles} {steps} 3"
    return packing(reps, tasks, exe, args, f"forces.x ({particles} particles, {steps} steps)", "packing_cpu")


@contextlib.contextmanager
def in_scratch_folder(prefix: str) -> t.Iterator[str]:
    """Run the block in a new temporary folder (the tasks' files land there); then stop the engines and remove it.

    The interpreter's folder goes first on PATH, for the ``mpiexec`` of the environment the benchmark runs in.
    """
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    cwd = os.getcwd()
    work = tempfile.mkdtemp(prefix=prefix)
    os.chdir(work)
    try:
        yield work
    finally:
        os.chdir(cwd)
        GCSession.clear()
        shutil.rmtree(work, ignore_errors=True)


def write_results(out: Path, name: str, results: list[dict[str, t.Any]], quick: bool) -> None:
    """Write ``out/<name>.json`` (the results with the machine's state) and ``out/<name>.md``; print the table."""
    meta = {
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "quick": quick,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / f"{name}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    table = markdown(results)
    (out / f"{name}.md").write_text(table)
    print(table)


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


@benchmark_command(__doc__)
@quick_option(help="a short run that checks the benchmarks work")
@out_option(help="folder for executor.json and executor.md")
def cli(quick: bool, out: str) -> int:
    """Run the executor benchmarks and write JSON and markdown results; return the exit code."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    with in_scratch_folder("libe-gc-bench-") as work:  # the tasks' stdout/stderr files land here
        if quick:
            results = [
                executor_overhead(reps=2, tasks=5),
                packing_sleep(reps=1, tasks=4, seconds=0.5),
                packing_cpu(reps=1, tasks=4, particles=1000, steps=10, work=work),
            ]
        else:
            results = [
                executor_overhead(reps=7, tasks=40),
                packing_sleep(reps=5, tasks=16, seconds=0.5),
                packing_cpu(reps=5, tasks=16, particles=3000, steps=10, work=work),
            ]
    write_results(folder, "executor", results, quick)
    return 0


main = entry_point(cli, "python -m benchmarks.bench_executor")


if __name__ == "__main__":
    sys.exit(main())
