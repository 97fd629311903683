"""Sims written for MPIExecutor, run unchanged through Ensemble with GlobusComputeExecutor."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil
import pytest
from libensemble import Ensemble
from libensemble.alloc_funcs.give_sim_work_first import give_sim_work_first
from libensemble.executors.executor import Executor
from libensemble.executors.mpi_executor import MPIExecutor
from libensemble.gen_funcs.sampling import uniform_random_sample
from libensemble.specs import AllocSpecs, ExitCriteria, GenSpecs, LibeSpecs, SimSpecs
from libensemble.tools import add_unique_random_streams

from bundle import Ensemble as BundleEnsemble
from bundle import GlobusComputeExecutor
from bundle.endpoints.local import reaper
from bundle.executor.remote import MARKER_ENV
from tests.ensembles import executor_libe_specs, given_rows
from tests.executor import sims

SIM_MAX = 6


def _forces_ensemble(exctr: Executor, comms: str, workdir: pathlib.Path, num_procs: int = 2) -> np.ndarray:
    ens = Ensemble(
        executor=exctr,
        libE_specs=LibeSpecs(
            comms=comms,
            nworkers=2,
            gen_on_manager=True,
            sim_dirs_make=True,
            ensemble_dir_path=workdir / "ensemble",
            disable_resource_manager=isinstance(exctr, GlobusComputeExecutor),
        ),
        sim_specs=SimSpecs(
            sim_f=sims.run_forces,
            inputs=["x"],
            outputs=[("energy", float)],
            user={"num_procs": num_procs},
        ),
        gen_specs=GenSpecs(
            gen_f=uniform_random_sample,
            outputs=[("x", float, (1,))],
            user={"gen_batch_size": SIM_MAX, "lb": np.array([100.0]), "ub": np.array([300.0])},
        ),
        alloc_specs=AllocSpecs(alloc_f=give_sim_work_first),
        exit_criteria=ExitCriteria(sim_max=SIM_MAX),
    )
    ens.persis_info = add_unique_random_streams({}, 3, seed=1234)
    H, _, flag = ens.run()
    assert flag == 0
    return H


def test_forces_history_identical_to_mpi_executor(forces_app, tmp_path, monkeypatch):
    """libEnsemble's forces sim, unchanged: the same history with MPIExecutor and GlobusComputeExecutor."""
    comms = "local"
    monkeypatch.chdir(tmp_path)
    mpi = MPIExecutor()
    mpi.register_app(full_path=str(forces_app), app_name="forces")
    h_mpi = _forces_ensemble(mpi, comms, tmp_path / "mpi")

    gce = GlobusComputeExecutor("local", user_endpoint_config={"slots_per_node": 2})
    gce.register_app(full_path=str(forces_app), app_name="forces")
    h_gc = _forces_ensemble(gce, comms, tmp_path / "gc")

    done_mpi, done_gc = h_mpi[h_mpi["sim_ended"]], h_gc[h_gc["sim_ended"]]
    assert len(done_mpi) == len(done_gc) == SIM_MAX
    order_mpi, order_gc = np.argsort(done_mpi["sim_id"]), np.argsort(done_gc["sim_id"])
    np.testing.assert_array_equal(done_mpi["x"][order_mpi], done_gc["x"][order_gc])
    assert np.all(np.isfinite(done_gc["energy"]))
    np.testing.assert_array_equal(done_mpi["energy"][order_mpi], done_gc["energy"][order_gc])
    # the app wrote forces.stat in each sim's own directory, where the sim read it
    stats = sorted((tmp_path / "gc" / "ensemble").glob("sim*/forces.stat"))
    assert len(stats) == SIM_MAX
    outs = sorted((tmp_path / "gc" / "ensemble").glob("sim*/libe_task_forces_*.out"))
    assert len(outs) == SIM_MAX and all(p.stat().st_size > 0 for p in outs)


