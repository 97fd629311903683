"""Run every benchmark: ``python -m benchmarks [--quick] [--out DIR]`` (or ``libe-gc bench``).

Runs, in order, ``executor`` (executor mode's overhead and packing), ``gconly`` (GC-only
throughput), ``scaling`` (GC-only at 1k, 5k and 20k sims), ``payload`` (bytes per GC-only
task) and ``slurm`` (the slurm template on a real Slurm; skipped without one).  Writes each
benchmark's own JSON file (``executor.json``, ``gconly.json``, ``scaling.json``,
``payload.json``, ``slurm.json``) and its table (``<name>.md``) into ``DIR`` (default
``benchmark-results``), one combined ``results.json`` with every figure, and ``summary.md`` with
a table per section for the docs' performance page.  ``--quick`` checks the benchmarks work in
a minute or two; it says nothing about speed.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
import traceback
import types
import typing as t
from pathlib import Path

import click

from benchmarks.cli import run_command

STEPS = ("executor", "gconly", "scaling", "payload", "slurm")
TITLES = {
    "executor": "Executor mode",
    "gconly": "GC-only mode",
    "scaling": "GC-only scaling",
    "payload": "GC-only payload",
    "slurm": "Slurm",
}
HEADER = "| benchmark | ratio (median) | min to max | goal | met | raw numbers (median) |\n|---|---|---|---|---|---|\n"

_GCONLY_WHAT = {
    "gconly_over_raw_engine": "GC-only sims/s / raw engine tasks/s (trivial task, no arguments)",
    "gconly_over_raw_engine_same_sim": "GC-only sims/s / raw engine tasks/s (same sim and arguments)",
    "gconly_batched_over_stock_local": "GC-only sims/s, batched / stock libEnsemble, local comms",
}
_GCONLY_RAW = {
    "gconly_over_raw_engine": ("gconly_sims_per_s", "raw_engine_tasks_per_s"),
    "gconly_over_raw_engine_same_sim": ("gconly_sims_per_s", "raw_engine_same_sim_tasks_per_s"),
    "gconly_batched_over_stock_local": ("gconly_batched_sims_per_s", "stock_local_sims_per_s"),
}


def _median(values: t.Any) -> float:
    return float(statistics.median(values)) if isinstance(values, list) else float(values)


def figures_of(step: str, data: dict[str, t.Any]) -> list[dict[str, t.Any]]:
    """Return one benchmark's figures in one shape: name, what, median, min, max, goal, met, raw."""
    figures = []
    if step == "executor":
        for r in data["results"]:
            raw = {k: v["median"] for k, v in r.items() if isinstance(v, dict) and k != "ratio" and "median" in v}
            figures.append(
                {
                    "name": r["name"],
                    "what": r["what"],
                    **{k: r["ratio"][k] for k in ("median", "min", "max")},
                    "goal": r["goal"],
                    "met": bool(r["met"]),
                    "raw": raw,
                }
            )
        return figures
    for name, ratio in data.get("ratios", {}).items():
        goal = ratio["goal"]
        if isinstance(goal, (int, float)):  # the GC-only benchmark's goals are lower bounds
            met, goal = ratio["median"] >= goal, f">= {goal}"
        else:
            met = ratio["met"]
        raw = ratio.get("raw")
        if raw is None:
            raw = {k: _median(data[k]) for k in _GCONLY_RAW.get(name, ()) if k in data}
        figures.append(
            {
                "name": name,
                "what": ratio.get("what") or _GCONLY_WHAT.get(name, ""),
                **{k: ratio[k] for k in ("median", "min", "max")},
                "goal": goal,
                "met": bool(met),
                "raw": raw,
            }
        )
    return figures


def markdown(figures: list[dict[str, t.Any]]) -> str:
    """Render figures as a markdown table."""
    lines = []
    for f in figures:
        raw = ", ".join(f"{k} {v:.4g}" for k, v in f["raw"].items())
        name = f"{f['name']}: {f['what']}" if f["what"] else f["name"]
        lines.append(
            f"| {name} | {f['median']:.3f} | {f['min']:.3f} to {f['max']:.3f} | {f['goal']} "
            f"| {'yes' if f['met'] else 'no'} | {raw} |"
        )
    return HEADER + "\n".join(lines) + "\n"


