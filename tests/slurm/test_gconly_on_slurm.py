"""GC-only on ``local:slurm`` with the template's default engine (GlobusMPIEngine): sims run as Python tasks."""

from __future__ import annotations

import pytest

from bundle.endpoints.session import GCSession
from bundle.gconly import GCOnlySpecs
from bundle.gconly.launch import run_gconly
from tests.gconly import sims
from tests.gconly.helpers import REPO, uniform_specs

pytestmark = pytest.mark.usefixtures("no_jobs_left")

# Site options only (no engine_type): "lo" because the workers run on this machine.
OPTIONS = {
    "partition": "debug",
    "walltime": "00:10:00",
    "network_interface": "lo",
    "worker_init": f"export PYTHONPATH={REPO}${{PYTHONPATH:+:$PYTHONPATH}}",
}


def test_gconly_runs_on_slurm_template_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    specs = uniform_specs(sims.trivial, 2, 6, endpoint="local:slurm")
    try:
        res = run_gconly(
            specs["sim_specs"],
            specs["gen_specs"],
            specs["exit_criteria"],
            specs["persis_info"],
            specs["alloc_specs"],
            {"nworkers": 2},
            gc_specs=GCOnlySpecs(user_endpoint_config=OPTIONS, local_options={"start_timeout": 240}),
        )
        assert res.exit_flag == 0 and not res.sim_errors, res.sim_errors
        assert int(res.H["sim_ended"].sum()) == 6
        (ep,) = list(GCSession._executors.values())
        assert ep.user_endpoint_config == {**OPTIONS, "engine_type": "GlobusComputeEngine"}
        (host,) = list(ep._hosts.values())
        assert type(host.engine).__name__ == "GlobusComputeEngine"
        assert type(host.engine.executor.provider).__name__ == "SlurmProvider"
    finally:
        GCSession.clear()
