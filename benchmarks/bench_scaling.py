"""GC-only mode scaling: time per sim and manager memory at 1k, 5k and 20k trivial sims.

    python -m benchmarks.bench_scaling            # full: 1000, 5000, 20000 sims, 5 repetitions
    python -m benchmarks.bench_scaling --quick    # 200, 400, 800 sims side by side (checks it works)

Every (size, repetition) runs in a fresh Python process, so each starts from a clean
resident set.  That process starts a local endpoint (GlobusComputeEngine, 2 workers),
warms its workers, then runs one GC-only ensemble of trivial sims (``nworkers`` virtual
workers, one task per sim) while a thread samples the process's RSS (psutil) and the
number of finished tasks.  It reports:

* ``s_per_sim``: wall time of the run divided by the sims (and ``steady_s_per_sim``:
  from the end of the warm-up to the end);
* ``rss_growth``: peak RSS after the warm-up (the first ``--warmup`` fraction of the
  sims) minus the RSS at the end of the warm-up.  The history array ``H`` is allocated
  whole at the start but its pages are touched as rows fill, so up to ``H.nbytes`` of
  growth is the history itself: ``h_nbytes`` is reported beside it;
* what is left after the run: futures held by the local endpoint and, at the moment the
  run ends, work orders, pending tasks and answers held by GC-only mode's dispatcher.
  Anything left is a bug: the benchmark fails and says what was left.

Ratios (largest size over smallest, per repetition): ``scaling_time_per_sim`` (goal <= 1.2:
flat time per sim means cost linear in sims; ``scaling_steady_time_per_sim`` leaves out the
warm-up) and ``scaling_manager_rss``, the peak RSS after the warm-up (goal <= 1.05: memory
does not grow with sims), with each size's growth after the warm-up and ``H.nbytes`` beside it.
"""

from __future__ import annotations

import concurrent.futures
import gc
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import typing as t

import click

from benchmarks.bench_gconly import endpoint_config, ensemble_specs, importable, run_ensemble
from benchmarks.common import (
    benchmark_command,
    engine_workers_option,
    entry_point,
    output_option,
    quick_option,
    reps_option,
)

REPO = pathlib.Path(__file__).resolve().parents[1]
MIB = 1024.0 * 1024.0


class RssSampler(threading.Thread):
    """Sample this process's RSS and a progress counter every ``interval`` seconds."""

    def __init__(self, progress: t.Callable[[], int], interval: float = 0.01) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        import psutil

        self._proc = psutil.Process()
        self._progress = progress
        self._interval = interval
        self._halt = threading.Event()
        self.samples: list[tuple[float, int, int]] = []
        """``(time, finished tasks, rss bytes)``."""

    def sample(self) -> None:
        """Take one sample now."""
        self.samples.append((time.perf_counter(), self._progress(), self._proc.memory_info().rss))

    def run(self) -> None:
        """Sample until stopped."""
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self._interval)

    def stop(self) -> None:
        """Stop sampling, take a last sample."""
        self._halt.set()
        self.join()
        self.sample()


def _watch_dispatcher(record: dict[str, t.Any]) -> None:
    """Record what GC-only mode's dispatcher still holds when the run ends (before it clears it)."""
    from bundle.gconly import dispatch

    close = dispatch.SimDispatcher.close

    def watched(self: t.Any) -> None:
        if "orders" not in record:
            record.update(**self.held(), errors=len(self.errors), submitted=self.submitted)
        close(self)

    dispatch.SimDispatcher.close = watched  # type: ignore[method-assign]


