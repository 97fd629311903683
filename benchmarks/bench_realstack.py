"""The real Globus Compute stack: GC-only mode and executor mode over the raw SDK ``Executor``, and a cold 2-node start.

    python -m benchmarks.bench_realstack            # full: 5 repetitions
    python -m benchmarks.bench_realstack --quick    # checks that it works: 1 repetition, few sims
    python -m benchmarks --only realstack           # the same, from the suite (not in its default run)

It needs root, the RabbitMQ broker of ``.ci/rabbitmq.sh`` and a Slurm of at least 2 nodes up
(``.ci/slurm.sh``); without them it writes ``{"skipped": "..."}`` and exits 0.  It starts what
``docs/rehearse.rst`` describes and ``tests/realendpoint`` uses (the same code): a virtual host of its
own on the broker, the stand-in for the Globus Compute web service on ``localhost:5000``
(``tests.realendpoint.service``), and endpoint daemons configured with ``libe-gc endpoint configure
--template ...`` and started with ``globus-compute-endpoint start``.  Every task goes through the SDK's
``Executor`` with ``endpoint_id=<UUID>``, the service and RabbitMQ to a user endpoint the daemon starts.
Both sides of each ratio submit with the same SDK options (``SDK_OPTIONS``), to the same user endpoint
(the same ``user_endpoint_config``), started and warmed before any timer.

Each repetition measures, side by side and in alternating order, on one daemon from the ``local``
template (a GlobusComputeEngine of ``--engine-workers`` workers), ``--sims`` trivial sims (the sim and the
persistent sampler of ``benchmarks.bench_gconly``) or as many tasks.  The raw side submits every task at
once; GC-only mode runs as many virtual workers as sims by default (``--nworkers``, ``--batched-nworkers``),
so it too can keep every task in flight (equal concurrency: over the real stack a task's round trip, not
the driver, limits a narrower run):

* ``raw_sdk``: the tasks GC-only mode submitted in a recorded run (same registered function, same
  argument objects: the same sim calls), submitted at once by a raw SDK ``Executor`` -> tasks/s, from
  the first submission to the last result;
* ``gconly``: GC-only mode, one sim per task -> sims/s (libEnsemble's history: first sim given out to last
  sim returned);
* ``gconly_batched``: ``--batch-size`` sims per task -> sims/s;
* ``raw_sdk_batched``: the tasks batched GC-only mode submitted in a recorded run, submitted at once by
  a raw SDK ``Executor`` -> sims/s (tasks/s times the sims in each task);
* executor overhead: ``--tasks`` sequential 1-rank MPI tasks (``true``) through
  :class:`~bundle.GlobusComputeExecutor` and the same ``MPIFunction`` through the SDK ``Executor`` the
  bundle holds (``benchmarks.bench_executor.executor_overhead``, the local endpoint's measurement).

Then, ``--cold-reps`` times, with nothing else of this benchmark running: configure and start a daemon from
the ``slurm`` template (``nodes_per_block=2``, ``mpi_launcher`` srun) and submit one 2-node MPI app task
through ``GlobusComputeExecutor(endpoint=<UUID>, template="slurm")`` -> seconds from ``globus-compute-endpoint
start`` to its result (the daemon's registration, the user endpoint's start, its batch job, the worker pool's
start and the launch); the daemon is stopped and its job gone before the next.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time
import typing as t

import click

from benchmarks.common import (
    MIN_REPS,
    benchmark_command,
    engine_workers_option,
    entry_point,
    h_window_rate,
    load_average,
    machine,
    output_option,
    quick_option,
    ratios,
    reps_option,
    summary,
)

SDK_OPTIONS = {"api_burst_limit": 8, "api_burst_window_s": 1}
"""SDK ``Executor`` options of every side: its client-side rate limit at the loosest the SDK allows (at its
defaults, 4 sends per 16 s, sequential tasks wait about 4 s each and the figures measure that wait)."""

COLD_CONFIG = {"nodes_per_block": 2, "exclusive": True}
"""``user_endpoint_config`` of the cold start: a block of two whole nodes (``mpi_launcher`` added from the options)."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """What one run measures: repetitions and sizes."""

    quick: bool
    reps: int
    sims: int
    nworkers: int
    batched_nworkers: int
    batch_size: int
    engine_workers: int
    tasks: int
    cold_reps: int
    launcher: str
    wait: float


def unavailable() -> str:
    """Return ``""`` when the real stack can run here (root, the broker up, 2 Slurm nodes up), otherwise why not."""
    from benchmarks.bench_multinode import nodes_up
    from benchmarks.bench_slurm import slurm_status

    if os.geteuid() != 0:
        return "the real stack needs root (the endpoint daemon and .ci/rabbitmq.sh)"
    from tests.broker import broker_running

    if shutil.which("rabbitmqctl") is None or not broker_running():
        return "RabbitMQ is not running (bash .ci/rabbitmq.sh up)"
    why = slurm_status()
    if why:
        return why
    if nodes_up() < 2:
        return f"no Slurm of 2 nodes: {nodes_up()} node(s) up (bash .ci/slurm.sh up)"
    return ""


@contextlib.contextmanager
def recording_submits() -> t.Iterator[list[tuple[str, tuple[t.Any, ...]]]]:
    """Record every ``(function_id, args)`` any SDK ``Executor`` submits to a registered function in the block."""
    from globus_compute_sdk import Executor

    calls: list[tuple[str, tuple[t.Any, ...]]] = []
    submit = Executor.submit_to_registered_function

    def recorded(self: t.Any, function_id: str, args: t.Any = None, kwargs: t.Any = None) -> t.Any:
        calls.append((function_id, tuple(args or ())))
        return submit(self, function_id, args=args, kwargs=kwargs)

    Executor.submit_to_registered_function = recorded  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        Executor.submit_to_registered_function = submit  # type: ignore[method-assign]


def replay(sdk: t.Any, calls: list[tuple[str, tuple[t.Any, ...]]]) -> float:
    """Submit the recorded tasks at once through the raw SDK ``Executor`` ``sdk``; return tasks/s."""
    start = time.perf_counter()
    futures = [sdk.submit_to_registered_function(fid, args=args) for fid, args in calls]
    for fut in futures:
        fut.result(timeout=600)
    return len(calls) / (time.perf_counter() - start)


def gconly_rate(endpoint_id: str, settings: Settings, batch_size: int) -> float:
    """Run a GC-only ensemble of trivial sims on the endpoint; return sims/s in libEnsemble's history window."""
    from benchmarks.bench_gconly import endpoint_config, ensemble_specs, run_ensemble
    from bundle.gconly import GCOnlySpecs

    gc_specs = GCOnlySpecs(
        template="local",
        user_endpoint_config=endpoint_config(settings.engine_workers),
        batch_size=batch_size,
        sdk_options=dict(SDK_OPTIONS),
        result_timeout=600,
    )
    nworkers = settings.nworkers if batch_size == 1 else settings.batched_nworkers
    specs = ensemble_specs(nworkers, settings.sims, endpoint_id)
    res, _ = run_ensemble(specs, nworkers, gc_specs, prefix="bench-realstack-")
    return h_window_rate(res.H)


