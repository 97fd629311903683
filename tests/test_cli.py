"""The ``libe-gc`` command line: demo, smoke run, templates, endpoint configs, doctor."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bundle.cli import main
from bundle.endpoints.templates import get_template, list_templates


def test_smoke_runs_python_shell_and_mpi_tasks():
    env = dict(os.environ, COLUMNS="200")
    proc = subprocess.run(
        [sys.executable, "-m", "bundle.cli", "smoke"], capture_output=True, text=True, timeout=240, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.count(" ok ") == 3, out
    assert "sum_of_squares=332833500" in out
    assert "Hello, World! I am process 0 of 2" in out and "Hello, World! I am process 1 of 2" in out


def test_demo_runs_a_complete_ensemble_with_summary_and_timeline(tmp_path):
    env = dict(os.environ, COLUMNS="200")
    proc = subprocess.run(
        [sys.executable, "-m", "bundle.cli", "demo", "--sims", "6", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "libe-gc demo: summary" in proc.stdout and "executor mode" in proc.stdout
    import numpy as np

    H = np.load(tmp_path / "out" / "history_executor_mode.npy")
    done = H[H["sim_ended"]]
    assert len(done) == 6 and np.isfinite(done["f"]).all()
    from bundle.cli.demo.objective import smoothed

    # the MPI app's answer (2 ranks, reduced) equals the one-process computation
    for row in done:
        assert abs(row["f"] - smoothed(*row["x"])) < 1e-9
    G = np.load(tmp_path / "out" / "history_gconly_mode.npy")
    gdone = G[G["sim_ended"]]
    assert len(gdone) == 6 and "GC-only mode" in proc.stdout
    # same generator seed, same objective: both modes evaluate the same points to the same values
    np.testing.assert_allclose(np.sort(gdone["f"]), np.sort(done["f"]), rtol=1e-12)
    png = (tmp_path / "out" / "timeline.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_demo_refuses_bad_option_early(tmp_path):
    out = tmp_path / "never-made"
    result = CliRunner().invoke(main, ["demo", "--option", "max_workers=3", "--out", str(out)])
    assert result.exit_code != 0
    assert not out.exists(), "nothing may be created before the options are checked"
    assert "no option 'max_workers'" in result.output


def test_templates_list():
    result = CliRunner().invoke(main, ["templates", "list"])
    assert result.exit_code == 0
    for name in ("local", "slurm", "pbs", "perlmutter", "frontier", "polaris", "aurora"):
        assert f"\n{name} " in result.output, result.output


def test_templates_show_lists_every_option_with_default_and_allowed_values():
    result = CliRunner().invoke(main, ["templates", "show", "polaris"])
    assert result.exit_code == 0, result.output
    for option in get_template("polaris").schema["properties"]:
        assert f"\n  {option} (" in result.output, option
    assert 'queue (default "debug"; string matching' in result.output
    assert "account (required;" in result.output
    assert "examples/mpi.json" in result.output


def test_templates_show_unknown_name_lists_templates():
    result = CliRunner().invoke(main, ["templates", "show", "summit"])
    assert result.exit_code != 0
    assert "no endpoint template 'summit'" in result.output and "perlmutter" in result.output


@pytest.mark.parametrize("name", list_templates())
def test_endpoint_render_prints_yaml_that_loads(name, tmp_path):
    example = sorted((get_template(name).path / "examples").glob("*.json"))[0]
    result = CliRunner().invoke(main, ["endpoint", "render", name, "-o", str(example)])
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.stdout)
    assert doc["engine"]["type"] in ("GlobusMPIEngine", "GlobusComputeEngine")
    assert f"# loaded: {doc['engine']['type']} with {doc['engine']['provider']['type']}" in result.stderr


def test_endpoint_render_option_overrides_file_and_bad_option_is_named(tmp_path):
    opts = tmp_path / "o.json"
    opts.write_text(json.dumps({"partition": "debug"}))
    result = CliRunner().invoke(main, ["endpoint", "render", "slurm", "-o", str(opts), "--option", "partition=long"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["engine"]["provider"]["partition"] == "long"
    result = CliRunner().invoke(main, ["endpoint", "render", "slurm", "--option", "partition=a b"])
    assert result.exit_code != 0
    assert "option 'partition' is invalid" in result.output


def test_endpoint_render_says_which_interface_it_stood_in_for():
    result = CliRunner().invoke(main, ["endpoint", "render", "slurm", "--option", "network_interface=nosuch0"])
    assert result.exit_code == 0, result.output
    assert "network interface 'nosuch0' is not on this machine" in result.stderr


def _render_user_config(ep_name, options, env):
    return subprocess.run(
        [str(Path(sys.executable).parent / "globus-compute-endpoint"), "render-user-config", "-e", ep_name, "-o", "-"],
        input=json.dumps(options),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize("name", list_templates())
def test_endpoint_configure_yields_an_endpoint_globus_compute_accepts(name, tmp_path):
    env = dict(os.environ, GLOBUS_COMPUTE_USER_DIR=str(tmp_path / "gc"))
    args = ["endpoint", "configure", f"ep-{name}", "--template", name, "--contact-email", "admin@example.org"]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    ep_dir = tmp_path / "gc" / f"ep-{name}"
    assert (ep_dir / "user_config_template.yaml.j2").read_text() == get_template(name).template_path.read_text()
    assert json.loads((ep_dir / "user_config_schema.json").read_text()) == get_template(name).schema
    example = json.loads(sorted((get_template(name).path / "examples").glob("*.json"))[0].read_text())
    proc = _render_user_config(f"ep-{name}", example, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rendered = proc.stdout.split("Rendered user config:", 1)[-1]
    assert yaml.safe_load(rendered) == yaml.safe_load(get_template(name).render(example))
    # and the endpoint's own renderer refuses what the bundle refuses
    proc = _render_user_config(f"ep-{name}", {**example, "no_such_option": 1}, env)
    assert proc.returncode != 0


def test_endpoint_configure_options_become_endpoint_defaults(tmp_path):
    env = dict(os.environ, GLOBUS_COMPUTE_USER_DIR=str(tmp_path / "gc"))
    args = ["endpoint", "configure", "frontier-ep", "--template", "frontier", "--option", "account=abc123"]
    args += ["--contact-email", "admin@example.org"]  # needed when run as root
    result = CliRunner().invoke(main, [*args, "--option", "nodes_per_block=4"], env=env)
    assert result.exit_code == 0, result.output
    proc = _render_user_config("frontier-ep", {}, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    provider = yaml.safe_load(proc.stdout.split("Rendered user config:", 1)[-1])["engine"]["provider"]
    assert (provider["account"], provider["nodes_per_block"], provider["partition"]) == ("abc123", 4, "batch")
    # users may still override a default
    proc = _render_user_config("frontier-ep", {"nodes_per_block": 8}, env)
    assert (
        yaml.safe_load(proc.stdout.split("Rendered user config:", 1)[-1])["engine"]["provider"]["nodes_per_block"] == 8
    )


def test_endpoint_configure_refuses_bad_option_before_creating_anything(tmp_path):
    env = dict(os.environ, GLOBUS_COMPUTE_USER_DIR=str(tmp_path / "gc"))
    args = ["endpoint", "configure", "bad-ep", "--template", "slurm", "--option", "account=$(id)"]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code != 0
    assert "option 'account' is invalid" in result.output
    assert not (tmp_path / "gc" / "bad-ep").exists()


def test_doctor_reports_each_check_and_fails_on_a_bad_option():
    ok = CliRunner().invoke(main, ["doctor", "--template", "local", "--option", "slots_per_node=2"])
    assert ok.exit_code == 0, ok.output
    for name in ("globus-compute-sdk", "launcher mpiexec", "scheduler", "credentials", "template local"):
        assert name in ok.output
    bad = CliRunner().invoke(main, ["doctor", "--template", "local", "--option", "slots_per_node=0"])
    assert bad.exit_code == 1 and "slots_per_node" in bad.output and "1 check(s) failed" in bad.output
