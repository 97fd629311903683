"""GC-only mode throughput, as ratios of two things measured side by side in one run.

    python -m benchmarks.bench_gconly            # full: 5 repetitions
    python -m benchmarks.bench_gconly --quick    # under a minute
    python -m benchmarks.bench_gconly --compare  # GC-only's packed calls vs plain calls, alternately

Each repetition measures, back to back on the same started local endpoint
(GlobusComputeEngine, ``--engine-workers`` workers):

* ``raw``: trivial tasks (no arguments) submitted straight to the endpoint
  (``submit_to_registered_function``), all at once -> tasks/s;
* ``raw_sim``: the trivial sim submitted straight to the endpoint, all at once, with the arguments
  GC-only mode sends (H row, ``persis_info`` with its random stream, ``sim_specs``) -> tasks/s;
* ``gconly``: GC-only mode, trivial sim, ``--nworkers`` virtual workers, batch size 1 -> sims/s;
* ``gconly_batched``: the same with ``--batch-size`` sims per task -> sims/s;
* ``stock``: stock libEnsemble, ``local`` comms, the same sim, generator and ``--nworkers`` -> sims/s.

``--compare`` measures instead, per repetition and on the same endpoint: ``raw``, then GC-only mode
with plain calls (every sim's arguments through the endpoint's serializer, ``sim_f`` registered
itself: the wire format before packed calls) and with packed calls (stdlib-pickled arguments, see
``bundle.gconly.wire``), in alternating order, and reports each over ``raw`` and packed over plain,
plus the driver process's CPU time per task or sim (all its threads: the manager, the engine's
result thread), which other load on the machine disturbs less than rates do.

Ratios per repetition: ``gconly / raw`` and ``gconly / raw_sim`` (goal >= 0.9; the second isolates
GC-only mode's own cost from the cost of serializing libEnsemble's arguments) and
``gconly_batched / stock`` (goal >= 1.0; batching pays off once ``nworkers`` >= batch size x engine workers);
the JSON file holds every raw number and, per ratio, the median and spread (min, max).
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time
import types
import typing as t

import click
import numpy as np

from benchmarks.cli import run_command

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


def measure_raw_sim(endpoint: t.Any, tasks: int) -> float:
    """Submit ``tasks`` calls of the trivial sim, with the arguments GC-only mode sends, at once; return tasks/s."""
    from libensemble.tools import add_unique_random_streams

    fid = getattr(measure_raw_sim, "fid", None) or endpoint.register_function(importable("trivial_sim"))
    measure_raw_sim.fid = fid  # type: ignore[attr-defined]
    specs = ensemble_specs(1, tasks)["sim_specs"]
    persis_info = add_unique_random_streams({}, 2, seed=11)[1]
    rows = np.zeros(tasks, dtype=[("x", float, (2,))])
    start = time.perf_counter()
    futures = [
        endpoint.submit_to_registered_function(fid, args=(rows[i : i + 1], persis_info, specs)) for i in range(tasks)
    ]
    for fut in futures:
        fut.result(timeout=600)
    return tasks / (time.perf_counter() - start)


def run_ensemble(
    specs: dict[str, t.Any], nworkers: int, gc_specs: t.Any, prefix: str = "bench-gconly-"
) -> tuple[t.Any, float]:
    """Run one GC-only ensemble in a temporary folder; return its result and seconds.

    Raises
    ------
    RuntimeError
        When the run did not end every sim successfully.
    """
    from bundle.gconly.launch import run_gconly

    sims = specs["exit_criteria"]["sim_max"]
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
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
    sims: int, nworkers: int, batch_size: int, config: dict[str, t.Any], *, packed: bool = True
) -> float:
    """Run a GC-only ensemble of trivial sims; return sims/s (``packed=False``: plain calls)."""
    from bundle.gconly import GCOnlySpecs

    specs = ensemble_specs(nworkers, sims)
    gc_specs = GCOnlySpecs(user_endpoint_config=config, batch_size=batch_size, pack_calls=packed)
    res, elapsed = run_ensemble(specs, nworkers, gc_specs)
    done = int(res.H["sim_ended"].sum())
    return done / elapsed


def measure_stock(sims: int, nworkers: int) -> float:
    """Run stock libEnsemble (local comms, generator on the manager); return sims/s."""
    from libensemble.libE import libE

    specs = ensemble_specs(nworkers, sims, "")
    with tempfile.TemporaryDirectory(prefix="bench-stock-") as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            start = time.perf_counter()
            H, _, flag = libE(
                specs["sim_specs"],
                specs["gen_specs"],
                specs["exit_criteria"],
                specs["persis_info"],
                specs["alloc_specs"],
                {"nworkers": nworkers, "comms": "local", "gen_on_manager": True},
            )
            elapsed = time.perf_counter() - start
        finally:
            os.chdir(cwd)
    done = int(H["sim_ended"].sum())
    if flag != 0 or done < sims:
        raise RuntimeError(f"stock run failed: flag {flag}, {done} sims")
    return done / elapsed


def summary(values: list[float]) -> dict[str, float]:
    """Median and spread of a list of numbers."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def _gconly_run(sims: int, nworkers: int, config: dict[str, t.Any], packed: bool) -> t.Callable[[], float]:
    return lambda: measure_gconly(sims, nworkers, 1, config, packed=packed)


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


