"""The README's first command: ``libe-gc demo`` runs all three kinds of task on the local endpoint."""

import os
import subprocess
import sys

from click.testing import CliRunner

from bundle.cli import main


def test_demo_runs_python_shell_and_mpi_tasks():
    env = dict(os.environ, COLUMNS="200")
    proc = subprocess.run(
        [sys.executable, "-m", "bundle.cli", "demo"], capture_output=True, text=True, timeout=240, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.count(" ok ") == 3, out
    assert "sum_of_squares=332833500" in out
    assert "Hello, World! I am process 0 of 2" in out and "Hello, World! I am process 1 of 2" in out


def test_demo_refuses_bad_option_early():
    result = CliRunner().invoke(main, ["demo", "--option", "max_workers=3"])
    assert result.exit_code != 0
    assert "no option 'max_workers'" in result.output


def test_templates_list():
    result = CliRunner().invoke(main, ["templates", "list"])
    assert result.exit_code == 0
    assert "local" in result.output
