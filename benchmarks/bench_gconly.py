"""GC-only mode throughput, as ratios of two things measured side by side in one run.

    python -m benchmarks.bench_gconly            # full: 5 repetitions
    python -m benchmarks.bench_gconly --quick    # under a minute
    python -m benchmarks.bench_gconly --compare  # GC-only's packed calls vs plain calls, alternately

Each repetition measures, back to back on the same started and warmed local endpoint
(GlobusComputeEngine, ``--engine-workers`` workers), the same trivial ensemble (persistent uniform
sampler on the manager, trivial sim, ``--sims`` sims) or as many trivial tasks:

* ``raw``: trivial tasks (no arguments) submitted straight to the endpoint, all at once -> tasks/s;
* ``raw_same``: the tasks GC-only mode submitted in a recorded run (same registered function, same
  argument objects, so the same bytes), replayed straight to the endpoint, all at once -> tasks/s;
* ``gconly``: GC-only mode, ``--nworkers`` virtual workers, batch size 1 -> sims/s;
* ``gconly_batched``: ``--batched-nworkers`` virtual workers, ``--batch-size`` sims per task -> sims/s;
* ``libe_gc``: libEnsemble's own Globus Compute path (``benchmarks/anchor.py``), ``--nworkers``
  worker threads, on the same engine -> sims/s;
* ``stock_threads`` / ``stock_local``: stock libEnsemble running the sim in-process, ``threads`` /
  ``local`` comms, ``--stock-nworkers`` workers -> sims/s.

Ensemble rates are timed in libEnsemble's history (first sim given out to last sim returned), so
start-up counts on no side; each run's whole call (``call_seconds``) and the endpoint's start-up are
recorded apart.  The driver process's CPU time per sim or task (all threads) is recorded beside
every rate: it is disturbed less by other load than rates are.

``--compare`` measures instead, per repetition and on the same endpoint: ``raw``, then GC-only mode
with plain calls (every sim's arguments through the endpoint's serializer, ``sim_f`` registered
itself: the wire format before packed calls) and with packed calls (stdlib-pickled arguments, see
``bundle.gconly.calls``), in alternating order, and reports each over ``raw`` and packed over plain,
plus the driver process's CPU time per task or sim (all its threads: the manager, the engine's
result thread), which other load on the machine disturbs less than rates do.

Ratios per repetition (``FIGURES``): GC-only over the raw engine (goal >= 0.9, trivial task and
same tasks), over libEnsemble's own GC path (goal >= 2 at equal concurrency, >= 10 batched) and
batched GC-only over stock libEnsemble (goal >= 1.0, ``threads`` and ``local``); the JSON file
holds every raw number, the load average per repetition and, per ratio, the median and spread.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import sys
import tempfile
import time
import typing as t

import click
import numpy as np

from benchmarks.anchor import measure_anchor, run_libe
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

REPO = pathlib.Path(__file__).resolve().parents[1]


def noop() -> None:
    """Do nothing: the raw engine's trivial task."""


def trivial_sim(H: t.Any, persis_info: dict[str, t.Any], sim_specs: dict[str, t.Any]) -> t.Any:
    """Return f = 1: the trivial sim."""
    return np.ones(len(H), dtype=sim_specs["out"]), persis_info


def importable(name: str) -> t.Any:
    """Return a function of this module by its importable name (not ``__main__``'s copy).

    Functions of ``__main__`` are serialized by value without their globals; the engine's
    workers import ``benchmarks.bench_gconly`` instead.
    """
    import importlib

    return getattr(importlib.import_module("benchmarks.bench_gconly"), name)


def endpoint_config(engine_workers: int) -> dict[str, t.Any]:
    """Return the local endpoint's options: a GlobusComputeEngine whose workers can import ``benchmarks``."""
    return {
        "engine_type": "GlobusComputeEngine",
        "max_workers_per_node": engine_workers,
        # the engine's workers import the benchmark modules (trivial_sim, noop)
        "worker_init": f"export PYTHONPATH={REPO}${{PYTHONPATH:+:$PYTHONPATH}}",
    }


