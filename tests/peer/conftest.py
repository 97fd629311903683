"""Fixtures of the peer suite: one copy of libEnsemble's tests tree per session, and a timing table."""

from __future__ import annotations

import os
import pathlib
import typing as t

import pytest

from tests.peer.harness import RunResult, copy_tree

_RESULTS: list[RunResult] = []


@pytest.fixture(scope="session")
def peer_tree(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The session's copy of libEnsemble's shipped tests tree, with the forces app built."""
    return copy_tree(tmp_path_factory.mktemp("libensemble-tests"))


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
    terminalreporter.write_line(f"{'total':64s} {'':8s} {'':8s} {wall:7.1f} s wall {cpu:7.1f} s CPU (load {load:.1f})")
