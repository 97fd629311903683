"""``python -m benchmarks --quick`` runs every benchmark and writes its results (speed is not asserted here)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from bundle.endpoints.local.reaper import TOKEN_ENV

ROOT = pathlib.Path(__file__).resolve().parents[1]
SECTIONS = ("executor", "gpus", "gconly", "scaling", "payload", "slurm", "multinode")


def _slurm_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    return subprocess.run(["bash", str(ROOT / ".ci" / "slurm.sh"), "status"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("bench")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    # As a user starts it: not marked as this test process's (its watcher token), in a session of its own.
    env.pop(TOKEN_ENV, None)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for step in SECTIONS:  # progress is printed per step
        assert f"] {step}: done in" in proc.stdout
    return out


def _sane(figure: dict) -> None:
    assert figure["median"] > 0 and figure["min"] <= figure["median"] <= figure["max"], figure
    if figure["met"] is None:  # a figure that explains another one has no goal
        assert figure["goal"] == "none" and figure["what"], figure
    else:
        assert isinstance(figure["met"], bool) and figure["goal"], figure
    assert figure["raw"] and all(v >= 0 for v in figure["raw"].values()), figure


@pytest.mark.timeout(1600)
def test_every_section_is_in_results_json_with_sane_figures(quick_run):
    results = json.loads((quick_run / "results.json").read_text())
    assert results["meta"]["quick"] is True
    assert list(results["benchmarks"]) == list(SECTIONS)
    for step, entry in results["benchmarks"].items():
        assert "error" not in entry, (step, entry["error"])
        assert (quick_run / entry["file"]).is_file()
        if "skipped" in entry:
            assert step in ("slurm", "multinode") and not _slurm_up(), entry
            continue
        assert entry["figures"], step
        for figure in entry["figures"]:
            _sane(figure)
    names = {f["name"] for e in results["benchmarks"].values() for f in e.get("figures", [])}
    expected = {
        "executor_overhead",
        "packing",
        "packing_cpu",
        "gpu_packing",
        "gconly_over_raw_engine",
        "gconly_over_raw_engine_same_sim",
        "gconly_over_serial_bound",
        "gconly_over_libe_gc",
        "gconly_batched_over_libe_gc",
        "gconly_batched_over_stock_threads",
        "gconly_batched_over_stock_local",
        "scaling_time_per_sim",
        "scaling_steady_time_per_sim",
        "scaling_manager_rss",
        "payload_request_gconly_over_libe_gc_module",
        "payload_engine_gconly_over_libe_gc_module",
        "payload_request_gconly_over_libe_gc_main",
        "payload_engine_gconly_over_libe_gc_main",
    }
    if "skipped" not in results["benchmarks"]["slurm"]:  # measured (a skip was checked against _slurm_up above)
        expected.add("slurm_packing")
    if "skipped" not in results["benchmarks"]["multinode"]:  # measured (a skip was checked against _slurm_up above)
        expected |= {"multinode_throughput", "first_2node_result_s"}
    assert names == expected


@pytest.mark.timeout(1600)
def test_scaling_runs_every_size_and_leaves_nothing_behind(quick_run):
    scaling = json.loads((quick_run / "scaling.json").read_text())
    sizes = scaling["config"]["sizes"]
    assert sizes == sorted(sizes) and len(sizes) == 3
    assert scaling["left_after_run"] == {}
    for size in sizes:
        per = scaling["per_size"][str(size)]
        for run in per["runs"]:
            assert run["sims"] == size == run["tasks"]
            left = run["left_after_run"]
            assert left["endpoint_futures"] == left["orders"] == left["pending"] == left["answers"] == 0
            assert left["submitted"] == size
            assert 0 < run["rss_at_warmup_mib"] <= run["rss_peak_after_warmup_mib"]
            assert run["rss_growth_mib"] >= 0
            assert run["warmup_sims"] >= 0.1 * size
        # The history grows with the sims: H is reported beside the memory figures.
        assert per["h_nbytes_mib"] > 0
    assert scaling["per_size"][str(sizes[-1])]["h_nbytes_mib"] > scaling["per_size"][str(sizes[0])]["h_nbytes_mib"]


@pytest.mark.timeout(1600)
def test_payload_measures_every_task_on_both_sides(quick_run):
    payload = json.loads((quick_run / "payload.json").read_text())
    sims = payload["config"]["sims"]
    for variant in ("module", "main"):
        for side in ("gconly", "libe_gc"):
            measured = payload["measured"][f"{variant}/{side}"]
            assert measured["engine_bytes"]["n"] == measured["request_bytes"]["n"] == sims
    # libEnsemble's GC path sends sim_specs (holding sim_f) with every sim: by value from __main__ it grows.
    assert (
        payload["measured"]["main/libe_gc"]["request_bytes"]["median"]
        > payload["measured"]["module/libe_gc"]["request_bytes"]["median"]
    )
    # GC-only sends the same arguments whatever sim_f is: sim_specs is bound into the registered runner.
    assert (
        payload["measured"]["main/gconly"]["request_bytes"]["median"]
        == payload["measured"]["module/gconly"]["request_bytes"]["median"]
    )


@pytest.mark.timeout(1600)
def test_gconly_section_times_every_side_in_each_repetition(quick_run):
    gconly = json.loads((quick_run / "gconly.json").read_text())
    reps = gconly["config"]["reps"]
    assert len(gconly["load_average_per_rep"]) == reps
    for name in ("raw", "raw_same", "gconly", "gconly_batched", "libe_gc", "stock_threads", "stock_local"):
        assert len(gconly["rates_per_s"][name]["values"]) == reps and gconly["rates_per_s"][name]["min"] > 0


@pytest.mark.timeout(1600)
def test_slurm_section_measures_or_says_why_not(quick_run):
    slurm = json.loads((quick_run / "slurm.json").read_text())
    if "skipped" in slurm:  # only when no Slurm node is up
        assert slurm["skipped"].startswith("no Slurm") and not _slurm_up()
        return
    assert slurm["jobs_left"] == []
    for slots in ("slots1", "slots2"):
        (run,) = slurm[slots]
        assert run["first_result_s"] > 0 and run["tasks_per_s"] > 0


@pytest.mark.timeout(1600)
def test_multinode_section_measures_or_says_why_not(quick_run):
    multinode = json.loads((quick_run / "multinode.json").read_text())
    if "skipped" in multinode:  # only when the cluster does not have 3 nodes up
        assert multinode["skipped"].startswith("no Slurm") and not _slurm_up()
        return
    (wide,) = multinode["three_nodes_slots2"]
    (narrow,) = multinode["one_node_slots1"]
    # The 3-node block spread the tasks over its nodes; the 1-node block ran them on its one node.
    assert wide["nodes_used"] == 3 and narrow["nodes_used"] == 1
    assert wide["tasks_per_s"] > 0 and narrow["tasks_per_s"] > 0
    (first,) = multinode["first_2node"]
    assert first["seconds"] > 0


@pytest.mark.timeout(1600)
def test_summary_has_a_table_per_section(quick_run):
    summary = (quick_run / "summary.md").read_text()
    for title in (
        "Executor mode",
        "GPU packing",
        "GC-only mode",
        "GC-only scaling",
        "GC-only payload",
        "Slurm",
        "Slurm, several nodes per block",
    ):
        assert f"**{title}**" in summary
    assert "scaling_manager_rss" in summary and "payload_engine_gconly_over_libe_gc_module" in summary
    for step in SECTIONS[:5]:
        table = (quick_run / f"{step}.md").read_text()
        assert table.startswith("| benchmark | ratio (median) |")


def test_libe_gc_bench_outside_a_source_checkout_says_where_to_run_it(tmp_path):
    # An interpreter that imports bundle but not the repository's benchmarks package (the repo is off sys.path).
    code = (
        "import os, sys; "
        f"sys.path = [p for p in sys.path if p and os.path.realpath(p) != {str(ROOT)!r}]; "
        "from click.testing import CliRunner; from bundle.cli import main; "
        "r = CliRunner().invoke(main, ['bench', '--quick']); print(r.exit_code); print(r.output)"
    )
    bundle_dir = str(ROOT / "bundle")
    site = tmp_path / "site"
    site.mkdir()
    (site / "bundle").symlink_to(bundle_dir, target_is_directory=True)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(site)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = proc.stdout.splitlines()
    assert lines and lines[0] == "1", proc.stdout + proc.stderr
    assert "source checkout" in proc.stdout and "python -m benchmarks" in proc.stdout
