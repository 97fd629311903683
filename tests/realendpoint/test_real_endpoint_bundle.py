"""Both modes of the bundle against a real endpoint daemon, with ``endpoint=<UUID>`` as a site user writes it.

The bundle builds its SDK clients itself (``globus_compute_sdk.Executor()`` creates a ``Client()``); the
``local_services`` environment (``GLOBUS_SDK_ENVIRONMENT=local``, ``GLOBUS_SDK_SERVICE_URL_AUTH``,
``GLOBUS_COMPUTE_CLIENT_ID`` / ``_SECRET``) is all it takes to point it at the stand-in: no code changes.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import typing as t

import numpy as np
import pytest
from libensemble import Ensemble as LibEnsemble
from libensemble.gen_funcs.sampling import uniform_random_sample
from libensemble.specs import ExitCriteria, GenSpecs, LibeSpecs, SimSpecs

from bundle import Ensemble, GCOnlySpecs, GlobusComputeExecutor
from bundle.endpoints.session import GCSession
from tests.ensembles import executor_libe_specs, given_rows
from tests.realendpoint import remote, sims
from tests.realendpoint.conftest import ROOT, RealEndpoint

PROBE_SOURCE = ROOT / "tests" / "executor" / "apps" / "mpi_probe.c"


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The MPI probe app (prints one ``rank=`` line per rank), built with MPICH's ``mpicc``."""
    mpicc = shutil.which("mpicc", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    if mpicc is None:
        pytest.fail("mpicc not found: install the test extras (pip install -e '.[mpich,test]')")
    out = tmp_path_factory.mktemp("probe") / "mpi_probe"
    subprocess.run([mpicc, "-O2", "-o", str(out), str(PROBE_SOURCE)], check=True, capture_output=True)
    return out


@pytest.fixture
def clean_session(local_services: dict[str, str]) -> t.Iterator[None]:
    """The bundle's cached SDK executors are shut down after each test."""
    yield
    GCSession.clear(wait=True)


def test_executor_mode_sims_launch_two_rank_mpi_apps_through_the_daemon(
    real_endpoint: RealEndpoint,
    clean_session: None,
    probe: pathlib.Path,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    exctr = GlobusComputeExecutor(
        endpoint=real_endpoint.endpoint_id,
        template="local",
        user_endpoint_config={"slots_per_node": 2, "max_workers_per_block": 2},
    )
    exctr.register_app(full_path=str(probe), app_name="probe")
    n = 4
    ensemble = LibEnsemble(
        executor=exctr,
        libE_specs=executor_libe_specs(2),
        sim_specs=SimSpecs(sim_f=sims.two_rank_probe, inputs=["x", "sim_id"], outputs=[("ranks", int)]),
        exit_criteria=ExitCriteria(sim_max=n),
        H0=given_rows(n),
    )
    H, _, flag = ensemble.run()
    assert flag == 0
    done = H[H["sim_ended"]]
    assert len(done) == n
    np.testing.assert_array_equal(done["ranks"], 2)
    # The launches went through the SDK Executor of the endpoint UUID, not a local endpoint.
    from globus_compute_sdk import Executor as SDKExecutor

    cached = list(GCSession._executors.values())
    assert cached and all(isinstance(e, SDKExecutor) for e in cached)
    assert {str(e.endpoint_id) for e in cached} == {real_endpoint.endpoint_id}


def test_gconly_ensemble_runs_sims_on_the_daemons_user_endpoint(
    real_endpoint: RealEndpoint, clean_session: None, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    n = 12
    ensemble = Ensemble(
        libE_specs=LibeSpecs(nworkers=4),
        sim_specs=SimSpecs(
            sim_f=remote.sphere,
            inputs=["x"],
            outputs=[("f", float), ("uep", "U120")],
            globus_compute_endpoint=real_endpoint.endpoint_id,
        ),
        gen_specs=GenSpecs(
            gen_f=uniform_random_sample,
            outputs=[("x", float, (2,))],
            user={"gen_batch_size": n, "lb": -np.ones(2), "ub": np.ones(2)},
        ),
        exit_criteria=ExitCriteria(sim_max=n),
        gc_specs=GCOnlySpecs(
            template="local",
            user_endpoint_config={
                "engine_type": "GlobusComputeEngine",
                "max_workers_per_node": 2,
                # the sim lives in this repository's tests: the workers import it from there
                "worker_init": f"export PYTHONPATH={ROOT}",
            },
            result_timeout=300,
            remote_workdir=str(tmp_path / "endpoint-runs"),  # the sims' folder on the endpoint (here the same disk)
        ),
    )
    ensemble.add_random_streams()
    H, _, flag = ensemble.run()
    assert flag == 0
    assert (tmp_path / "endpoint-runs").is_dir(), "the sims ran under gc_specs.remote_workdir"
    done = H[H["sim_ended"]]
    assert len(done) == n
    np.testing.assert_allclose(done["f"], np.sum(done["x"] ** 2, axis=1))
    ueps = set(done["uep"].tolist())
    assert len(ueps) == 1 and next(iter(ueps)).startswith(f"uep.{real_endpoint.endpoint_id}.")
