"""The ``slurm`` template on a real Slurm: seconds to the first result, and MPI tasks/s with and without packing.

    python -m benchmarks.bench_slurm            # 5 repetitions, 16 tasks of 0.5 s per measurement
    python -m benchmarks.bench_slurm --quick    # 1 repetition, 4 tasks

Each measurement creates a local endpoint from the bundled ``slurm`` template
(GlobusMPIEngine; the engine submits one batch job with ``--exclusive`` and its worker pool
runs inside it), then:

* ``first_result_s``: seconds from creating the endpoint to the result of a first 1-rank
  MPI task (``true``): batch job submission, scheduling, worker start-up and one launch;
* ``tasks_per_s``: ``--tasks`` 1-rank MPI tasks of ``--seconds`` s (``sleep``), submitted at
  once, launched through ``$PARSL_MPI_PREFIX`` (``--launcher``) -> tasks/s.

with ``slots_per_node=1`` (MPI mode gives each task the whole node: one at a time) and
``slots_per_node=2`` (two 1-rank tasks share the node), alternating which goes first.  Ratio:
``slots_per_node=2 / slots_per_node=1`` tasks/s (goal >= 1.8 on a node with 2 CPUs).

The node is shared: before each measurement the benchmark waits (up to ``--wait``
seconds) until no job is queued or running, so other jobs do not distort the numbers
(``waited_s`` says how long; ``node_busy`` marks a measurement taken while others' jobs were
there).  Every job it submitted is cancelled at the end, and it checks ``squeue`` shows none
left.  Without Slurm (no ``sinfo``, or no node up) it writes ``{"skipped": "no Slurm: ..."}``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import typing as t

import click

from benchmarks.common import benchmark_command, entry_point, output_option, quick_option, reps_option, slurm_options

REPO = pathlib.Path(__file__).resolve().parents[1]
ONE_RANK = {"num_nodes": 1, "ranks_per_node": 1, "num_ranks": 1}


@dataclasses.dataclass(frozen=True)
class SlurmSettings:
    """How a benchmark on the shared Slurm runs: repetitions, tasks, and the ``slurm`` template's options."""

    reps: int
    tasks: int
    seconds: float
    launcher: str
    partition: str | None
    network_interface: str
    wait: float
    start_timeout: float

    def endpoint_options(self) -> dict[str, t.Any]:
        """Return the ``slurm`` template's options every measurement's endpoint starts from."""
        options: dict[str, t.Any] = {"walltime": "00:15:00", "mpi_launcher": self.launcher}
        if self.partition:
            options["partition"] = self.partition
        if self.network_interface:
            options["network_interface"] = self.network_interface
        return options


