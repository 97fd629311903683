"""Fixtures of the peer suite: one copy of libEnsemble's tests tree per session, the runs, and a timing table.

The runs a session selected start together, ``LIBE_GC_PEER_JOBS`` at a time (default 2), longest
first: much of a run is waiting (an engine's start, a sim's sleep), so two at a time take about
half the wall time of one after the other.  Each test waits for its own run and checks it.
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import typing as t

import pytest

from tests.peer.harness import RunResult, copy_tree, run_script, stop_live
from tests.peer.scripts import MODE_OF_TEST, REFUSAL, PeerScript

_RESULTS: list[RunResult] = []

JOBS = max(1, int(os.environ.get("LIBE_GC_PEER_JOBS", "2")))
"""Runs going on at once."""


@pytest.fixture(scope="session")
def peer_tree(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The session's copy of libEnsemble's shipped tests tree, with the forces app built."""
    return copy_tree(tmp_path_factory.mktemp("libensemble-tests"))


class PeerRuns:
    """The session's runs, started ``JOBS`` at a time, longest first; :meth:`result` waits for one.

    Parameters
    ----------
    tree : pathlib.Path
        The copy of libEnsemble's tests tree.
    base : pathlib.Path
        Where each run gets its folder.
    plan : list of (PeerScript, str)
        The runs the session's tests ask for, in test order.
    """

    def __init__(self, tree: pathlib.Path, base: pathlib.Path, plan: list[tuple[PeerScript, str]]) -> None:
        self.tree, self.base = tree, base
        self.pool = concurrent.futures.ThreadPoolExecutor(JOBS, thread_name_prefix="peer-run")
        self.futures: dict[tuple[str, str], concurrent.futures.Future[RunResult]] = {}
        for script, mode in sorted(plan, key=lambda run: -run[0].timeout):  # stable: ties keep the test order
            self._start(script, mode)

    def _start(self, script: PeerScript, mode: str) -> concurrent.futures.Future[RunResult]:
        key = (script.path, mode)
        if key not in self.futures:
            folder = self.base / f"{script.name}-{mode}"
            self.futures[key] = self.pool.submit(run_script, self.tree, script.path, mode, folder, script.timeout)
        return self.futures[key]

    def result(self, script: PeerScript, mode: str) -> RunResult:
        """Return the outcome of ``script`` run in ``mode`` (started now if the session did not plan it)."""
        return self._start(script, mode).result()

    def close(self) -> None:
        """Drop the runs not started and stop those going on (an interrupted session); wait for the pool."""
        for fut in self.futures.values():
            fut.cancel()
        stop_live()
        self.pool.shutdown(wait=True)


@pytest.fixture(scope="session")
def peer_runs(
    request: pytest.FixtureRequest, peer_tree: pathlib.Path, tmp_path_factory: pytest.TempPathFactory
) -> t.Iterator[PeerRuns]:
    """Start every run the session's selected peer tests ask for; yield the scheduler."""
    plan: list[tuple[PeerScript, str]] = []
    for item in request.session.items:
        mode = MODE_OF_TEST.get(getattr(item, "originalname", item.name))
        if mode is None:
            continue
        callspec = getattr(item, "callspec", None)
        script = callspec.params.get("script") if callspec is not None else REFUSAL
        if isinstance(script, PeerScript):
            plan.append((script, mode))
    runs = PeerRuns(peer_tree, tmp_path_factory.mktemp("peer-runs"), plan)
    yield runs
    runs.close()


@pytest.fixture
def record() -> t.Callable[[RunResult], RunResult]:
    """Keep a run's outcome and wall time for the summary printed at the end of the session."""

    def keep(result: RunResult) -> RunResult:
        _RESULTS.append(result)
        return result

    return keep


def pytest_terminal_summary(terminalreporter: t.Any) -> None:
    """Print each peer run's outcome and wall time."""
    if not _RESULTS:
        return
    terminalreporter.section("libEnsemble peer scripts: wall time and CPU time per run")
    for r in _RESULTS:
        outcome = "timeout" if r.returncode is None else f"exit {r.returncode}"
        terminalreporter.write_line(
            f"{r.script:64s} {r.mode:8s} {outcome:8s} {r.seconds:7.1f} s wall {r.cpu_seconds:7.1f} s CPU"
        )
    wall, cpu = sum(r.seconds for r in _RESULTS), sum(r.cpu_seconds for r in _RESULTS)
    load = os.getloadavg()[0]
    label = f"sum over runs (they overlap: LIBE_GC_PEER_JOBS={JOBS})"
    terminalreporter.write_line(f"{label:64s} {'':17s} {wall:7.1f} s wall {cpu:7.1f} s CPU (load {load:.1f})")
