"""Run every benchmark: ``python -m benchmarks [--quick] [--out DIR]`` (or ``libe-gc bench``).

Runs, in order, ``executor`` (executor mode's overhead and packing), ``gpus`` (one-GPU tasks
packed onto a 4-GPU node vs. whole-node), ``gconly`` (GC-only
throughput), ``scaling`` (GC-only at 1k, 5k and 20k sims), ``payload`` (bytes per GC-only
task), ``slurm`` (the slurm template on a real Slurm; skipped without one) and ``multinode``
(blocks of several Slurm nodes; skipped without a Slurm of 3 nodes).  ``--only realstack`` runs
``realstack`` (GC-only and executor mode over the raw SDK ``Executor`` on the real Globus Compute stack,
and a cold 2-node start; it needs root, RabbitMQ and Slurm, so it is not in the default run).  Writes each
benchmark's own JSON file (``executor.json``, ``gpus.json``, ``gconly.json``, ``scaling.json``,
``payload.json``, ``slurm.json``, ``multinode.json``) and its table (``<name>.md``) into ``DIR`` (default
``benchmark-results``), one combined ``results.json`` with every figure, and ``summary.md`` with
a table per section for the docs' performance page.  ``--quick`` checks the benchmarks work in
a minute or two; it says nothing about speed.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
import traceback
import typing as t
from pathlib import Path

import click

from benchmarks.common import benchmark_command, entry_point, out_option, quick_option

DEFAULT_STEPS = ("executor", "gpus", "gconly", "scaling", "payload", "slurm", "multinode")
"""The benchmarks a run without ``--only`` runs."""
STEPS = (*DEFAULT_STEPS, "realstack")
"""Every benchmark ``--only`` accepts."""
TITLES = {
    "executor": "Executor mode",
    "gpus": "GPU packing",
    "gconly": "GC-only mode",
    "scaling": "GC-only scaling",
    "payload": "GC-only payload",
    "slurm": "Slurm",
    "multinode": "Slurm, several nodes per block",
    "realstack": "The real Globus Compute stack",
}
HEADER = "| benchmark | ratio (median) | min to max | goal | met | raw numbers (median) |\n|---|---|---|---|---|---|\n"


def figures_of(step: str, data: dict[str, t.Any]) -> list[dict[str, t.Any]]:
    """Return one benchmark's figures in one shape: name, what, median, min, max, goal, met, raw."""
    figures = []
    if step in ("executor", "gpus"):
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
        if goal is None:  # a figure that explains another one (no goal)
            met, goal = None, "none"
        elif isinstance(goal, (int, float)):  # the GC-only benchmark's goals are lower bounds
            met, goal = ratio["median"] >= goal, f">= {goal}"
        else:
            met = ratio["met"]
        raw = ratio.get("raw") or {}
        figures.append(
            {
                "name": name,
                "what": ratio.get("what", ""),
                **{k: ratio[k] for k in ("median", "min", "max")},
                "goal": goal,
                "met": None if met is None else bool(met),
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
            f"| {'n/a' if f['met'] is None else 'yes' if f['met'] else 'no'} | {raw} |"
        )
    return HEADER + "\n".join(lines) + "\n"


def run_step(step: str, quick: bool, out: Path) -> int:
    """Run one benchmark module, writing ``out/<step>.json``; return its exit code."""
    q = ["--quick"] if quick else []
    if step == "executor":
        from benchmarks import bench_executor

        return bench_executor.main([*q, "--out", str(out)])
    if step == "gpus":
        from benchmarks import bench_gpus

        return bench_gpus.main([*q, "--out", str(out)])
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
    if step == "multinode":
        from benchmarks import bench_multinode

        return bench_multinode.main([*q, "--output", str(out / "multinode.json")])
    if step == "realstack":
        from benchmarks import bench_realstack

        return bench_realstack.main([*q, "--output", str(out / "realstack.json")])
    raise ValueError(f"unknown benchmark {step!r}; choose from {', '.join(STEPS)}")


def error_line(text: str) -> str:
    """Return the line of a traceback that names the error (not a warning printed after it)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b", line)]
    return (named or lines or ["unknown error"])[-1]


def summarize(results: dict[str, t.Any]) -> str:
    """Render ``summary.md``: a table per section, or why a section has none."""
    parts = []
    for step, entry in results["benchmarks"].items():
        parts.append(f"**{TITLES[step]}**\n")
        if "error" in entry:
            parts.append(f"Failed: {error_line(entry['error'])}\n")
        elif "skipped" in entry:
            parts.append(f"Skipped: {entry['skipped']}\n")
        else:
            parts.append(markdown(entry["figures"]))
    return "\n".join(parts)


def _steps(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    """Return the benchmarks named in ``--only``, or fail on a name that is none of ``STEPS``."""
    steps = [s.strip() for s in value.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise click.BadParameter(f"unknown benchmark(s) {unknown}; choose from {', '.join(STEPS)}")
    return steps


@benchmark_command(__doc__)
@quick_option(help="a short run that checks the benchmarks work")
@out_option(help="folder for the results")
@click.option(
    "--only",
    "steps",
    default=",".join(DEFAULT_STEPS),
    callback=_steps,
    help=f"comma-separated benchmarks to run (default: {','.join(DEFAULT_STEPS)}; also: realstack)",
)
@click.pass_obj
def cli(argv: list[str], quick: bool, out: str, steps: list[str]) -> int:
    """Run the benchmarks and write their results, ``results.json`` and ``summary.md``; return the exit code."""
    folder = Path(out).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

    results: dict[str, t.Any] = {
        "meta": {
            "quick": quick,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
            "command": " ".join(["python -m benchmarks", *argv]),
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
            code = run_step(step, quick, folder)
            data = json.loads((folder / f"{step}.json").read_text())
            if "skipped" in data:
                entry["skipped"] = data["skipped"]
            else:
                entry["figures"] = figures_of(step, data)
                (folder / f"{step}.md").write_text(markdown(entry["figures"]))
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
    results["meta"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    summary = summarize(results)
    (folder / "summary.md").write_text(summary)
    print(summary)
    print(f"wrote {folder / 'results.json'} and {folder / 'summary.md'} in {results['meta']['seconds']:.0f} s")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


main = entry_point(cli, "python -m benchmarks")


if __name__ == "__main__":
    sys.exit(main())