def gconly_figures(endpoint_id: str, settings: Settings) -> dict[str, t.Any]:
    """GC-only unbatched and batched against a raw SDK ``Executor`` replaying their tasks, per repetition."""
    from globus_compute_sdk import Executor

    from benchmarks.bench_gconly import endpoint_config

    config = endpoint_config(settings.engine_workers)
    with recording_submits() as calls:
        gconly_rate(endpoint_id, settings, 1)  # also warms the user endpoint and its workers
    with recording_submits() as batched_calls:
        gconly_rate(endpoint_id, settings, settings.batch_size)
    sims_per_task = settings.sims / len(batched_calls)
    if len(calls) != settings.sims:
        raise RuntimeError(f"recorded {len(calls)} GC-only tasks for {settings.sims} sims")
    # The raw side: its own SDK Executor, to the same user endpoint (same config), with the same options.
    sdk = Executor(endpoint_id=endpoint_id, user_endpoint_config=config, **SDK_OPTIONS)
    rates: dict[str, list[float]] = {"raw_sdk": [], "gconly": [], "gconly_batched": [], "raw_sdk_batched": []}
    loads: list[float] = []
    try:
        replay(sdk, calls[: min(50, len(calls))])  # warm the raw side's submitter and result watcher
        for rep in range(settings.reps):
            loads.append(load_average()[0])
            runs: dict[str, t.Callable[[], float]] = {
                "raw_sdk": lambda: replay(sdk, calls),
                "gconly": lambda: gconly_rate(endpoint_id, settings, 1),
                "gconly_batched": lambda: gconly_rate(endpoint_id, settings, settings.batch_size),
                "raw_sdk_batched": lambda: replay(sdk, batched_calls) * sims_per_task,
            }
            order = list(runs) if rep % 2 == 0 else list(reversed(runs))
            for name in order:
                rates[name].append(runs[name]())
            print(
                f"realstack GC-only rep {rep + 1}/{settings.reps} (load {loads[-1]}): "
                + ", ".join(f"{n} {v[-1]:.1f}/s" for n, v in rates.items()),
                flush=True,
            )
    finally:
        sdk.shutdown(wait=True, cancel_futures=True)
    return {"rates_per_s": rates, "load_average_per_rep": loads, "sims_per_batched_task": sims_per_task}


