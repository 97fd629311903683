"""Jobscripts: shellcheck clean, and the PBS scripts render and load their endpoint config (PBS cannot run here)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bundle.endpoints.templates import get_template, jobscripts_dir, list_templates

SCRIPTS = sorted(p for p in jobscripts_dir().rglob("*") if p.suffix in (".sbatch", ".qsub"))


def _shellcheck() -> str:
    found = shutil.which("shellcheck", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]))
    if not found:
        pytest.fail("shellcheck not found: install the test extras (pip install -e '.[test]')")
    return found


def test_every_jobscript_exists_and_is_shellcheck_clean():
    names = {f"{p.parent.name}/{p.name}" for p in SCRIPTS}
    assert names == {"slurm/ensemble.sbatch", "slurm/endpoint.sbatch", "pbs/ensemble.qsub", "pbs/endpoint.qsub"}
    # style severity and up: unquoted expansions (SC2086, SC2046) are among them
    out = subprocess.run([_shellcheck(), "--severity=style", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def _simple_options(name: str) -> str:
    """Options of the template's first example whose values hold no whitespace (LIBE_GC_OPTIONS splits on it)."""
    examples = sorted((get_template(name).path / "examples").glob("*.json"))
    opts = json.loads(examples[0].read_text())
    return " ".join(
        f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in opts.items() if " " not in str(v)
    )


PBS_TEMPLATES = [n for n in list_templates() if n in ("local", "pbs", "polaris", "aurora")]


@pytest.mark.parametrize("template", PBS_TEMPLATES)
def test_pbs_endpoint_dry_run_renders_and_loads(template, tmp_path):
    env = dict(
        os.environ,
        LIBE_GC_DRY_RUN="1",
        LIBE_GC_TEMPLATE=template,
        LIBE_GC_OPTIONS=_simple_options(template),
        LIBE_GC_PYTHON=sys.executable,
        PBS_JOBID="1234.pbs01",
        PBS_O_WORKDIR=str(tmp_path),
    )
    out = subprocess.run(
        ["bash", str(jobscripts_dir() / "pbs" / "endpoint.qsub")], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"dry run: template '{template}', endpoint 'libe-gc-1234'" in out.stdout
    assert "engine:" in out.stdout and "globus_compute_endpoint.cli start libe-gc-1234" in out.stdout


def test_pbs_scripts_refuse_missing_or_malformed_input(tmp_path):
    base = dict(os.environ, LIBE_GC_PYTHON=sys.executable, PBS_O_WORKDIR=str(tmp_path))
    ens = subprocess.run(
        ["bash", str(jobscripts_dir() / "pbs" / "ensemble.qsub")], env=base, capture_output=True, text=True, timeout=60
    )
    assert ens.returncode == 2 and "set LIBE_GC_SCRIPT" in ens.stderr
    marker = Path(tmp_path) / "ran"
    bad = dict(base, LIBE_GC_DRY_RUN="1", LIBE_GC_OPTIONS=f"$(touch {marker})")
    out = subprocess.run(
        ["bash", str(jobscripts_dir() / "pbs" / "endpoint.qsub")], env=bad, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and "key=value" in out.stderr
    assert not marker.exists()
    name = dict(base, LIBE_GC_DRY_RUN="1", LIBE_GC_ENDPOINT="bad name;rm")
    out = subprocess.run(
        ["bash", str(jobscripts_dir() / "pbs" / "endpoint.qsub")], env=name, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and "endpoint name" in out.stderr
