"""GlobusComputeExecutor on the slurm template: MPI apps in the Slurm job, and kill reaching them there."""

from __future__ import annotations

import pathlib
import time

import pytest

from bundle import GlobusComputeExecutor
from bundle.endpoints.local import reaper
from bundle.endpoints.session import GCSession
from bundle.executor.remote import MARKER_ENV

pytestmark = pytest.mark.usefixtures("no_jobs_left")

HERE = pathlib.Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    from tests.executor.conftest import build

    return build(HERE.parent / "executor" / "apps" / "mpi_probe.c", tmp_path_factory.mktemp("apps") / "probe")


def test_executor_launches_in_the_job_and_kill_stops_the_app_there(probe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = {"partition": "debug", "walltime": "00:10:00", "network_interface": "lo", "mpi_launcher": "srun"}
    exctr = GlobusComputeExecutor("local:slurm", user_endpoint_config=options, local_options={"run_dir": tmp_path})
    exctr.register_app(str(probe), app_name="probe")
    try:
        quick = exctr.submit(app_name="probe", app_args="hello", num_procs=2)
        quick.wait(timeout=180)
        assert quick.state == "FINISHED", quick.read_stderr()
        assert "size=2\n" in quick.read_stdout() and "argv=hello\n" in quick.read_stdout()
        assert quick.runline.startswith("srun --ntasks 2 --ntasks-per-node 2 ")

        slow = exctr.submit(app_name="probe", app_args="--sleep 300", num_procs=2)
        end = time.monotonic() + 120
        while time.monotonic() < end and len(reaper.find_with_env(MARKER_ENV, slow.marker)) < 2:
            time.sleep(0.2)
        assert len(reaper.find_with_env(MARKER_ENV, slow.marker)) >= 2, "the app's ranks should be running"
        slow.poll()
        assert slow.state == "RUNNING"
        slow.kill()
        assert slow.state == "USER_KILLED"
        assert not reaper.find_with_env(MARKER_ENV, slow.marker), "kill() returns once the app has ended"
        assert slow.future.result(timeout=60).returncode == 143
    finally:
        GCSession.clear()
