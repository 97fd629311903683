"""``python -m benchmarks --quick`` runs every benchmark and writes its results (speed is not asserted here)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_benchmark_runs_in_quick_mode_and_writes_ratios(tmp_path):
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    data = json.loads((tmp_path / "executor.json").read_text())
    assert data["meta"]["quick"] is True
    names = {r["name"] for r in data["results"]}
    assert names == {"executor_overhead", "packing"}
    for r in data["results"]:
        assert r["ratio"]["median"] > 0 and r["ratio"]["min"] <= r["ratio"]["median"] <= r["ratio"]["max"]
    table = (tmp_path / "executor.md").read_text()
    assert table.count("\n") == 4 and "executor_overhead" in table
    gc = json.loads((tmp_path / "gconly.json").read_text())
    assert set(gc["ratios"]) == {
        "gconly_over_raw_engine",
        "gconly_over_raw_engine_same_sim",
        "gconly_batched_over_stock_local",
    }
    assert all(r["median"] > 0 for r in gc["ratios"].values())
    summary = (tmp_path / "summary.md").read_text()
    assert "**Executor mode**" in summary and "gconly_batched_over_stock_local" in summary
