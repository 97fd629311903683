"""GC-only sims run where libEnsemble's workers would: the workflow directory, or libEnsemble's sim directories.

The endpoint's runner makes each sim's directory with libEnsemble's own ``EnsembleDirectory``; on the
local endpoint the layout is a stock run's, which the first test compares file by file.
"""

from __future__ import annotations

import os
import pathlib
import typing as t

import numpy as np
import pytest
from libensemble.libE import libE as stock_libE

from bundle.gconly import GCOnlyConfigError
from bundle.gconly.launch import run_gconly
from bundle.gconly.remote import make_sim_function
from bundle.gconly.simdirs import DEFAULT_REMOTE_WORKDIR, plan_sim_dirs
from tests.gconly import sims
from tests.gconly.helpers import PY_ENGINE, run_specs, run_with, uniform_specs


def _tree(root: pathlib.Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(
    "options",
    [
        {"sim_dirs_make": True, "use_worker_dirs": True},
        {"sim_dirs_make": True, "ensemble_dir_path": "./my_ensemble", "ensemble_copy_back": True},
        {"use_worker_dirs": True},
        {"sim_input_dir": "inputs"},
    ],
    ids=["worker-and-sim-dirs", "sim-dirs-copied-back", "worker-dirs", "sim-input-dir"],
)
def test_sim_directories_are_a_stock_runs(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, options: t.Any):
    n, sim_max = 2, 8
    trees = {}
    for mode in ("stock", "gconly"):
        here = tmp_path / mode
        (here / "inputs").mkdir(parents=True)
        (here / "inputs" / "scale.txt").write_text("3.0")
        (here / "scale.txt").symlink_to(here / "inputs" / "scale.txt")
        monkeypatch.chdir(here)
        libE_specs = dict(options)
        if "sim_input_dir" not in options:
            libE_specs["sim_dir_symlink_files"] = [str(here / "scale.txt")]
        specs = uniform_specs(sims.in_its_directory, n, sim_max, endpoint="" if mode == "stock" else "local")
        if mode == "stock":  # the generator on worker 1, as GC-only places it, and n sim workers
            H, _, flag = run_with(stock_libE, specs, {"nworkers": n + 1, "comms": "local", **libE_specs})
        else:
            H, _, flag, errors, _ = run_with(
                run_gconly, specs, {"nworkers": n, **libE_specs}, gc_specs={"user_endpoint_config": PY_ENGINE}
            )
            assert not errors
        assert flag == 0 and H["sim_ended"].sum() == sim_max
        assert np.allclose(H["f"][H["sim_ended"]], 3.0 * H["x"][H["sim_ended"], 0])
        root = here / str(options.get("ensemble_dir_path", "ensemble"))
        trees[mode] = _tree(root)
        for x_file in root.rglob("x.txt"):  # each sim ran in its own directory, named as a stock worker names it
            _, worker, cwd = x_file.read_text().split()
            assert pathlib.Path(cwd) == x_file.parent.resolve()
            if options.get("use_worker_dirs"):
                assert f"worker{worker}" in x_file.parts
        if options.get("ensemble_copy_back"):
            back = here / (root.name + "_back")
            assert _tree(back) == trees[mode] - {""}, "libEnsemble's copy back ran"
    assert trees["gconly"] == trees["stock"]
    assert os.getcwd() == str(tmp_path / "gconly")


def test_sims_run_in_the_workflow_directory_like_stock_workers(tmp_path: pathlib.Path, monkeypatch) -> None:
    """libEnsemble's mock_sim opens a history file by a path relative to the working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scale.txt").write_text("2.0")
    H, _, flag, errors, _ = run_specs(uniform_specs(sims.in_its_directory, 2, 6), 2, user_endpoint_config=PY_ENGINE)
    assert flag == 0 and not errors
    assert np.allclose(H["f"][H["sim_ended"]], 2.0 * H["x"][H["sim_ended"], 0])
    assert str(tmp_path) in (tmp_path / "x.txt").read_text()


def test_the_endpoints_runner_makes_the_sim_directory_and_changes_back(tmp_path: pathlib.Path, monkeypatch) -> None:
    base = tmp_path / "endpoint-home" / "runs"
    (tmp_path / "scale.txt").write_text("5.0")
    specs = {"sim_dirs_make": True, "use_worker_dirs": True, "sim_dir_copy_files": [tmp_path / "scale.txt"]}
    runner = make_sim_function(sims.in_its_directory, {"out": [("f", float)]}, {"base": str(base), "specs": specs})
    monkeypatch.chdir(tmp_path)
    H = np.zeros(2, dtype=[("x", float, (2,))])
    H["x"][:, 0] = [1.0, 2.0]
    out, _ = runner((H, {}, None, {"workerID": 3}), (3, [4, 5]))
    assert np.allclose(out["f"], [5.0, 10.0])
    assert (base / "ensemble" / "worker3" / "sim04-5" / "x.txt").exists() and os.getcwd() == str(tmp_path)
    out, _ = runner((H, {}, None, {"workerID": 3}), (3, [6]))
    assert (base / "ensemble" / "worker3" / "sim0006" / "scale.txt").read_text() == "5.0"


def test_a_remote_endpoint_runs_sims_under_its_own_base(tmp_path: pathlib.Path) -> None:
    wf = tmp_path / "driver"
    plain = plan_sim_dirs({}, wf, False, None)
    assert (plain.base, plain.specs) == (DEFAULT_REMOTE_WORKDIR, None)
    dirs = plan_sim_dirs({"sim_dirs_make": True, "ensemble_dir_path": wf / "ens"}, wf, False, "/scratch/me/run1")
    assert dirs.base == "/scratch/me/run1" and dirs.specs is not None
    assert dirs.specs["workflow_dir_path"] == "/scratch/me/run1" and dirs.specs["ensemble_dir_path"] == "ens"
    shared = plan_sim_dirs({"sim_input_dir": "/scratch/me/inputs"}, wf, False, "/scratch/me")
    assert shared.specs is not None and shared.specs["sim_input_dir"] == "/scratch/me/inputs"
    with pytest.raises(GCOnlyConfigError, match=r"sim_input_dir names .* on this machine"):
        plan_sim_dirs({"sim_input_dir": str(tmp_path)}, wf, False, None)
    with pytest.raises(GCOnlyConfigError, match="ensemble_copy_back copies the ensemble directory to this machine"):
        plan_sim_dirs({"sim_dirs_make": True, "ensemble_copy_back": True}, wf, False, None)
    with pytest.raises(GCOnlyConfigError, match="remote_workdir applies to remote endpoints"):
        plan_sim_dirs({}, wf, True, "/scratch/me")
