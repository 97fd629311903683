"""Ctrl-C (SIGINT to the process group, as a terminal sends it) and SIGTERM end a run at once and cleanly.

Each test starts an ensemble on the local endpoint in a process group of its own, signals the
group while the engine starts or while sims run with more queued, and checks that the run ends
within 10 s with one line naming the saved history, no traceback, none of the engine's
processes left and nothing left in its private ``TMPDIR``.
"""

import signal

import pytest

from tests.conftest import wait_until_gone
from tests.interrupt.runs import assert_stopped_cleanly


@pytest.mark.parametrize("mode", ["executor", "gconly"])
@pytest.mark.parametrize("phase", ["starting", "running"])
def test_ctrl_c_stops_the_run(driver_run, mode, phase):
    run = driver_run(mode, "local")
    run.wait_for(phase)
    result = run.signal(signal.SIGINT)
    # A GC-only run signalled while its endpoint starts has not started libEnsemble's manager: nothing to save.
    assert_stopped_cleanly(result, "SIGINT", history=not (mode == "gconly" and phase == "starting"))
    if phase == "running" and mode == "executor":
        assert "sleep 60" in result.engine_names, result.engine_names


def test_sigterm_stops_the_run(driver_run):
    run = driver_run("executor", "local")
    run.wait_for("running")
    assert_stopped_cleanly(run.signal(signal.SIGTERM), "SIGTERM")


def test_ctrl_c_with_worker_processes(driver_run):
    """libEnsemble's ``local`` comms: the manager stops the one engine its worker processes submit to."""
    run = driver_run("executor", "local", "local")
    run.wait_for("running")
    assert_stopped_cleanly(run.signal(signal.SIGINT), "SIGINT")


def test_second_ctrl_c_ends_at_once(driver_run):
    """A stopper that hangs keeps the first Ctrl-C waiting; the second one ends the process."""
    run = driver_run("executor", "local", "--slow-stopper")
    run.wait_for("running")
    result = run.signal(signal.SIGINT, second_after=1.0)
    assert result.returncode == 128 + signal.SIGINT, (result.returncode, result.stderr[-2000:])
    assert result.seconds < 6, f"{result.seconds:.1f} s"
    assert "second SIGINT" in result.stderr
    assert wait_until_gone(result.engine_pids, 10) == [], result.engine_names


@pytest.mark.parametrize("mode", ["executor", "gconly"])
def test_a_finished_run_leaves_nothing_in_tmp(driver_run, mode):
    run = driver_run(mode, "local", "--quick")
    out, err = run.proc.communicate(timeout=300)
    assert run.proc.returncode == 0 and "FINISHED" in out, err[-3000:]
    assert run.tmp_left() == [], f"left in TMPDIR: {run.tmp_left()}"
