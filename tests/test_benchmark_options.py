"""The benchmarks' command lines: flags, defaults, click's usage errors and exit codes (no benchmark runs)."""

from __future__ import annotations

import importlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

from benchmarks import __main__ as suite
from benchmarks import bench_multinode, bench_realstack, bench_slurm

ROOT = pathlib.Path(__file__).resolve().parents[1]

FLAGS = {
    "__main__": ["--quick", "--out", "--only"],
    "bench_executor": ["--quick", "--out"],
    "bench_gpus": ["--quick", "--out"],
    "bench_gconly": [
        "--quick",
        "--reps",
        "--sims",
        "--nworkers",
        "--batched-nworkers",
        "--batch-size",
        "--stock-nworkers",
        "--engine-workers",
        "--output",
        "--compare",
    ],
    "bench_scaling": ["--quick", "--sizes", "--reps", "--nworkers", "--engine-workers", "--warmup", "--output"],
    "bench_payload": ["--quick", "--sims", "--nworkers", "--output"],
    "bench_slurm": [
        "--quick",
        "--reps",
        "--tasks",
        "--seconds",
        "--launcher",
        "--partition",
        "--network-interface",
        "--wait",
        "--start-timeout",
        "--output",
    ],
}
FLAGS["bench_multinode"] = FLAGS["bench_slurm"]
FLAGS["bench_realstack"] = [
    "--quick",
    "--reps",
    "--sims",
    "--nworkers",
    "--batched-nworkers",
    "--batch-size",
    "--engine-workers",
    "--tasks",
    "--cold-reps",
    "--launcher",
    "--wait",
    "--output",
]


@pytest.mark.parametrize("name", sorted(FLAGS))
def test_help_lists_every_flag_and_exits_0(name, capsys):
    module = importlib.import_module(f"benchmarks.{name}")
    assert module.main(["--help"]) == 0
    out = capsys.readouterr().out
    prog = "python -m benchmarks" + ("" if name == "__main__" else f".{name}")
    assert out.startswith(f"Usage: {prog} [OPTIONS]")
    listed = [line.split()[0] for line in out.split("Options:")[1].splitlines() if line.strip().startswith("--")]
    assert listed == [*FLAGS[name], "--help"]


@pytest.mark.parametrize(
    ("name", "argv", "says"),
    [
        ("__main__", ["--only", "gconly,nosuch"], "unknown benchmark(s) ['nosuch']; choose from executor, gpus"),
        ("bench_slurm", ["--launcher", "aprun"], "'aprun' is not one of 'srun', 'mpiexec'"),
        ("bench_gconly", ["--reps", "many"], "'many' is not a valid integer"),
        ("bench_payload", ["--nosuch"], "No such option: --nosuch"),
    ],
)
def test_bad_arguments_give_the_usage_error_and_exit_2(name, argv, says, capsys):
    module = importlib.import_module(f"benchmarks.{name}")
    with pytest.raises(SystemExit) as exit_:
        module.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("Usage: python -m benchmarks") and says in err, err


def test_slurm_defaults_follow_quick_and_flags_override_them(tmp_path, monkeypatch):
    seen = []

    def run(settings):
        seen.append(settings)
        return {"skipped": "not measured here"}

    monkeypatch.setattr(bench_slurm, "run", run)
    monkeypatch.setattr(bench_multinode, "run", run)
    assert bench_slurm.main(["--quick", "--output", str(tmp_path / "s.json")]) == 0
    assert bench_slurm.main(["--reps", "3", "--launcher", "mpiexec", "--output", str(tmp_path / "s.json")]) == 0
    assert bench_multinode.main(["--quick", "--partition", "debug", "--output", str(tmp_path / "m.json")]) == 0
    quick, full, multinode = seen
    assert (quick.reps, quick.tasks, quick.seconds, quick.launcher, quick.wait) == (1, 4, 0.5, "srun", 900.0)
    assert quick.endpoint_options() == {"walltime": "00:15:00", "mpi_launcher": "srun", "network_interface": "lo"}
    assert (full.reps, full.tasks, full.launcher, full.start_timeout) == (3, 16, "mpiexec", 600.0)
    assert (multinode.reps, multinode.tasks, multinode.seconds) == (1, 6, 1.0)
    assert multinode.endpoint_options()["partition"] == "debug"
    assert json.loads((tmp_path / "m.json").read_text())["quick"] is True


