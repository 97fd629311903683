"""Shared fixtures: started local endpoints (real engine, real mpiexec), RabbitMQ, and process accounting."""

from __future__ import annotations

import os
import pathlib
import time
import typing as t

import psutil
import pytest

from bundle.endpoints.local import LocalEndpoint, reaper
from bundle.endpoints.session import GCSession
from tests.broker import rabbitmq
from tests.gcservice import gc_service, local_services
from tests.serial_groups import SerialGroups

# The broker fixture of tests/broker.py (tests/realendpoint, tests/contract) and the stand-in web service of
# tests/gcservice.py (tests/realendpoint, tests/slurm/test_node_loss.py): defined once here, so one instance each.
__all__ = ["gc_service", "local_services", "rabbitmq"]


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, run the tests that share a machine-wide resource one after another (``SERIAL_GROUPS``)."""
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(SerialGroups(), "libe-gc-serial-groups")


@pytest.fixture(scope="session", autouse=True)
def watcher_logs(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Every watcher of this session (its own drivers' and those of the drivers the tests start) logs here.

    A process left behind by a killed driver is then explained by :func:`watcher_log`.
    """
    folder = tmp_path_factory.mktemp("watcher-logs")
    os.environ[reaper.LOG_DIR_ENV] = str(folder)
    return folder


def watcher_log(token: str | None) -> str:
    """What the watcher of ``token`` wrote (what it was told, found and signalled), for a failure's message."""
    folder = os.environ.get(reaper.LOG_DIR_ENV)
    if not token or not folder:
        return "(no watcher log)"
    path = pathlib.Path(folder, f"watcher-{token}.log")
    return path.read_text() if path.exists() else f"(no watcher log at {path})"


def descendants(pid: int) -> list[psutil.Process]:
    """Live descendants of ``pid`` except the bundle's watcher (interchange, pool, workers, MPI)."""
    found = []
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    for proc in children:
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and not any("reaper.py" in a for a in proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def engine_tree(driver_pid: int, token: str | None) -> list[psutil.Process]:
    """Every process a driver's engines started: its descendants, plus the blocks.

    LocalProvider detaches a block's shell from the driver (it is reparented to
    init), so blocks are found by the driver's watcher token in their environment,
    and then their descendants (the worker pool renames itself, hiding its environment).
    """
    seeds = {driver_pid, *(reaper.find_marked(token) if token else [])}
    found: dict[int, psutil.Process] = {}
    for pid in seeds:
        if pid != driver_pid:
            try:
                found[pid] = psutil.Process(pid)
            except psutil.Error:
                pass
        for proc in descendants(pid):
            found[proc.pid] = proc
    return [p for p in found.values() if not any("reaper.py" in a for a in _safe_cmdline(p))]


def _safe_cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def cmdlines(procs: t.Iterable[psutil.Process]) -> str:
    """All command lines (and process titles) of ``procs`` as one string, for assertions."""
    out = []
    for proc in procs:
        try:
            out.append(" ".join(proc.cmdline()) + " " + proc.name())
        except psutil.Error:
            continue
    return "\n".join(out)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (not a zombie); a process that exits while being looked at is gone."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until_gone(pids: t.Iterable[int], timeout: float) -> list[int]:
    """Wait for processes to exit; return the pids still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        if alive:
            time.sleep(0.2)
    return alive


def _started(factory: pytest.TempPathFactory, name: str, config: dict[str, t.Any]) -> t.Iterator[LocalEndpoint]:
    ep = LocalEndpoint(user_endpoint_config=config, run_dir=factory.mktemp(name))
    ep.start()
    assert ep.wait_ready(90), f"{name} local endpoint did not become ready"
    yield ep
    ep.shutdown(wait=False, cancel_futures=True)


@pytest.fixture(scope="session")
def mpi_endpoint(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[LocalEndpoint]:
    """A started local endpoint on GlobusMPIEngine with two slots on this host."""
    yield from _started(
        tmp_path_factory, "mpi-endpoint", {"engine_type": "GlobusMPIEngine", "max_workers_per_block": 2}
    )


@pytest.fixture(scope="session")
def py_endpoint(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[LocalEndpoint]:
    """A started local endpoint on GlobusComputeEngine with two workers."""
    yield from _started(
        tmp_path_factory, "py-endpoint", {"engine_type": "GlobusComputeEngine", "max_workers_per_node": 2}
    )


@pytest.fixture(autouse=True)
def _clear_session() -> t.Iterator[None]:
    yield
    GCSession.clear()


@pytest.fixture(autouse=True)
def _libensemble_log_paths() -> t.Iterator[None]:
    """Give each test libEnsemble's default, relative log paths.

    ``libE_specs.workflow_dir_path`` moves libEnsemble's process-wide log configuration
    (``ensemble.log``, ``libE_stats.txt``) into that folder for good; without this reset a
    later test in the same process would look for its stats file in the wrong place.
    """
    from libensemble.comms.logs import LogConfig

    yield
    config = LogConfig.config
    if config is not None:
        config.filename = "ensemble.log"
        config.stat_filename = "libE_stats.txt"