def slurm_status() -> str:
    """Return ``""`` when a Slurm node is up here, otherwise why not."""
    if shutil.which("sinfo") is None or shutil.which("squeue") is None:
        return "no Slurm: sinfo/squeue not found"
    try:
        out = subprocess.run(
            ["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"no Slurm: sinfo failed ({err})"
    states = {s.strip().rstrip("*~#$@^-") for s in out.stdout.split()}
    if out.returncode != 0 or not states & {"idle", "mix", "alloc"}:
        return f"no Slurm: no node up (sinfo exit {out.returncode}, states {sorted(states)})"
    return ""


def _squeue() -> list[tuple[str, str, str]]:
    """(job id, state, command) of every queued or running job."""
    out = subprocess.run(
        ["squeue", "--noheader", "--format=%i|%T|%o"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    return [tuple(line.split("|", 2)) for line in out.splitlines() if line.count("|") >= 2]  # type: ignore[misc]


def our_jobs(root: str) -> list[str]:
    """Ids of the jobs whose batch script lies under ``root`` (this run's jobs)."""
    return [job for job, _, cmd in _squeue() if cmd.startswith(root)]


def wait_for_free_node(timeout: float) -> tuple[float, bool]:
    """Wait until no job is queued or running; return (seconds waited, still busy)."""
    start = time.monotonic()
    announced = False
    while _squeue():
        if time.monotonic() - start > timeout:
            return time.monotonic() - start, True
        if not announced:
            print(f"slurm: waiting for others' jobs to leave the node (up to {timeout:.0f} s)", flush=True)
            announced = True
        time.sleep(2.0)
    return time.monotonic() - start, False


def cancel_and_wait(root: str, timeout: float = 120.0) -> list[str]:
    """Cancel this run's jobs and wait until squeue shows none; return those still listed."""
    ids = our_jobs(root)
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=30, check=False)
    deadline = time.monotonic() + timeout
    left = our_jobs(root)
    while left and time.monotonic() < deadline:
        time.sleep(1.0)
        left = our_jobs(root)
    return left


def measure(
    slots: int, tasks: int, seconds: float, options: dict[str, t.Any], run_dir: pathlib.Path, start_timeout: float
) -> dict[str, float]:
    """One endpoint with ``slots_per_node=slots``: seconds to the first result, then tasks/s."""
    from globus_compute_sdk import MPIFunction

    from bundle.endpoints.local import LocalEndpoint

    true = shutil.which("true") or "/bin/true"
    sleep = shutil.which("sleep") or "/bin/sleep"
    start = time.perf_counter()
    ep = LocalEndpoint(
        template="slurm",
        user_endpoint_config={**options, "slots_per_node": slots},
        resource_specification=ONE_RANK,
        run_dir=run_dir,
        start_timeout=start_timeout,
    )
    try:
        first = ep.submit(MPIFunction(true)).result(timeout=start_timeout + 60)
        first_s = time.perf_counter() - start
        if first.returncode != 0:
            raise RuntimeError(f"first MPI task failed: {first.stderr}")
        fn = MPIFunction(f"{sleep} {seconds}")
        t0 = time.perf_counter()
        futures = [ep.submit(fn) for _ in range(tasks)]
        for fut in futures:
            res = fut.result(timeout=600)
            if res.returncode != 0:
                raise RuntimeError(f"MPI task failed: {res.stderr}")
        rate = tasks / (time.perf_counter() - t0)
    finally:
        ep.shutdown(wait=False, cancel_futures=True)
    return {"first_result_s": first_s, "tasks_per_s": rate}


def summary(values: list[float]) -> dict[str, float]:
    """Median and spread of a list of numbers."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def run(settings: SlurmSettings) -> dict[str, t.Any]:
    """Run every measurement; return the results (or why they were skipped)."""
    why = slurm_status()
    if why:
        return {"skipped": why}
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    options = settings.endpoint_options()
    root = pathlib.Path(tempfile.mkdtemp(prefix="libe-gc-bench-slurm-")).resolve()
    runs: dict[int, list[dict[str, t.Any]]] = {1: [], 2: []}
    left: list[str] = []
    try:
        for rep in range(settings.reps):
            for slots in (1, 2) if rep % 2 == 0 else (2, 1):
                waited, busy = wait_for_free_node(settings.wait)
                got: dict[str, t.Any] = measure(
                    slots,
                    settings.tasks,
                    settings.seconds,
                    options,
                    root / f"rep{rep}-slots{slots}",
                    settings.start_timeout,
                )
                got.update(waited_s=waited, node_busy=busy)
                runs[slots].append(got)
                print(
                    f"slurm rep {rep + 1}/{settings.reps}, slots_per_node={slots}: first result "
                    f"{got['first_result_s']:.1f} s, {got['tasks_per_s']:.2f} tasks/s",
                    flush=True,
                )
                left = cancel_and_wait(str(root))  # the job is gone before the next measurement
                if left:
                    raise RuntimeError(f"Slurm jobs still listed after cancelling them: {left}")
    finally:
        left = cancel_and_wait(str(root))
        shutil.rmtree(root, ignore_errors=True)
    if left:
        raise RuntimeError(f"Slurm jobs left behind: {left}")
    ratios = [b["tasks_per_s"] / a["tasks_per_s"] for a, b in zip(runs[1], runs[2], strict=True)]
    first = [r["first_result_s"] for s in (1, 2) for r in runs[s]]
    return {
        "options": options,
        "tasks": settings.tasks,
        "seconds": settings.seconds,
        "reps": settings.reps,
        "slots1": runs[1],
        "slots2": runs[2],
        "first_result_s": summary(first),
        "jobs_left": left,
        "ratios": {
            "slurm_packing": {
                **summary(ratios),
                "values": ratios,
                "goal": ">= 1.8",
                "met": statistics.median(ratios) >= 1.8,
                "what": f"tasks/s of 1-rank {settings.seconds} s MPI tasks in a Slurm job: slots_per_node=2 / 1",
                "raw": {
                    "slots2_tasks_per_s": statistics.median(r["tasks_per_s"] for r in runs[2]),
                    "slots1_tasks_per_s": statistics.median(r["tasks_per_s"] for r in runs[1]),
                    "first_result_s": statistics.median(first),
                },
            }
        },
    }


@benchmark_command(__doc__)
@quick_option(help="one repetition of 4 tasks")
@reps_option(help="repetitions (default 5, quick 1)")
@click.option("--tasks", type=int, default=None, help="MPI tasks per measurement (default 16, quick 4)")
@click.option("--seconds", type=float, default=0.5, help="seconds each MPI task sleeps (0.5)")
@slurm_options(wait_help="seconds to wait for a free node (900)")
@output_option("slurm.json")
def cli(quick: bool, reps: int | None, tasks: int | None, output: str, **options: t.Any) -> int:
    """Run the Slurm benchmark (or record why it was skipped) and write the JSON file; return the exit code."""
    settings = SlurmSettings(reps=reps or (1 if quick else 5), tasks=tasks or (4 if quick else 16), **options)
    result = {
        "command": " ".join([os.path.basename(sys.executable), "-m", "benchmarks.bench_slurm", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "quick": quick,
        **run(settings),
    }
    pathlib.Path(output).write_text(json.dumps(result, indent=2) + "\n")
    if "skipped" in result:
        print(f"slurm: skipped ({result['skipped']})")
    else:
        ratio = result["ratios"]["slurm_packing"]
        print(
            f"slurm_packing: median {ratio['median']:.3f} (min {ratio['min']:.3f}, max {ratio['max']:.3f}); "
            f"first result {result['first_result_s']['median']:.1f} s"
        )
    print(f"wrote {output}")
    return 0


main = entry_point(cli, "python -m benchmarks.bench_slurm")


if __name__ == "__main__":
    sys.exit(main())