def ensemble_specs(nworkers: int, sims: int, endpoint: str = "local") -> dict[str, t.Any]:
    """Trivial sim, persistent uniform sampler on the manager, ``sims`` sims (``endpoint=""``: stock libEnsemble)."""
    from libensemble.alloc_funcs.start_only_persistent import only_persistent_gens
    from libensemble.gen_funcs.persistent_sampling import persistent_uniform
    from libensemble.tools import add_unique_random_streams

    sim_specs: dict[str, t.Any] = {"sim_f": importable("trivial_sim"), "in": ["x"], "out": [("f", float)]}
    if endpoint:
        sim_specs["globus_compute_endpoint"] = endpoint
    return {
        "sim_specs": sim_specs,
        "gen_specs": {
            "gen_f": persistent_uniform,
            "persis_in": ["f", "x", "sim_id"],
            "out": [("x", float, (2,))],
            "user": {"initial_batch_size": nworkers, "lb": np.array([-3.0, -2.0]), "ub": np.array([3.0, 2.0])},
        },
        "exit_criteria": {"sim_max": sims},
        "persis_info": add_unique_random_streams({}, nworkers + 1, seed=11),
        "alloc_specs": {"alloc_f": only_persistent_gens, "user": {"async_return": True}},
    }


def measure_raw(endpoint: t.Any, tasks: int) -> float:
    """Submit ``tasks`` trivial tasks at once; return tasks/s."""
    fid = getattr(measure_raw, "fid", None) or endpoint.register_function(importable("noop"))
    measure_raw.fid = fid  # type: ignore[attr-defined]
    start = time.perf_counter()
    futures = [endpoint.submit_to_registered_function(fid) for _ in range(tasks)]
    for fut in futures:
        fut.result(timeout=600)
    return tasks / (time.perf_counter() - start)


def record_submits(endpoint: t.Any) -> tuple[list[tuple[str, tuple[t.Any, ...]]], t.Callable[[], None]]:
    """Record every ``(function_id, args)`` submitted to ``endpoint``; return the list and a function that stops it."""
    calls: list[tuple[str, tuple[t.Any, ...]]] = []
    submit = endpoint.submit_to_registered_function

    def recorded(function_id: str, args: t.Any = None, kwargs: t.Any = None) -> t.Any:
        calls.append((function_id, tuple(args or ())))
        return submit(function_id, args=args, kwargs=kwargs)

    endpoint.submit_to_registered_function = recorded
    return calls, lambda: endpoint.__dict__.pop("submit_to_registered_function", None)


def measure_replay(endpoint: t.Any, calls: list[tuple[str, tuple[t.Any, ...]]]) -> float:
    """Submit exactly the recorded GC-only tasks (same function, same argument objects) at once; return tasks/s."""
    start = time.perf_counter()
    futures = [endpoint.submit_to_registered_function(fid, args=args) for fid, args in calls]
    for fut in futures:
        fut.result(timeout=600)
    return len(calls) / (time.perf_counter() - start)


def run_ensemble(
    specs: dict[str, t.Any],
    nworkers: int,
    gc_specs: t.Any,
    prefix: str = "bench-gconly-",
    workdir: str | None = None,
) -> tuple[t.Any, float]:
    """Run one GC-only ensemble in a temporary folder (or in ``workdir``); return its result and seconds.

    Raises
    ------
    RuntimeError
        When the run did not end every sim successfully.
    """
    from bundle.gconly.launch import run_gconly

    sims = specs["exit_criteria"]["sim_max"]
    with contextlib.ExitStack() as stack:
        tmp = workdir or stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix))
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            start = time.perf_counter()
            res = run_gconly(
                specs["sim_specs"],
                specs["gen_specs"],
                specs["exit_criteria"],
                specs["persis_info"],
                specs["alloc_specs"],
                {"nworkers": nworkers},
                gc_specs=gc_specs,
            )
            elapsed = time.perf_counter() - start
        finally:
            os.chdir(cwd)
    done = int(res.H["sim_ended"].sum())
    if res.exit_flag != 0 or res.sim_errors or done < sims:
        first = next(iter(res.sim_errors.values()), "")
        raise RuntimeError(f"GC-only run failed: flag {res.exit_flag}, {done} sims; first error:\n{first}")
    return res, elapsed