def run_step(step: str, quick: bool, out: Path) -> int:
    """Run one benchmark module, writing ``out/<step>.json``; return its exit code."""
    q = ["--quick"] if quick else []
    if step == "executor":
        from benchmarks import bench_executor

        return bench_executor.main([*q, "--out", str(out)])
    if step == "gconly":
        from benchmarks import bench_gconly

        return bench_gconly.main([*q, "--output", str(out / "gconly.json")])
    if step == "scaling":
        from benchmarks import bench_scaling

        return bench_scaling.main([*q, "--output", str(out / "scaling.json")])
    if step == "payload":
        from benchmarks import bench_payload

        return bench_payload.main([*q, "--output", str(out / "payload.json")])
    if step == "slurm":
        from benchmarks import bench_slurm

        return bench_slurm.main([*q, "--output", str(out / "slurm.json")])
    raise ValueError(f"unknown benchmark {step!r}; choose from {', '.join(STEPS)}")


def summarize(results: dict[str, t.Any]) -> str:
    """Render ``summary.md``: a table per section, or why a section has none."""
    parts = []
    for step, entry in results["benchmarks"].items():
        parts.append(f"**{TITLES[step]}**\n")
        if "error" in entry:
            parts.append(f"Failed: {entry['error'].strip().splitlines()[-1]}\n")
        elif "skipped" in entry:
            parts.append(f"Skipped: {entry['skipped']}\n")
        else:
            parts.append(markdown(entry["figures"]))
    return "\n".join(parts)


@click.command(help=__doc__.splitlines()[0])
@click.option("--quick", is_flag=True, help="a short run that checks the benchmarks work")
@click.option("--out", default="benchmark-results", help="folder for the results")
@click.option("--only", default=",".join(STEPS), help=f"comma-separated benchmarks to run (default: {','.join(STEPS)})")
def cli(**opts: t.Any) -> int:
    """Run the benchmarks and write their results, ``results.json`` and ``summary.md``."""
    args = types.SimpleNamespace(**opts)
    steps = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise click.UsageError(f"unknown benchmark(s) {unknown}; choose from {', '.join(STEPS)}")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

    results: dict[str, t.Any] = {
        "meta": {
            "quick": args.quick,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "command": " ".join(["python -m benchmarks", *click.get_current_context().obj["argv"]]),
        },
        "benchmarks": {},
    }
    failed = []
    begin = time.perf_counter()
    for i, step in enumerate(steps, 1):
        print(f"[{i}/{len(steps)}] {step}: {TITLES[step]} ...", flush=True)
        start = time.perf_counter()
        entry: dict[str, t.Any] = {}
        try:
            code = run_step(step, args.quick, out)
            data = json.loads((out / f"{step}.json").read_text())
            if "skipped" in data:
                entry["skipped"] = data["skipped"]
            else:
                entry["figures"] = figures_of(step, data)
                (out / f"{step}.md").write_text(markdown(entry["figures"]))
            if code:
                entry["error"] = f"{step} exited with code {code}; see its output above and {step}.json"
        except Exception:
            entry["error"] = traceback.format_exc()
            print(entry["error"], file=sys.stderr, flush=True)
        entry["seconds"] = time.perf_counter() - start
        entry["file"] = f"{step}.json"
        results["benchmarks"][step] = entry
        if "error" in entry:
            failed.append(step)
        print(f"[{i}/{len(steps)}] {step}: done in {entry['seconds']:.0f} s", flush=True)
    results["meta"]["seconds"] = time.perf_counter() - begin
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    summary = summarize(results)
    (out / "summary.md").write_text(summary)
    print(summary)
    print(f"wrote {out / 'results.json'} and {out / 'summary.md'} in {results['meta']['seconds']:.0f} s")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and write their results, ``results.json`` and ``summary.md``."""
    return run_command(cli, argv, "python -m benchmarks")


if __name__ == "__main__":
    sys.exit(main())
