"""The ``driver_run`` fixture: start interrupt drivers; kill them and remove their TMPDIR at teardown."""

import pytest

from tests.interrupt.runs import DriverRun


@pytest.fixture
def driver_run(tmp_path):
    runs: list[DriverRun] = []

    def start(*args: str) -> DriverRun:
        run = DriverRun(tmp_path / f"run{len(runs)}", *args)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()
        run.remove_tmpdir()