def overhead_figures(endpoint_id: str, settings: Settings) -> dict[str, t.Any]:
    """Executor overhead on the real stack: the local endpoint's measurement, with ``endpoint=<UUID>``."""
    from benchmarks.bench_executor import executor_overhead
    from bundle import GlobusComputeExecutor

    exctr = GlobusComputeExecutor(endpoint=endpoint_id, template="local", sdk_options=dict(SDK_OPTIONS))
    loads = [load_average()[0]]
    found = executor_overhead(settings.reps, settings.tasks, exctr, timeout=600)
    loads.append(load_average()[0])
    return {**found, "load_average_before_after": loads}


def cold_start(service: t.Any, home: pathlib.Path, name: str, launcher: str) -> dict[str, float]:
    """Start a daemon from the ``slurm`` template; return seconds to online and to one 2-node MPI result."""
    from bundle import GlobusComputeExecutor
    from bundle.endpoints.session import GCSession
    from tests.gcservice import stop_result_watchers
    from tests.realendpoint.conftest import SLURM_SITE, endpoint_from_template

    printenv = shutil.which("printenv") or "/usr/bin/printenv"
    with endpoint_from_template(service, home, name, "slurm", SLURM_SITE) as ep:
        online = time.monotonic() - ep.started_at
        try:
            exctr = GlobusComputeExecutor(
                endpoint=ep.endpoint_id,
                template="slurm",
                user_endpoint_config={**COLD_CONFIG, "mpi_launcher": launcher},
                sdk_options=dict(SDK_OPTIONS),
            )
            exctr.register_app(printenv, app_name="printenv")
            task = exctr.submit(app_name="printenv", app_args="SLURMD_NODENAME", num_nodes=2, procs_per_node=1)
            task.wait(timeout=600)
            first = time.monotonic() - ep.started_at
            nodes = set(task.read_stdout().split())
            if task.state != "FINISHED" or len(nodes) != 2:
                raise RuntimeError(f"the 2-node task ended {task.state} on nodes {sorted(nodes)}: {task.read_stderr()}")
        finally:
            GCSession.clear(wait=True)
            stop_result_watchers()
    return {"online_s": online, "first_result_s": first}