def child(sims: int, nworkers: int, engine_workers: int, warmup: float) -> dict[str, t.Any]:
    """One GC-only run in this (fresh) process; return its measurements."""
    from bundle.endpoints.session import GCSession
    from bundle.gconly import GCOnlySpecs

    config = endpoint_config(engine_workers)
    endpoint = GCSession.get_executor("local", config)
    endpoint.start()
    if not endpoint.wait_ready(120):
        raise RuntimeError("local endpoint did not become ready")
    fid = endpoint.register_function(importable("noop"))
    for fut in [endpoint.submit_to_registered_function(fid) for _ in range(50)]:
        fut.result(timeout=120)

    finished = [0]
    submit = endpoint.submit_to_registered_function

    def counted(*args: t.Any, **kwargs: t.Any) -> t.Any:
        fut = submit(*args, **kwargs)
        fut.add_done_callback(lambda _f: finished.__setitem__(0, finished[0] + 1))
        return fut

    endpoint.submit_to_registered_function = counted  # type: ignore[method-assign]
    left: dict[str, t.Any] = {}
    _watch_dispatcher(left)
    specs = ensemble_specs(nworkers, sims)
    gc.collect()
    sampler = RssSampler(lambda: finished[0])
    sampler.start()
    res, elapsed = run_ensemble(specs, nworkers, GCOnlySpecs(user_endpoint_config=config), "bench-scaling-")
    sampler.stop()
    done = int(res.H["sim_ended"].sum())

    deadline = time.monotonic() + 5  # done-callbacks run on the engine's threads
    while endpoint._futures and time.monotonic() < deadline:
        time.sleep(0.05)
    left["endpoint_futures"] = len(endpoint._futures)
    GCSession.clear()

    warm = max(1, int(warmup * sims))
    samples = sampler.samples
    at = next((i for i, s in enumerate(samples) if s[1] >= warm), len(samples) - 1)
    t_warm, _, rss_warm = samples[at]
    peak = max(s[2] for s in samples[at:])
    end = samples[-1][0]
    return {
        "sims": done,
        "wall_s": elapsed,
        "s_per_sim": elapsed / done,
        "steady_s_per_sim": (end - t_warm) / max(1, done - samples[at][1]),
        "warmup_sims": samples[at][1],
        "rss_start_mib": samples[0][2] / MIB,
        "rss_at_warmup_mib": rss_warm / MIB,
        "rss_peak_after_warmup_mib": peak / MIB,
        "rss_growth_mib": (peak - rss_warm) / MIB,
        "h_nbytes_mib": res.H.nbytes / MIB,
        "samples": len(samples),
        "left_after_run": left,
        "tasks": res.tasks,
    }


def _run_child(sims: int, nworkers: int, engine_workers: int, warmup: float) -> dict[str, t.Any]:
    with tempfile.NamedTemporaryFile(prefix="bench-scaling-", suffix=".json", delete=False) as f:
        out = pathlib.Path(f.name)
    try:
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.bench_scaling",
            "--child",
            str(sims),
            "--child-out",
            str(out),
            "--nworkers",
            str(nworkers),
            "--engine-workers",
            str(engine_workers),
            "--warmup",
            str(warmup),
        ]
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"scaling run of {sims} sims failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        result: dict[str, t.Any] = json.loads(out.read_text())
        return result
    finally:
        out.unlink(missing_ok=True)