def test_threads_comms_each_worker_keeps_its_identity(mpi_probe, tmp_path, monkeypatch):
    """On threads comms the workers share one executor object: each still submits as itself."""
    monkeypatch.chdir(tmp_path)
    exctr = GlobusComputeExecutor("local", user_endpoint_config={"slots_per_node": 2})
    exctr.register_app(full_path=str(mpi_probe), app_name="probe")
    n = 8
    ens = Ensemble(
        executor=exctr,
        libE_specs=executor_libe_specs(3),
        sim_specs=SimSpecs(
            sim_f=sims.run_probe, inputs=["x", "sim_id"], outputs=[("ranks", int), ("same_worker", bool)]
        ),
        exit_criteria=ExitCriteria(sim_max=n),
        H0=given_rows(n),
    )
    H, _, flag = ens.run()
    assert flag == 0
    done = H[H["sim_ended"]]
    assert len(done) == n
    np.testing.assert_array_equal(done["ranks"], 1 + done["sim_id"] % 2)
    assert done["same_worker"].all()
    assert len(set(done["sim_worker"])) > 1, "the sims should have been spread over several workers"


def test_threads_comms_with_sim_dirs_each_sim_reads_its_own_output(forces_app, tmp_path, monkeypatch):
    """The forces example's set-up on threads comms: each sim's task runs in, and the sim reads, its own sim dir.

    libEnsemble's threaded workers change directory into their sim dirs; the process has one working
    directory, so without care a task (and the sim reading ``forces.stat``) lands in another sim's folder and
    the relative ``ensemble_dir_path`` nests (``ensemble/sim0001/ensemble/sim0002``).
    """
    monkeypatch.chdir(tmp_path)
    exctr = GlobusComputeExecutor("local", user_endpoint_config={"slots_per_node": 2})
    exctr.register_app(full_path=str(forces_app), app_name="forces")
    n = 8
    H0 = given_rows(n)
    H0["x"][:, 0] = 100 + 20 * np.arange(n)  # particles (and the app's random seed): a different energy per sim
    ens = Ensemble(
        executor=exctr,
        libE_specs=LibeSpecs(
            comms="threads",
            nworkers=3,
            gen_on_manager=True,
            sim_dirs_make=True,
            ensemble_dir_path="./ensemble",
            disable_resource_manager=True,
        ),
        sim_specs=SimSpecs(sim_f=sims.run_forces, inputs=["x"], outputs=[("energy", float)], user={"num_procs": 1}),
        exit_criteria=ExitCriteria(sim_max=n),
        H0=H0,
    )
    H, _, flag = ens.run()
    assert flag == 0
    done = H[H["sim_ended"]]
    assert len(done) == n and np.all(np.isfinite(done["energy"])), done[["sim_id", "energy"]]
    ensemble = tmp_path / "ensemble"
    assert sorted(p.name for p in ensemble.iterdir()) == [f"sim{i:04d}" for i in range(n)]
    nested = [str(p.relative_to(tmp_path)) for p in ensemble.rglob("*") if p.is_dir() and p.parent != ensemble]
    assert nested == [], f"sim directories nested in each other: {nested}"
    for row in done:
        sim_dir = ensemble / f"sim{int(row['sim_id']):04d}"
        (out,) = sim_dir.glob("libe_task_forces_*.out")  # this sim's task ran here, and only it
        assert f"Particles: {int(row['x'][0])}" in out.read_text(), (sim_dir, out.read_text()[:200])
        assert float((sim_dir / "forces.stat").read_text().split()[-1]) == row["energy"], sim_dir


def test_bundle_ensemble_refuses_a_sim_return_with_other_fields(mpi_probe, tmp_path, monkeypatch):
    """Executor mode through bundle.Ensemble: a return whose fields differ from sim_specs["out"] stops the run.

    libEnsemble's own Ensemble would add ``F`` to the history as a new column and leave ``energy`` at 0.
    """
    monkeypatch.chdir(tmp_path)
    exctr = GlobusComputeExecutor("local", user_endpoint_config={"slots_per_node": 2})
    exctr.register_app(full_path=str(mpi_probe), app_name="probe")
    specs = SimSpecs(sim_f=sims.run_with_other_fields, inputs=["x"], outputs=[("energy", float)])
    ens = BundleEnsemble(
        executor=exctr, libE_specs=executor_libe_specs(2), sim_specs=specs, exit_criteria=ExitCriteria(sim_max=2)
    )
    ens.H0 = given_rows(2)
    with pytest.raises(
        Exception, match=r"fields \[\('F', float32\)\], but sim_specs\['out'\] declares \[\('energy', float64\)\]"
    ):
        ens.run()
    assert ens.sim_specs is specs  # the caller's specs are left as they were


