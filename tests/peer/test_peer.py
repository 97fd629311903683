"""libEnsemble's own test scripts pass as shipped, with the GlobusComputeExecutor, and in GC-only mode.

Each script runs from its own folder in a copy of libEnsemble's shipped tests tree, as
``python SCRIPT --nworkers 3 --comms local`` (through ``runner.py``, see ``modes.py`` for the
swaps).  A run passes when the script exits 0 (its own asserts hold), the swap was in effect, and
none of its processes (engines, worker pools, MPI ranks) outlives it.
"""

from __future__ import annotations

import re
import typing as t

import pytest

from tests.peer.conftest import PeerRuns
from tests.peer.harness import RunResult
from tests.peer.modes import MARKER
from tests.peer.scripts import REFUSAL, SCRIPTS, PeerScript

Record = t.Callable[[RunResult], RunResult]


def _params(scripts: t.Iterable[PeerScript]) -> list[t.Any]:
    # pytest-timeout's limit covers the run, its clean-up and the tree's copy on first use.
    return [pytest.param(s, id=s.name, marks=pytest.mark.timeout(s.timeout + 120)) for s in scripts]


def _run(runs: PeerRuns, script: PeerScript, mode: str, record: Record) -> RunResult:
    result = record(runs.result(script, mode))
    assert result.returncode is not None, f"{script.name} ({mode}) still running after {script.timeout:g} s\n" + (
        result.tail()
    )
    assert not result.leftover, f"{script.name} ({mode}) left processes running: {result.leftover}"
    return result


@pytest.mark.parametrize("script", _params(s for s in SCRIPTS if s.stock))
def test_stock(peer_runs: PeerRuns, script: PeerScript, record: Record) -> None:
    result = _run(peer_runs, script, "stock", record)
    assert result.returncode == 0, f"{script.name} fails as shipped, without the bundle\n{result.tail()}"


@pytest.mark.parametrize("script", _params(s for s in SCRIPTS if s.executor))
def test_executor_mode(peer_runs: PeerRuns, script: PeerScript, record: Record) -> None:
    result = _run(peer_runs, script, "executor", record)
    assert f"{MARKER}: executor" in result.stderr, f"MPIExecutor was not swapped\n{result.tail()}"
    assert result.returncode == 0, f"{script.name} fails with GlobusComputeExecutor\n{result.tail()}"


@pytest.mark.parametrize("script", _params(s for s in SCRIPTS if s.gconly_na is None))
def test_gconly_mode(peer_runs: PeerRuns, script: PeerScript, record: Record) -> None:
    result = _run(peer_runs, script, "gconly", record)
    assert f"{MARKER}: gconly" in result.stderr, f"libE was not swapped\n{result.tail()}"
    assert result.returncode == 0, f"{script.name} fails in GC-only mode\n{result.tail()}"


@pytest.mark.parametrize("script", [pytest.param(s, id=s.name) for s in SCRIPTS if s.gconly_na])
def test_gconly_not_by_design(script: PeerScript) -> None:
    pytest.skip(f"GC-only mode cannot run {script.name} by design: {script.gconly_na}")


@pytest.mark.timeout(300)
def test_gconly_refuses_oversized_results_before_submitting(peer_runs: PeerRuns, record: Record) -> None:
    """test_fast_alloc's sims return an 8 MB row each: GC-only refuses the run before any sim is sent."""
    result = _run(peer_runs, REFUSAL, "gconly", record)
    assert result.returncode != 0, f"an over-limit result row was accepted\n{result.tail()}"
    folder = result.folder / "functionality_tests"
    stats = folder / "libE_stats.txt"
    sims = [line for line in stats.read_text().splitlines() if "sim_id" in line] if stats.exists() else []
    assert not sims, f"sims were submitted before the refusal: {sims[:3]}"
    assert not (folder / "gconly_sim_errors").exists(), "sims failed on the endpoint instead of a refusal at start"
    assert re.search(r"10(\.0+)? ?MiB|10,?485,?760", result.stderr), f"the refusal names no limit\n{result.tail()}"