def measure_gconly(
    sims: int,
    nworkers: int,
    batch_size: int,
    config: dict[str, t.Any],
    *,
    packed: bool = True,
    workdir: str | None = None,
) -> tuple[float, float]:
    """Run a GC-only ensemble of trivial sims; return (sims/s in the H window, call seconds).

    ``packed=False``: plain calls, the wire format before packed calls.  ``workdir``: the run's folder (the
    sims' directory base), when it must outlive the run (its tasks replayed later); else a temporary one.
    """
    from bundle.gconly import GCOnlySpecs

    specs = ensemble_specs(nworkers, sims)
    gc_specs = GCOnlySpecs(user_endpoint_config=config, batch_size=batch_size, pack_calls=packed)
    res, elapsed = run_ensemble(specs, nworkers, gc_specs, workdir=workdir)
    return h_window_rate(res.H), elapsed


def measure_stock(sims: int, nworkers: int, comms: str) -> tuple[float, float]:
    """Run stock libEnsemble (``comms`` "threads" or "local", generator on the manager); return (sims/s, call s)."""
    H, elapsed = run_libe(ensemble_specs(nworkers, sims, ""), {"nworkers": nworkers, "comms": comms}, "bench-stock-")
    return h_window_rate(H), elapsed


def _gconly_run(sims: int, nworkers: int, config: dict[str, t.Any], packed: bool) -> t.Callable[[], float]:
    return lambda: measure_gconly(sims, nworkers, 1, config, packed=packed)[0]


def compare(endpoint: t.Any, reps: int, sims: int, nworkers: int, config: dict[str, t.Any]) -> dict[str, t.Any]:
    """Measure raw, GC-only plain calls and GC-only packed calls alternately; return numbers and ratios."""
    raw: list[float] = []
    plain: list[float] = []
    packed: list[float] = []
    cpu: dict[str, list[float]] = {"raw": [], "plain": [], "packed": []}

    def timed(name: str, measure: t.Callable[[], float]) -> float:
        cpu0 = time.process_time()
        rate = measure()
        cpu[name].append((time.process_time() - cpu0) / sims * 1e6)
        return rate

    for rep in range(reps):
        raw.append(timed("raw", lambda: measure_raw(endpoint, sims)))
        for use_packed in (rep % 2 == 0, rep % 2 == 1):
            name = "packed" if use_packed else "plain"
            rate = timed(name, _gconly_run(sims, nworkers, config, use_packed))
            (packed if use_packed else plain).append(rate)
        print(
            f"rep {rep + 1}/{reps}: raw {raw[-1]:.0f} tasks/s, gconly plain calls {plain[-1]:.0f} sims/s, "
            f"gconly packed calls {packed[-1]:.0f} sims/s; driver CPU per task/sim: raw {cpu['raw'][-1]:.0f} us, "
            f"plain {cpu['plain'][-1]:.0f} us, packed {cpu['packed'][-1]:.0f} us",
            flush=True,
        )
    ratios = {
        "gconly_plain_over_raw_engine": [p / r for p, r in zip(plain, raw, strict=True)],
        "gconly_packed_over_raw_engine": [p / r for p, r in zip(packed, raw, strict=True)],
        "gconly_packed_over_plain": [p / q for p, q in zip(packed, plain, strict=True)],
    }
    return {
        "raw_engine_tasks_per_s": raw,
        "gconly_plain_sims_per_s": plain,
        "gconly_packed_sims_per_s": packed,
        "driver_cpu_us_per_task": {name: {**summary(values), "values": values} for name, values in cpu.items()},
        "ratios": {name: {**summary(values), "values": values} for name, values in ratios.items()},
    }


