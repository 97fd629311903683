"""``globus-compute-endpoint stop`` while both modes have sims running on the Slurm endpoint: what the user sees.

The stop is the last thing that happens to the folder's shared Slurm endpoint (this module sorts after the other
modules that use it): both user endpoints of those modules, and their blocks, are still up, so the sims start at
once.  The daemon stops its user endpoints, which cancel their Slurm jobs; the tasks running there never answer.
The service reports the endpoint offline (the daemon's last heartbeat says it is shutting down), and the bundle,
asking while tasks wait, ends both runs ``offline_timeout`` seconds later with the error that says so: the GC-only
calling script (a process of its own, as a user runs it) with ``EndpointUnavailableError``, the executor-mode
ensemble through the sims (their tasks ``FAILED`` with ``EndpointOfflineError``, the next ``submit`` raising it).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import threading
import time
import typing as t

import numpy as np
import pytest
from libensemble import Ensemble
from libensemble.specs import ExitCriteria, SimSpecs

from bundle import GlobusComputeExecutor
from bundle.endpoints.session import GCSession
from bundle.errors import EndpointOfflineError
from tests.ensembles import executor_libe_specs
from tests.realendpoint.conftest import ROOT, RealEndpoint
from tests.realendpoint.test_real_endpoint_slurm import MPI_CONFIG, node_probe
from tests.reliability import resume_helpers as rh
from tests.slurm import node_sims
from tests.slurm.conftest import wait_no_jobs

__all__ = ["node_probe"]

pytestmark = pytest.mark.timeout(600)

OFFLINE_TIMEOUT = 5.0
"""How long both runs give an endpoint reported offline (the default is 120 s)."""
BOUND_S = 90.0
"""Both runs end within this many seconds of the stop command (its own 10 s grace period included)."""


def _rows(n: int) -> np.ndarray:
    """``H0`` of ``n`` one-node sims, not yet started."""
    H0 = np.zeros(n, dtype=[("x", float, (1,)), ("sim_id", int), ("sim_started", bool), ("nodes", int)])
    H0["sim_id"] = np.arange(n)
    H0["nodes"] = 1
    return H0


def test_stopping_the_endpoint_mid_run_ends_both_modes_with_a_clear_error(
    slurm_endpoint: RealEndpoint,
    local_services: dict[str, str],
    node_probe: pathlib.Path,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    gconly_dir, marks = tmp_path / "gconly", tmp_path / "marks"
    gconly_dir.mkdir()
    marks.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
    cmd = [sys.executable, "-m", "tests.realendpoint.resume_driver", slurm_endpoint.endpoint_id, str(gconly_dir)]
    cmd += ["40", "--sleep", "300", "--offline-timeout", str(OFFLINE_TIMEOUT)]
    with (gconly_dir / "out.txt").open("wb") as out:
        driver = subprocess.Popen(cmd, cwd=gconly_dir, env=env, stdout=out, stderr=subprocess.STDOUT)
    stopped: dict[str, t.Any] = {}

    def stop_once_executor_sims_run() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not list(marks.iterdir()):
            time.sleep(0.2)
        stopped["at"] = time.monotonic()
        stopped["result"] = slurm_endpoint.stop()
        stopped["took"] = time.monotonic() - stopped["at"]

    stopper = threading.Thread(target=stop_once_executor_sims_run, name="stopper")
    try:
        # First the GC-only script's sims run on the endpoint ...
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None and not rh.read_executions(gconly_dir):
            time.sleep(0.2)
        assert driver.poll() is None and rh.read_executions(gconly_dir), (gconly_dir / "out.txt").read_text()
        # ... then the executor-mode ensemble starts, and the endpoint is stopped once its sims run too.
        exctr = GlobusComputeExecutor(
            endpoint=slurm_endpoint.endpoint_id,
            template="slurm",
            user_endpoint_config=dict(MPI_CONFIG),
            offline_timeout=OFFLINE_TIMEOUT,
        )
        exctr.register_app(str(node_probe), app_name="probe")
        ensemble = Ensemble(
            executor=exctr,
            libE_specs=executor_libe_specs(2, tmp_path / "ensemble"),
            sim_specs=SimSpecs(
                sim_f=node_sims.span_task,
                inputs=["sim_id", "nodes"],
                outputs=[("state", "U20"), ("runline", "U300"), ("stdout", "U1000"), ("error", "U400")],
                user={"sleep": 300.0, "wait": 600, "mark_dir": str(marks)},
            ),
            exit_criteria=ExitCriteria(sim_max=4),
            H0=_rows(4),
        )
        stopper.start()
        with pytest.raises(Exception) as executor_mode:  # libEnsemble ends the run with the sim's exception
            ensemble.run()
        executor_s = time.monotonic() - stopped["at"]
        stopper.join(120)
        gconly_rc = driver.wait(BOUND_S)
        gconly_s = time.monotonic() - stopped["at"]
    finally:
        GCSession.clear(wait=False)
        if driver.poll() is None:
            driver.kill()
            driver.wait(10)
    assert stopped["result"].returncode == 0, stopped["result"].stdout + stopped["result"].stderr
    output = (gconly_dir / "out.txt").read_text()
    print(f"globus-compute-endpoint stop took {stopped['took']:.1f} s; after it began the executor-mode ensemble")
    print(f"ended in {executor_s:.1f} s with {type(executor_mode.value).__name__}: {executor_mode.value}")
    print(f"and the GC-only script in {gconly_s:.1f} s (exit code {gconly_rc}), its last lines:")
    print("\n".join(output.strip().splitlines()[-4:]))
    # GC-only: the calling script ends with the error naming the endpoint and the sims in flight; history saved.
    assert gconly_rc == 1
    assert f"EndpointUnavailableError: endpoint {slurm_endpoint.endpoint_id} went offline" in output, output
    assert f"offline_timeout={OFFLINE_TIMEOUT:g} s" in output and "Sims in flight: 4" in output
    assert "History saved in" in output and "gc_specs.resume=True" in output
    # Executor mode: the sims' tasks failed with EndpointOfflineError; the next submit raised it and ended the run.
    assert "EndpointOfflineError" in str(executor_mode.value) or isinstance(executor_mode.value, EndpointOfflineError)
    assert f"endpoint {slurm_endpoint.endpoint_id} went offline" in str(executor_mode.value)
    assert executor_s < BOUND_S and gconly_s < BOUND_S
    # The endpoint's Slurm jobs went with it.
    assert wait_no_jobs() == [], "the stopped endpoint left Slurm jobs"
