"""Every example runs as written on the local endpoint (small sizes), in a fresh directory."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def _run(script: pathlib.Path, *args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run(
        [sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize("gpus", [0, 4], ids=["cpu", "one-gpu-per-rank"])
def test_forces_executor_mode(tmp_path, gpus):
    extra = ["--gpus-per-node", str(gpus)] if gpus else []
    out = _run(EXAMPLES / "forces" / "run_forces.py", "--sim-max", "4", "--nworkers", "2", *extra, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "4 sims, 4 with an energy; exit flag 0" in out.stdout
    (history,) = tmp_path.glob("run_forces_history_*.npy")
    H = np.load(history)
    assert H["sim_ended"].sum() == 4 and np.isfinite(H["energy"][H["sim_ended"]]).all()
    assert len(list((tmp_path / "ensemble_forces").glob("sim*/forces.stat"))) == 4


def test_six_hump_camel_gconly(tmp_path):
    out = _run(EXAMPLES / "six_hump_camel" / "run_gconly.py", "--sim-max", "40", "--nworkers", "4", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "40 sims, 0 failed" in out.stdout
    (history,) = tmp_path.glob("run_gconly_history_*.npy")
    H = np.load(history)
    done = H[H["sim_ended"]]
    x0, x1 = done["x"][:, 0], done["x"][:, 1]
    expect = (4 - 2.1 * x0**2 + x0**4 / 3) * x0**2 + x0 * x1 + (-4 + 4 * x1**2) * x1**2
    np.testing.assert_allclose(done["f"], expect)


def test_six_hump_camel_gconly_batched(tmp_path):
    out = _run(EXAMPLES / "six_hump_camel" / "run_gconly.py", "--sim-max", "24", "--batch-size", "4", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "24 sims, 0 failed" in out.stdout


def test_gest_api_simulator(tmp_path):
    out = _run(EXAMPLES / "gest_api" / "run_gest_api.py", "--sim-max", "12", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "12 sims; best f" in out.stdout and "exit flag 0" in out.stdout
    assert "at x0=0.000, x1=0.000" not in out.stdout, "the generator's points did not reach the simulator"
