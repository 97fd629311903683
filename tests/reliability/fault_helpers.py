"""Shared helpers of the worker-loss, load and endpoint-unavailable tests.

Figures (detection times, retries, process and descriptor counts, memory) are printed as one JSON
line each (``pytest -s`` shows them) and, when ``LIBE_GC_FIGURES`` names a file, appended to it.
"""

from __future__ import annotations

import json
import os
import pathlib
import threading
import time
import typing as t

import numpy as np
import psutil
from libensemble import Ensemble
from libensemble.alloc_funcs.give_sim_work_first import give_sim_work_first
from libensemble.gen_funcs.sampling import uniform_random_sample
from libensemble.specs import AllocSpecs, ExitCriteria, GenSpecs, LibeSpecs, SimSpecs
from libensemble.tools import add_unique_random_streams

from bundle.endpoints.local import reaper
from bundle.endpoints.session import GCSession
from tests.polling import wait_for
from tests.reliability import fault_sims

if t.TYPE_CHECKING:
    from bundle import GlobusComputeExecutor
    from bundle.endpoints.local import LocalEndpoint
    from bundle.endpoints.local.engine_host import EngineHost

FIGURES_ENV = "LIBE_GC_FIGURES"
SCALE_ENV = "LIBE_GC_LOAD_SCALE"

# Short heartbeats so a lost worker pool is noticed in seconds (Parsl's defaults: 30 s / 120 s).
FAST_HEARTBEAT = {"heartbeat_period": 1, "heartbeat_threshold": 4}


def record(case: str, **figures: t.Any) -> dict[str, t.Any]:
    """Print one case's figures as a JSON line, and append it to ``$LIBE_GC_FIGURES`` when set."""
    line = {"case": case, **figures}
    text = json.dumps(line, sort_keys=True, default=str)
    print(f"\nFIGURES {text}")
    target = os.environ.get(FIGURES_ENV)
    if target:
        with open(target, "a") as fh:
            fh.write(text + "\n")
    return line


def started_local(config: dict[str, t.Any], run_dir: pathlib.Path, **local: t.Any) -> LocalEndpoint:
    """Create (through the session cache, so runs reuse it) and start a local endpoint; wait for its workers."""
    ep = t.cast("LocalEndpoint", GCSession.get_executor("local", config, local_options={"run_dir": run_dir, **local}))
    assert ep.wait_ready(120), "the local endpoint's workers did not connect"
    return ep


def host_of(ep: LocalEndpoint) -> EngineHost:
    """The one engine a local endpoint runs."""
    hosts = list(ep._hosts.values())
    assert len(hosts) == 1, f"expected one engine, found {len(hosts)}"
    return hosts[0]


def block_roots(host: EngineHost) -> list[int]:
    """Pids of the engine's live block shells (LocalProvider)."""
    roots = []
    for job in list(host.engine.executor.provider.resources.values()):
        pid = job.get("remote_pid")
        if pid and psutil.pid_exists(int(pid)):
            roots.append(int(pid))
    return roots


def block_processes(host: EngineHost) -> list[psutil.Process]:
    """Every live process under the engine's block shells (pools, workers, launchers, ranks)."""
    found = []
    for pid in reaper.descendants(block_roots(host)):
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _cmd(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline()) + " " + proc.name()
    except psutil.Error:
        return ""


def worker_pools(host: EngineHost) -> list[psutil.Process]:
    """This engine's worker pool processes (never another engine's)."""
    return [p for p in block_processes(host) if "process_worker_pool" in _cmd(p)]


def engine_processes(driver_pid: int | None = None) -> list[psutil.Process]:
    """The driver's live descendants plus every process carrying its watcher token (the blocks)."""
    from tests.conftest import engine_tree

    return engine_tree(driver_pid or os.getpid(), reaper.current_token())


def fd_count() -> int:
    """Open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


def probe_ensemble(
    exctr: GlobusComputeExecutor,
    libE_specs: LibeSpecs,
    sim_max: int,
    user: dict[str, t.Any],
    *,
    seed: int,
    gen_batch_size: int | None = None,
) -> Ensemble:
    """Return an ensemble of ``fault_sims.probe_task`` sims launched through ``exctr``, ``user`` their options.

    A uniform sampler gives ``gen_batch_size`` (default ``sim_max``) points ``x`` in [0, 1]; each
    sim records its task's marker, final state and error in the history.
    """
    ens = Ensemble(
        executor=exctr,
        libE_specs=libE_specs,
        sim_specs=SimSpecs(
            sim_f=fault_sims.probe_task,
            inputs=["x", "sim_id"],
            outputs=[("marker", "U64"), ("state", "U20"), ("error", "U400")],
            user=user,
        ),
        gen_specs=GenSpecs(
            gen_f=uniform_random_sample,
            outputs=[("x", float, (1,))],
            user={"gen_batch_size": gen_batch_size or sim_max, "lb": np.array([0.0]), "ub": np.array([1.0])},
        ),
        alloc_specs=AllocSpecs(alloc_f=give_sim_work_first),
        exit_criteria=ExitCriteria(sim_max=sim_max),
    )
    ens.persis_info = add_unique_random_streams({}, libE_specs.nworkers + 1, seed=seed)
    return ens


class PoolKiller(threading.Thread):
    """Once ``ready()`` holds, SIGKILL the engine's worker pool and record what was running on it.

    Attributes
    ----------
    killed_at : float or None
        ``time.monotonic()`` of the kill.
    pool_pid : int or None
        The pool killed.
    victims : list of (pid, cmdline, environ) tuples
        The pool's descendants at the kill (workers, launchers, ranks).
    """

    def __init__(self, host: EngineHost, ready: t.Callable[[], bool], timeout: float = 120.0) -> None:
        super().__init__(name="pool-killer", daemon=True)
        self.host = host
        self.ready = ready
        self.timeout = timeout
        self.killed_at: float | None = None
        self.killed_wall: float | None = None
        self.pool_pid: int | None = None
        self.victims: list[tuple[int, str, dict[str, str]]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            if not wait_for(self.ready, self.timeout):
                raise TimeoutError("the kill condition never held")
            pools = worker_pools(self.host)
            assert len(pools) == 1, f"expected one worker pool, found {[p.pid for p in pools]}"
            pool = pools[0]
            for proc in pool.children(recursive=True):
                try:
                    env = proc.environ()
                except psutil.Error:
                    env = {}
                self.victims.append((proc.pid, _cmd(proc), env))
            self.pool_pid = pool.pid
            pool.kill()
            self.killed_at = time.monotonic()
            self.killed_wall = time.time()
            pool.wait(10)
        except BaseException as err:
            self.error = err

    def survivors(self) -> list[str]:
        """Command lines of the pool's former descendants still running."""
        left = []
        for pid, cmd, _ in self.victims:
            try:
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE and _cmd(proc) == cmd:
                    left.append(f"{pid}: {cmd}")
            except psutil.Error:
                continue
        return left