def summary(values: list[float]) -> dict[str, float]:
    """Median and spread of a list of numbers."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def leftovers(run: dict[str, t.Any]) -> dict[str, int]:
    """Return what a run left behind that it should not have (empty when nothing)."""
    left = run["left_after_run"]
    keys = ("orders", "pending", "answers", "expected_rows", "done_queue", "endpoint_futures")
    return {k: int(left.get(k, -1)) for k in keys if left.get(k, -1) != 0}


@benchmark_command(__doc__)
@quick_option(help="200, 400 and 800 sims, one repetition")
@click.option(
    "--sizes",
    "sizes_given",
    default=None,
    help="comma-separated sims per run (default 1000,5000,20000; quick 200,400,800)",
)
@reps_option(help="repetitions (default 5, quick 1)")
@click.option("--nworkers", type=int, default=32, help="virtual workers (default 32)")
@engine_workers_option
@click.option("--warmup", type=float, default=0.1, help="fraction of the sims that is warm-up (0.1)")
@output_option("scaling.json")
@click.option("--child", "child_sims", type=int, default=None, hidden=True)
@click.option("--child-out", default=None, hidden=True)
def cli(
    quick: bool,
    sizes_given: str | None,
    reps: int | None,
    nworkers: int,
    engine_workers: int,
    warmup: float,
    output: str,
    child_sims: int | None,
    child_out: str | None,
) -> int:
    """Run every size in its own process and write the JSON file; return the exit code."""
    if child_sims:
        result = child(child_sims, nworkers, engine_workers, warmup)
        pathlib.Path(str(child_out)).write_text(json.dumps(result))
        return 0

    sizes = [int(s) for s in (sizes_given or ("200,400,800" if quick else "1000,5000,20000")).split(",")]
    reps = reps or (1 if quick else 5)
    runs: dict[int, list[dict[str, t.Any]]] = {s: [] for s in sizes}
    plan = [(rep, sims) for rep in range(reps) for sims in (sizes if rep % 2 == 0 else sizes[::-1])]
    # Sizes alternate their order per repetition, so drift hits every size alike.  --quick runs
    # the processes side by side: it checks the benchmark works and says nothing about speed.
    with concurrent.futures.ThreadPoolExecutor(len(plan) if quick else 1) as pool:
        done = pool.map(lambda job: (job, _run_child(job[1], nworkers, engine_workers, warmup)), plan)
        for (rep, sims), run in done:
            runs[sims].append(run)
            print(
                f"scaling rep {rep + 1}/{reps}, {sims} sims: {run['s_per_sim'] * 1e3:.3f} ms/sim, "
                f"RSS growth after warm-up {run['rss_growth_mib']:.1f} MiB (H {run['h_nbytes_mib']:.2f} MiB)",
                flush=True,
            )
    bad = {f"{s} sims, rep {i + 1}": leftovers(r) for s in sizes for i, r in enumerate(runs[s]) if leftovers(r)}
    small, large = sizes[0], sizes[-1]
    time_ratio = [b["s_per_sim"] / a["s_per_sim"] for a, b in zip(runs[small], runs[large], strict=True)]
    steady_ratio = [
        b["steady_s_per_sim"] / a["steady_s_per_sim"] for a, b in zip(runs[small], runs[large], strict=True)
    ]

    def excess(run: dict[str, t.Any]) -> float:
        # growth beyond the history rows filled after the warm-up
        return float(run["rss_growth_mib"] - run["h_nbytes_mib"] * (1 - run["warmup_sims"] / run["sims"]))

    rss_excess = {s: [excess(r) for r in runs[s]] for s in sizes}
    peak = {s: [r["rss_peak_after_warmup_mib"] for r in runs[s]] for s in sizes}
    rss_ratio = [b / a for a, b in zip(peak[small], peak[large], strict=True)]
    result = {
        "command": " ".join([os.path.basename(sys.executable), "-m", "benchmarks.bench_scaling", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "config": {
            "sizes": sizes,
            "reps": reps,
            "nworkers": nworkers,
            "engine_workers": engine_workers,
            "warmup_fraction": warmup,
            "quick": quick,
        },
        "per_size": {
            str(s): {
                "s_per_sim": summary([r["s_per_sim"] for r in runs[s]]),
                "steady_s_per_sim": summary([r["steady_s_per_sim"] for r in runs[s]]),
                "rss_growth_mib": summary([r["rss_growth_mib"] for r in runs[s]]),
                "rss_growth_beyond_h_mib": summary(rss_excess[s]),
                "rss_peak_after_warmup_mib": summary([r["rss_peak_after_warmup_mib"] for r in runs[s]]),
                "h_nbytes_mib": runs[s][0]["h_nbytes_mib"],
                "runs": runs[s],
            }
            for s in sizes
        },
        "ratios": {
            "scaling_time_per_sim": {
                **summary(time_ratio),
                "values": time_ratio,
                "goal": "<= 1.2",
                "met": statistics.median(time_ratio) <= 1.2,
                "what": f"s per GC-only sim: {large} sims / {small} sims (flat = cost linear in sims)",
                "raw": {
                    f"s_per_sim_{large}": statistics.median(r["s_per_sim"] for r in runs[large]),
                    f"s_per_sim_{small}": statistics.median(r["s_per_sim"] for r in runs[small]),
                },
            },
            "scaling_steady_time_per_sim": {
                **summary(steady_ratio),
                "values": steady_ratio,
                "goal": "<= 1.2",
                "met": statistics.median(steady_ratio) <= 1.2,
                "what": f"s per GC-only sim after warm-up: {large} sims / {small} sims",
                "raw": {
                    f"steady_s_per_sim_{large}": statistics.median(r["steady_s_per_sim"] for r in runs[large]),
                    f"steady_s_per_sim_{small}": statistics.median(r["steady_s_per_sim"] for r in runs[small]),
                },
            },
            "scaling_manager_rss": {
                **summary(rss_ratio),
                "values": rss_ratio,
                "goal": "<= 1.05",
                "met": statistics.median(rss_ratio) <= 1.05,
                "what": f"manager peak RSS after warm-up: {large} sims / {small} sims",
                "raw": {
                    f"rss_peak_mib_{large}": statistics.median(peak[large]),
                    f"rss_peak_mib_{small}": statistics.median(peak[small]),
                    f"rss_growth_after_warmup_mib_{large}": statistics.median(r["rss_growth_mib"] for r in runs[large]),
                    f"rss_growth_after_warmup_mib_{small}": statistics.median(r["rss_growth_mib"] for r in runs[small]),
                    f"h_nbytes_mib_{large}": runs[large][0]["h_nbytes_mib"],
                    f"h_nbytes_mib_{small}": runs[small][0]["h_nbytes_mib"],
                },
            },
        },
        "left_after_run": bad,
    }
    pathlib.Path(output).write_text(json.dumps(result, indent=2) + "\n")
    for name, ratio in result["ratios"].items():  # type: ignore[union-attr]
        print(f"{name}: median {ratio['median']:.3f} (min {ratio['min']:.3f}, max {ratio['max']:.3f}), {ratio['goal']}")
    print(f"wrote {output}")
    if bad:
        print(f"GC-only runs left state behind (a bug): {bad}", file=sys.stderr)
        return 1
    return 0


main = entry_point(cli, "python -m benchmarks.bench_scaling")


if __name__ == "__main__":
    sys.exit(main())