FIGURES: dict[str, tuple[str, str, str, float | None]] = {
    # name: (numerator series, denominator series, what, goal: the ratio's lower bound; None: no goal, it explains)
    "gconly_over_raw_engine": (
        "gconly",
        "raw",
        "GC-only sims/s / raw engine tasks/s (trivial task, no arguments)",
        0.9,
    ),
    "gconly_over_raw_engine_same_sim": (
        "gconly",
        "raw_same",
        "GC-only sims/s / raw engine tasks/s replaying GC-only's own tasks (same function, same argument bytes)",
        0.9,
    ),
    "gconly_over_serial_bound": (
        "gconly",
        "serial_bound",
        "GC-only sims/s / the rate if the engine's path (raw, same tasks) and libEnsemble's manager (stock threads) "
        "took turns in one process: 1 / (1/raw_same + 1/stock_threads)",
        None,
    ),
    "gconly_over_libe_gc": (
        "gconly",
        "libe_gc",
        "GC-only sims/s / libEnsemble's own Globus Compute path, equal concurrency",
        2.0,
    ),
    "gconly_batched_over_libe_gc": (
        "gconly_batched",
        "libe_gc",
        "GC-only sims/s, batched / libEnsemble's own Globus Compute path",
        10.0,
    ),
    "gconly_batched_over_stock_threads": (
        "gconly_batched",
        "stock_threads",
        "GC-only sims/s, batched / stock libEnsemble, threads comms, sim in-process",
        1.0,
    ),
    "gconly_batched_over_stock_local": (
        "gconly_batched",
        "stock_local",
        "GC-only sims/s, batched / stock libEnsemble, local comms, sim in-process",
        1.0,
    ),
}


