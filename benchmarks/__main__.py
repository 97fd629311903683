"""Run every benchmark: ``python -m benchmarks [--quick] [--out DIR]``.

Writes ``executor.json`` / ``executor.md`` (executor mode) and ``gconly.json`` /
``gconly.md`` (GC-only mode) into ``DIR`` (default ``benchmark-results``), and
``summary.md`` with every ratio, for the docs' performance page.  ``--quick``
checks the benchmarks work in about a minute; it says nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing as t
from pathlib import Path


def gconly_markdown(result: dict[str, t.Any]) -> str:
    """Render the GC-only benchmark's ratios as a markdown table."""
    raw_keys = {
        "gconly_over_raw_engine": ("gconly_sims_per_s", "raw_engine_tasks_per_s"),
        "gconly_over_raw_engine_same_sim": ("gconly_sims_per_s", "raw_engine_same_sim_tasks_per_s"),
        "gconly_batched_over_stock_local": ("gconly_batched_sims_per_s", "stock_local_sims_per_s"),
    }
    lines = [
        "| benchmark | ratio (median) | min to max | goal | met | raw numbers (median) |",
        "|---|---|---|---|---|---|",
    ]
    for name, ratio in result["ratios"].items():
        top, bottom = raw_keys[name]
        raw = ", ".join(f"{k} {sorted(result[k])[len(result[k]) // 2]:.4g}" for k in (top, bottom))
        met = "yes" if ratio["median"] >= ratio["goal"] else "no"
        lines.append(
            f"| {name} | {ratio['median']:.3f} | {ratio['min']:.3f} to {ratio['max']:.3f} | >= {ratio['goal']} "
            f"| {met} | {raw} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run both benchmark modules and write their results and a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run that checks the benchmarks work")
    parser.add_argument("--out", default="benchmark-results", help="folder for the results")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quick = ["--quick"] if args.quick else []

    from benchmarks import bench_executor, bench_gconly

    code = bench_executor.main([*quick, "--out", str(out)])
    code = code or bench_gconly.main([*quick, "--output", str(out / "gconly.json")])
    if code:
        return code
    gc_table = gconly_markdown(json.loads((out / "gconly.json").read_text()))
    (out / "gconly.md").write_text(gc_table)
    summary = "**Executor mode**\n\n" + (out / "executor.md").read_text() + "\n**GC-only mode**\n\n" + gc_table
    (out / "summary.md").write_text(summary)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