@click.command(help=__doc__.split("\n")[0])
@click.option("--quick", is_flag=True, help="fewer sims and repetitions (under a minute)")
@click.option("--reps", type=int, help="repetitions (default 5, quick 2)")
@click.option("--sims", type=int, help="sims (and raw tasks) per measurement (default 3000, quick 400)")
@click.option("--nworkers", type=int, default=32, help="virtual workers / stock workers (default 32)")
@click.option("--batch-size", type=int, default=16, help="sims per task in the batched run (default 16)")
@click.option("--engine-workers", type=int, default=2, help="engine workers (default 2)")
@click.option("--output", help="JSON file to write (default bench_gconly.json, compare: bench_gconly_compare.json)")
@click.option("--compare", is_flag=True, help="measure GC-only mode's packed calls against plain calls, side by side")
def cli(**opts: t.Any) -> int:
    """Run the benchmark and write the JSON file."""
    args = types.SimpleNamespace(**opts)
    reps = args.reps or (2 if args.quick else 5)
    sims = args.sims or (400 if args.quick else 3000)
    output = args.output or ("bench_gconly_compare.json" if args.compare else "bench_gconly.json")

    from bundle.session import GCSession

    config = endpoint_config(args.engine_workers)
    endpoint = GCSession.get_executor("local", config)
    t0 = time.perf_counter()
    endpoint.start()
    if not endpoint.wait_ready(120):
        raise RuntimeError("local endpoint did not become ready")
    measure_raw(endpoint, 50)  # warm the workers
    startup = time.perf_counter() - t0

    command = " ".join([os.path.basename(sys.executable), "-m", "benchmarks.bench_gconly", *sys.argv[1:]])
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    if args.compare:
        try:
            found = compare(endpoint, reps, sims, args.nworkers, config)
        finally:
            GCSession.clear()
        cfg = {"reps": reps, "sims": sims, "nworkers": args.nworkers, "engine_workers": args.engine_workers}
        pathlib.Path(output).write_text(
            json.dumps({"command": command, "machine": machine, "config": cfg, **found}, indent=2) + "\n"
        )
        for name, ratio in found["ratios"].items():
            print(f"{name}: median {ratio['median']:.3f} (min {ratio['min']:.3f}, max {ratio['max']:.3f})")
        print(f"wrote {output}")
        return 0

    raw: list[float] = []
    raw_sim: list[float] = []
    gc1: list[float] = []
    gcb: list[float] = []
    stock: list[float] = []
    try:
        for rep in range(reps):
            raw.append(measure_raw(endpoint, sims))
            raw_sim.append(measure_raw_sim(endpoint, sims))
            gc1.append(measure_gconly(sims, args.nworkers, 1, config))
            gcb.append(measure_gconly(sims, args.nworkers, args.batch_size, config))
            stock.append(measure_stock(sims, args.nworkers))
            print(
                f"rep {rep + 1}/{reps}: raw {raw[-1]:.0f} tasks/s, raw sim {raw_sim[-1]:.0f} tasks/s, "
                f"gconly {gc1[-1]:.0f} sims/s, "
                f"gconly batch {args.batch_size} {gcb[-1]:.0f} sims/s, stock local {stock[-1]:.0f} sims/s",
                flush=True,
            )
    finally:
        GCSession.clear()

    ratio_raw = [g / r for g, r in zip(gc1, raw, strict=True)]
    ratio_raw_sim = [g / r for g, r in zip(gc1, raw_sim, strict=True)]
    ratio_stock = [g / s for g, s in zip(gcb, stock, strict=True)]
    result = {
        "command": command,
        "machine": machine,
        "config": {
            "reps": reps,
            "sims": sims,
            "nworkers": args.nworkers,
            "batch_size": args.batch_size,
            "engine_workers": args.engine_workers,
            "endpoint_startup_s": startup,
        },
        "raw_engine_tasks_per_s": raw,
        "raw_engine_same_sim_tasks_per_s": raw_sim,
        "gconly_sims_per_s": gc1,
        "gconly_batched_sims_per_s": gcb,
        "stock_local_sims_per_s": stock,
        "ratios": {
            "gconly_over_raw_engine": {**summary(ratio_raw), "values": ratio_raw, "goal": 0.9},
            "gconly_over_raw_engine_same_sim": {**summary(ratio_raw_sim), "values": ratio_raw_sim, "goal": 0.9},
            "gconly_batched_over_stock_local": {**summary(ratio_stock), "values": ratio_stock, "goal": 1.0},
        },
    }
    pathlib.Path(output).write_text(json.dumps(result, indent=2) + "\n")
    for name, ratio in result["ratios"].items():  # type: ignore[union-attr]
        spread = f"min {ratio['min']:.3f}, max {ratio['max']:.3f}"
        print(f"{name}: median {ratio['median']:.3f} ({spread}), goal >= {ratio['goal']}")
    print(f"wrote {output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the JSON file."""
    return run_command(cli, argv, "python -m benchmarks.bench_gconly")


if __name__ == "__main__":
    sys.exit(main())