@benchmark_command(__doc__)
@quick_option(help="fewer sims and repetitions (under a minute)")
@reps_option(help=f"repetitions (default {MIN_REPS}, quick 2)")
@click.option("--sims", type=int, default=None, help="sims (and raw tasks) per measurement (default 3000, quick 300)")
@click.option(
    "--nworkers", type=int, default=32, help="GC-only virtual workers and libEnsemble GC path workers (default 32)"
)
@click.option("--batched-nworkers", type=int, default=32, help="batched GC-only virtual workers (default 32)")
@click.option("--batch-size", type=int, default=16, help="sims per task in the batched run (default 16)")
@click.option("--stock-nworkers", type=int, default=4, help="stock libEnsemble workers (default 4)")
@engine_workers_option
@output_option(None, help="JSON file to write (default bench_gconly.json, compare: bench_gconly_compare.json)")
@click.option(
    "--compare",
    "compare_calls",
    is_flag=True,
    help="measure GC-only mode's packed calls against plain calls, side by side",
)
def cli(
    quick: bool,
    reps: int | None,
    sims: int | None,
    nworkers: int,
    batched_nworkers: int,
    batch_size: int,
    stock_nworkers: int,
    engine_workers: int,
    output: str | None,
    compare_calls: bool,
) -> int:
    """Run the benchmark and write the JSON file; return the exit code."""
    reps = reps or (2 if quick else MIN_REPS)
    sims = sims or (300 if quick else 3000)
    output = output or ("bench_gconly_compare.json" if compare_calls else "bench_gconly.json")

    from bundle.endpoints.session import GCSession

    config = endpoint_config(engine_workers)
    endpoint = GCSession.get_executor("local", config)
    t0 = time.perf_counter()
    endpoint.start()
    if not endpoint.wait_ready(120):
        raise RuntimeError("local endpoint did not become ready")
    measure_raw(endpoint, 50)  # warm the workers
    startup = time.perf_counter() - t0

    command = " ".join([os.path.basename(sys.executable), "-m", "benchmarks.bench_gconly", *sys.argv[1:]])
    if compare_calls:
        try:
            found = compare(endpoint, reps, sims, nworkers, config)
        finally:
            GCSession.clear()
        cfg = {"reps": reps, "sims": sims, "nworkers": nworkers, "engine_workers": engine_workers}
        pathlib.Path(output).write_text(
            json.dumps({"command": command, "machine": machine(), "config": cfg, **found}, indent=2) + "\n"
        )
        for name, ratio in found["ratios"].items():
            print(f"{name}: median {ratio['median']:.3f} (min {ratio['min']:.3f}, max {ratio['max']:.3f})")
        print(f"wrote {output}")
        return 0

    rates: dict[str, list[float]] = {k: [] for k in ("raw", "raw_same", "gconly", "gconly_batched", "libe_gc")}
    rates.update(stock_threads=[], stock_local=[])
    call_s: dict[str, list[float]] = {k: [] for k in ("gconly", "gconly_batched", "libe_gc", "stock_threads")}
    call_s["stock_local"] = []
    cpu_us: dict[str, list[float]] = {k: [] for k in rates}
    loads: list[float] = []
    # The recorded run's folder: its replayed tasks run in it (their sims' directory base) until the last replay.
    replayed_in = tempfile.TemporaryDirectory(prefix="bench-gconly-replayed-")
    try:
        # GC-only's own tasks, recorded once, for the raw engine to replay byte for byte
        calls, stop = record_submits(endpoint)
        try:
            measure_gconly(sims, nworkers, 1, config, workdir=replayed_in.name)
        finally:
            stop()
        for rep in range(reps):
            loads.append(load_average()[0])
            runs: dict[str, t.Callable[[], tuple[float, float]]] = {
                "raw": lambda: (measure_raw(endpoint, sims), 0.0),
                "raw_same": lambda: (measure_replay(endpoint, calls), 0.0),
                "gconly": lambda: measure_gconly(sims, nworkers, 1, config),
                "gconly_batched": lambda: measure_gconly(sims, batched_nworkers, batch_size, config),
                "libe_gc": lambda: measure_anchor(endpoint, ensemble_specs(nworkers, sims, ""), nworkers),
                "stock_threads": lambda: measure_stock(sims, stock_nworkers, "threads"),
                "stock_local": lambda: measure_stock(sims, stock_nworkers, "local"),
            }
            for name, run in runs.items():
                cpu0 = time.process_time()
                rate, seconds = run()
                cpu_us[name].append((time.process_time() - cpu0) / sims * 1e6)
                rates[name].append(rate)
                if name in call_s:
                    call_s[name].append(seconds)
            print(
                f"rep {rep + 1}/{reps} (load {loads[-1]}): "
                + ", ".join(f"{n} {v[-1]:.0f}/s ({cpu_us[n][-1]:.0f} us CPU)" for n, v in rates.items()),
                flush=True,
            )
    finally:
        GCSession.clear()
        replayed_in.cleanup()

    # Unbatched GC-only runs libEnsemble's manager and the engine's submit and result path in one process,
    # under one interpreter lock: when their per-sim costs simply add up, its rate is at most this bound.
    rates["serial_bound"] = [
        1 / (1 / a + 1 / b) for a, b in zip(rates["raw_same"], rates["stock_threads"], strict=True)
    ]
    found_ratios = {}
    for name, (num, den, what, goal) in FIGURES.items():
        values = ratios(rates[num], rates[den])
        raw = {f"{num}_per_s": summary(rates[num])["median"], f"{den}_per_s": summary(rates[den])["median"]}
        found_ratios[name] = {**summary(values), "values": values, "goal": goal, "what": what, "raw": raw}
    result = {
        "command": command,
        "machine": machine(),
        "config": {
            "reps": reps,
            "sims": sims,
            "nworkers": nworkers,
            "batched_nworkers": batched_nworkers,
            "batch_size": batch_size,
            "stock_nworkers": stock_nworkers,
            "engine_workers": engine_workers,
            "endpoint_startup_s": startup,
        },
        "load_average_per_rep": loads,
        "rates_per_s": {name: {**summary(v), "values": v} for name, v in rates.items()},
        "call_seconds": {name: {**summary(v), "values": v} for name, v in call_s.items()},
        # CPU time of this process (all its threads) per sim or task; stock local comms' workers are other processes
        "driver_cpu_us_per_sim": {name: {**summary(v), "values": v} for name, v in cpu_us.items()},
        "ratios": found_ratios,
    }
    pathlib.Path(output).write_text(json.dumps(result, indent=2) + "\n")
    for name, ratio in found_ratios.items():
        spread = f"min {ratio['min']:.3f}, max {ratio['max']:.3f}"
        goal = "no goal (explains)" if ratio["goal"] is None else f"goal >= {ratio['goal']}"
        print(f"{name}: median {ratio['median']:.3f} ({spread}), {goal}")
    print(f"wrote {output} (load average per repetition: {loads})")
    return 0


main = entry_point(cli, "python -m benchmarks.bench_gconly")


if __name__ == "__main__":
    sys.exit(main())