def test_realstack_defaults_follow_quick_and_flags_override_them(tmp_path, monkeypatch):
    seen = []

    def run(settings):
        seen.append(settings)
        return {"skipped": "not measured here"}

    monkeypatch.setattr(bench_realstack, "run", run)
    out = tmp_path / "r.json"
    assert bench_realstack.main(["--quick", "--output", str(out)]) == 0
    assert json.loads(out.read_text())["skipped"] == "not measured here"
    assert bench_realstack.main(["--output", str(out)]) == 0
    argv = [
        "--sims",
        "300",
        "--batched-nworkers",
        "64",
        "--cold-reps",
        "0",
        "--launcher",
        "mpiexec",
        "--output",
        str(out),
    ]
    assert bench_realstack.main(argv) == 0
    quick, full, given = seen
    assert (quick.reps, quick.sims, quick.nworkers, quick.tasks, quick.cold_reps) == (1, 100, 100, 5, 1)
    assert (full.reps, full.sims, full.nworkers, full.batched_nworkers, full.batch_size) == (5, 1000, 1000, 1000, 16)
    assert (full.tasks, full.cold_reps, full.launcher, full.wait, full.engine_workers) == (20, 5, "srun", 900.0, 2)
    assert (given.sims, given.nworkers, given.batched_nworkers, given.cold_reps, given.launcher) == (
        300,
        300,
        64,
        0,
        "mpiexec",
    )
    assert json.loads(out.read_text())["command"] == "python -m benchmarks.bench_realstack " + " ".join(argv)


def test_realstack_is_opt_in_and_says_why_it_skips(tmp_path, monkeypatch):
    assert "realstack" in suite.STEPS and "realstack" not in suite.DEFAULT_STEPS
    monkeypatch.setattr(bench_realstack, "unavailable", lambda: "RabbitMQ is not running (bash .ci/rabbitmq.sh up)")
    monkeypatch.setenv("PATH", os.environ["PATH"])  # the suite puts its interpreter's folder first on PATH
    assert suite.main(["--quick", "--only", "realstack", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["benchmarks"]["realstack"]["skipped"] == "RabbitMQ is not running (bash .ci/rabbitmq.sh up)"


def test_a_failing_step_makes_the_suite_exit_1_and_a_skipped_one_0(tmp_path, monkeypatch):
    def step(name, quick, out):
        if name == "payload":
            raise RuntimeError("payload broke")
        (out / f"{name}.json").write_text(json.dumps({"skipped": f"{name} not here (quick={quick})"}))
        return 0

    monkeypatch.setattr(suite, "run_step", step)
    monkeypatch.setenv("PATH", os.environ["PATH"])  # the suite puts its interpreter's folder first on PATH
    assert suite.main(["--quick", "--only", "slurm", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["benchmarks"]["slurm"]["skipped"] == "slurm not here (quick=True)"
    assert results["meta"]["command"] == f"python -m benchmarks --quick --only slurm --out {tmp_path}"
    assert suite.main(["--only", "slurm,payload", "--out", str(tmp_path)]) == 1
    results = json.loads((tmp_path / "results.json").read_text())
    assert "RuntimeError: payload broke" in results["benchmarks"]["payload"]["error"]
    assert results["meta"]["quick"] is False


def test_python_dash_m_runs_a_benchmark_module(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_multinode", "--wait", "soon"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Invalid value for '--wait': 'soon' is not a valid float" in proc.stderr


def test_benchmarks_and_examples_set_only_the_packing_option_the_docs_name():
    """The docs pack tasks with ``slots_per_node`` alone; benchmarks and examples must do as the docs say."""
    files = sorted((ROOT / "benchmarks").glob("*.py")) + sorted((ROOT / "examples").rglob("*.py"))
    setting = [str(p.relative_to(ROOT)) for p in files if "max_workers_per_block" in p.read_text()]
    assert setting == [], f"these set max_workers_per_block, which the docs do not tell users to set: {setting}"
