"""Shared fixtures: started local endpoints (real engine, real mpiexec) and process accounting."""

from __future__ import annotations

import os
import time
import typing as t

import psutil
import pytest

from bundle.local import LocalEndpoint
from bundle.session import GCSession

ENGINE_MARKERS = ("process_worker_pool", "interchange", "mpiexec", "hydra_pmi_proxy")


def engine_processes(token: str | None) -> list[psutil.Process]:
    """Live processes carrying the given watcher token (interchange, pool, MPI launcher, ranks)."""
    if not token:
        return []
    needle = f"LIBE_GC_BUNDLE_OWNER={token}"
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and needle in [f"{k}={v}" for k, v in proc.environ().items()]:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
        except psutil.Error:
            continue
    return found


def wait_until_gone(pids: t.Iterable[int], timeout: float) -> list[int]:
    """Wait for processes to exit; return the pids still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if alive:
            time.sleep(0.2)
    return alive


@pytest.fixture(scope="session")
def mpi_endpoint(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[LocalEndpoint]:
    """A started local endpoint on GlobusMPIEngine with two slots on this host."""
    ep = LocalEndpoint(
        user_endpoint_config={"engine_type": "GlobusMPIEngine", "max_workers_per_block": 2},
        run_dir=tmp_path_factory.mktemp("mpi-endpoint"),
    )
    ep.start()
    assert ep.wait_ready(90), "MPI local endpoint did not become ready"
    yield ep
    ep.shutdown(wait=False, cancel_futures=True)


@pytest.fixture(scope="session")
def py_endpoint(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[LocalEndpoint]:
    """A started local endpoint on GlobusComputeEngine with two workers."""
    ep = LocalEndpoint(
        user_endpoint_config={"engine_type": "GlobusComputeEngine", "max_workers_per_node": 2},
        run_dir=tmp_path_factory.mktemp("py-endpoint"),
    )
    ep.start()
    assert ep.wait_ready(90), "Python local endpoint did not become ready"
    yield ep
    ep.shutdown(wait=False, cancel_futures=True)


@pytest.fixture(autouse=True)
def _clear_session() -> t.Iterator[None]:
    yield
    GCSession.clear()