def cold_figures(service: t.Any, root: pathlib.Path, settings: Settings) -> dict[str, t.Any]:
    """``--cold-reps`` cold starts, each on a free cluster; every job is gone afterwards."""
    from benchmarks.bench_slurm import cancel_and_wait, wait_for_free_node

    runs: list[dict[str, t.Any]] = []
    try:
        for rep in range(settings.cold_reps):
            waited, busy = wait_for_free_node(settings.wait)
            load = load_average()[0]
            home = root / f"cold{rep}"
            home.mkdir()
            with in_folder(home):
                got: dict[str, t.Any] = cold_start(service, home, f"libe-gc-bench-slurm-{rep}", settings.launcher)
            got.update(waited_s=waited, node_busy=busy, load_average=load)
            runs.append(got)
            print(
                f"realstack cold start {rep + 1}/{settings.cold_reps} (load {load}): online {got['online_s']:.1f} s, "
                f"2-node MPI result {got['first_result_s']:.1f} s after globus-compute-endpoint start",
                flush=True,
            )
            left = cancel_and_wait(str(root))
            if left:
                raise RuntimeError(f"Slurm jobs still listed after the endpoint stopped: {left}")
    finally:
        left = cancel_and_wait(str(root))
    if left:
        raise RuntimeError(f"Slurm jobs left behind: {left}")
    return {"runs": runs}


@contextlib.contextmanager
def in_folder(folder: pathlib.Path) -> t.Iterator[None]:
    """Run the block in ``folder`` (the tasks' files land there)."""
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(cwd)


def figure(values: list[float], what: str, raw: dict[str, float]) -> dict[str, t.Any]:
    """One figure of the JSON file: median and spread of ``values``, no goal (the real stack has none yet)."""
    return {**summary(values), "values": values, "goal": None, "what": what, "raw": raw}


def run(settings: Settings) -> dict[str, t.Any]:
    """Start the stack, run every measurement, stop everything; return the results (or why they were skipped)."""
    why = unavailable()
    if why:
        return {"skipped": why}
    from bundle.endpoints.session import GCSession
    from tests.broker import virtual_host
    from tests.gcservice import running_service, stop_result_watchers
    from tests.realendpoint.conftest import endpoint_from_template

    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    root = pathlib.Path(tempfile.mkdtemp(prefix="libe-gc-bench-realstack-")).resolve()
    saved_env = dict(os.environ)
    try:
        with virtual_host() as broker, running_service(broker, root) as service:
            os.environ.update(service.env(root / "sdk"))  # the SDK's clients reach the stand-in, as a user sets
            cold = cold_figures(service, root, settings)
            home = root / "local"
            home.mkdir()
            with in_folder(home), endpoint_from_template(service, home, "libe-gc-bench-local", "local") as ep:
                try:
                    gconly = gconly_figures(ep.endpoint_id, settings)
                    overhead = overhead_figures(ep.endpoint_id, settings)
                finally:
                    GCSession.clear(wait=True)
                    stop_result_watchers()
                    gc.collect()
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        shutil.rmtree(root, ignore_errors=True)

    rates = gconly["rates_per_s"]
    first = [r["first_result_s"] for r in cold["runs"]]
    online = [r["online_s"] for r in cold["runs"]]

    def medians(**series: list[float]) -> dict[str, float]:
        return {name: statistics.median(values) for name, values in series.items()}

    found = {
        "realstack_gconly_over_raw_sdk": figure(
            ratios(rates["gconly"], rates["raw_sdk"]),
            "GC-only sims/s / raw SDK Executor tasks/s submitting GC-only's own tasks (same sim calls), real endpoint",
            medians(gconly_per_s=rates["gconly"], raw_sdk_per_s=rates["raw_sdk"]),
        ),
        "realstack_gconly_batched_over_raw_sdk": figure(
            ratios(rates["gconly_batched"], rates["raw_sdk"]),
            f"GC-only sims/s, batched ({settings.batch_size} per task) / raw SDK Executor, one sim call per task",
            medians(gconly_batched_per_s=rates["gconly_batched"], raw_sdk_per_s=rates["raw_sdk"]),
        ),
        "realstack_gconly_batched_over_raw_sdk_same_tasks": figure(
            ratios(rates["gconly_batched"], rates["raw_sdk_batched"]),
            "GC-only sims/s, batched / raw SDK Executor submitting batched GC-only's own tasks (sims/s)",
            medians(gconly_batched_per_s=rates["gconly_batched"], raw_sdk_batched_per_s=rates["raw_sdk_batched"]),
        ),
        "realstack_executor_overhead": figure(
            overhead["ratio_values"],
            "s per sequential 1-rank MPI task: GlobusComputeExecutor(endpoint=UUID) / MPIFunction through the SDK "
            "Executor, same user endpoint",
            {
                "executor_s_per_task": overhead["executor_s_per_task"]["median"],
                "sdk_s_per_task": overhead["engine_s_per_task"]["median"],
            },
        ),
    }
    if first:  # --cold-reps 0 measures none
        found["realstack_first_2node_result_s"] = figure(
            first,
            "seconds from globus-compute-endpoint start (slurm template) to the result of a first 2-node MPI task",
            {"online_s": statistics.median(online)},
        )
    return {
        "sdk_options": SDK_OPTIONS,
        "settings": dataclasses.asdict(settings),
        "gconly": gconly,
        "executor_overhead": overhead,
        "cold_start": cold,
        "ratios": found,
    }