def test_manager_kill_reaches_a_running_task(mpi_probe, tmp_path, monkeypatch):
    """wallclock_max ends the run while a sim's app runs: the manager's signal stops the app."""
    monkeypatch.chdir(tmp_path)
    exctr = GlobusComputeExecutor("local", user_endpoint_config={"slots_per_node": 2})
    exctr.register_app(full_path=str(mpi_probe), app_name="probe")
    H0 = given_rows(2)
    H0["x"] = [[600.0], [600.0]]
    ens = Ensemble(
        executor=exctr,
        libE_specs=executor_libe_specs(2, tmp_path / "ensemble", comms="local"),
        sim_specs=SimSpecs(sim_f=sims.run_until_told, inputs=["x"], outputs=[("energy", float)]),
        exit_criteria=ExitCriteria(sim_max=2, wallclock_max=20),
        H0=H0,
    )
    start = time.monotonic()
    ens.run()
    elapsed = time.monotonic() - start
    assert elapsed < 120, f"the long sims should have been stopped, the run took {elapsed:.0f} s"
    records = [p.read_text().split() for p in (tmp_path / "ensemble").glob("sim*/task.txt")]
    assert len(records) == 2 and {state for _, state in records} == {"USER_KILLED"}, records
    for marker, _ in records:
        end = time.monotonic() + 15
        while reaper.find_with_env(MARKER_ENV, marker) and time.monotonic() < end:
            time.sleep(0.2)
        assert not reaper.find_with_env(MARKER_ENV, marker), "a killed sim's app is still running"


MPI_COMMS_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from libensemble import Ensemble
    from libensemble.gen_funcs.sampling import uniform_random_sample
    from libensemble.specs import ExitCriteria, GenSpecs, LibeSpecs, SimSpecs
    from libensemble.tools import add_unique_random_streams
    from bundle import GlobusComputeExecutor
    from tests.executor import sims

    exctr = GlobusComputeExecutor("local", user_endpoint_config={"max_workers_per_block": 1})
    exctr.register_app(full_path=sys.argv[1], app_name="forces")
    ens = Ensemble(
        executor=exctr,
        libE_specs=LibeSpecs(comms="mpi", gen_on_manager=True, sim_dirs_make=True, disable_resource_manager=True),
        sim_specs=SimSpecs(sim_f=sims.run_forces, inputs=["x"], outputs=[("energy", float)],
                           user={"num_procs": 1}),
        gen_specs=GenSpecs(gen_f=uniform_random_sample, outputs=[("x", float, (1,))],
                           user={"gen_batch_size": 3, "lb": np.array([100.0]), "ub": np.array([200.0])}),
        exit_criteria=ExitCriteria(sim_max=3),
    )
    ens.persis_info = add_unique_random_streams({}, 3, seed=7)
    H, _, flag = ens.run()
    if ens.is_manager:
        done = H[H["sim_ended"]]
        print("SIMS", len(done), "FINITE", int(np.isfinite(done["energy"]).sum()), "FLAG", flag)
    """
)


def test_mpi_comms(forces_app, tmp_path):
    """libEnsemble on mpi comms (manager + one worker rank): the worker's executor starts its own engine."""
    root = pathlib.Path(__file__).resolve().parents[2]
    script = tmp_path / "run_mpi_comms.py"
    script.write_text(MPI_COMMS_SCRIPT)
    mpiexec = pathlib.Path(sys.executable).parent / "mpiexec"
    env = {"PYTHONPATH": str(root), "PATH": f"{mpiexec.parent}:/usr/bin:/bin"}
    out = subprocess.run(
        [str(mpiexec), "-n", "2", sys.executable, str(script), str(forces_app)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "SIMS 3 FINITE 3 FLAG 0" in out.stdout, out.stdout[-3000:]
    # the worker rank's engine (interchange, worker pool, ranks) ran in tmp_path and must be gone with it
    end = time.monotonic() + 15
    while (left := _procs_under(tmp_path)) and time.monotonic() < end:
        time.sleep(0.3)
    assert not left, left


def _procs_under(folder: pathlib.Path) -> list[str]:
    found = []
    for proc in psutil.process_iter(["cwd", "cmdline"]):
        cwd = proc.info.get("cwd") or ""
        if cwd.startswith(str(folder)):
            found.append(" ".join(proc.info.get("cmdline") or []))
    return found