@benchmark_command(__doc__)
@quick_option(help="1 repetition, 100 sims, 5 tasks, 1 cold start: checks that it works")
@reps_option(help=f"repetitions of the GC-only and executor measurements (default {MIN_REPS}, quick 1)")
@click.option("--sims", type=int, default=None, help="sims per GC-only measurement (default 1000, quick 100)")
@click.option("--nworkers", type=int, default=None, help="GC-only virtual workers (default: one per sim)")
@click.option("--batched-nworkers", type=int, default=None, help="batched GC-only virtual workers (default: 1 per sim)")
@click.option("--batch-size", type=int, default=16, help="sims per task in the batched run (default 16)")
@engine_workers_option
@click.option("--tasks", type=int, default=None, help="sequential MPI tasks per overhead run (default 20, quick 5)")
@click.option("--cold-reps", type=int, default=None, help=f"cold 2-node starts (default {MIN_REPS}, quick 1)")
@click.option("--launcher", default="srun", type=click.Choice(["srun", "mpiexec"]), help="mpi_launcher (srun)")
@click.option("--wait", type=float, default=900.0, help="seconds to wait for a free cluster before a cold start (900)")
@output_option("realstack.json")
@click.pass_obj
def cli(
    argv: list[str],
    quick: bool,
    reps: int | None,
    sims: int | None,
    nworkers: int | None,
    batched_nworkers: int | None,
    tasks: int | None,
    cold_reps: int | None,
    output: str,
    **options: t.Any,
) -> int:
    """Run the benchmark and write the JSON file; return the exit code."""
    sims = sims or (100 if quick else 1000)
    settings = Settings(
        quick=quick,
        reps=reps or (1 if quick else MIN_REPS),
        sims=sims,
        nworkers=nworkers or sims,
        batched_nworkers=batched_nworkers or sims,
        tasks=tasks or (5 if quick else 20),
        cold_reps=(1 if quick else MIN_REPS) if cold_reps is None else cold_reps,
        **options,
    )
    started = time.perf_counter()
    found = run(settings)
    command = " ".join(["python -m benchmarks.bench_realstack", *argv])
    result = {"command": command, "machine": machine(), "quick": quick, **found}
    result["seconds"] = time.perf_counter() - started
    pathlib.Path(output).write_text(json.dumps(result, indent=2) + "\n")
    if "skipped" in found:
        print(f"skipped: {found['skipped']}")
    for name, ratio in found.get("ratios", {}).items():
        print(f"{name}: median {ratio['median']:.3f} (min {ratio['min']:.3f}, max {ratio['max']:.3f}, n {ratio['n']})")
    print(f"wrote {output} in {result['seconds']:.0f} s")
    return 0


main = entry_point(cli, "python -m benchmarks.bench_realstack")


if __name__ == "__main__":
    sys.exit(main())
