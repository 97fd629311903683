"""Run the demo: a persistent generator feeding MPI sims through ``GlobusComputeExecutor``, then a summary.

Phases (each a libEnsemble ``Ensemble`` whose generator runs in this process):

1. **executor mode**: sims launch the objective as a 2-rank MPI app on the endpoint and read its
   output file;
2. **GC-only mode** (when available): the manager sends the pure-Python objective to the endpoint.

A live progress bar follows the sims; at the end a table gives sims, failures, wall time and how
busy each slot was, and ``timeline.png`` (one row per slot, one bar per sim, coloured by status)
is written next to the histories.
"""

from __future__ import annotations

import os
import time
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class DemoConfig:
    """Settings of one demo run.

    Parameters
    ----------
    endpoint : str
        ``"local"`` or an endpoint UUID.
    template : str, optional
        Bundled template (local endpoint), or the one a cloud endpoint was configured from.
    options : dict
        ``user_endpoint_config``.
    sims : int
        Sims per phase.
    workers : int
        Sims in flight.
    mpi_ranks : int
        Ranks of each MPI sim.
    out_dir : Path
        Where histories, logs and the timeline go.
    """

    endpoint: str = "local"
    template: str | None = None
    options: dict[str, t.Any] = field(default_factory=dict)
    sims: int = 16
    workers: int = 2
    mpi_ranks: int = 2
    out_dir: Path = Path("libe-gc-demo")


@dataclass
class PhaseResult:
    """One phase's title, history and wall time."""

    title: str
    H: np.ndarray
    wall: float


def _gen_specs(cfg: DemoConfig) -> t.Any:
    from libensemble.gen_funcs.persistent_sampling import persistent_uniform
    from libensemble.specs import GenSpecs

    return GenSpecs(
        gen_f=persistent_uniform,
        persis_in=["sim_id", "f"],
        outputs=[("x", float, (2,))],
        user={"initial_batch_size": cfg.workers, "lb": np.array([-2.0, -1.0]), "ub": np.array([2.0, 1.0])},
    )


def _alloc_specs() -> t.Any:
    from libensemble.alloc_funcs.start_only_persistent import only_persistent_gens
    from libensemble.specs import AllocSpecs

    return AllocSpecs(alloc_f=only_persistent_gens, user={"async_return": True})


def _run_phase(ensemble: t.Any, cfg: DemoConfig, folder: Path, stem: str, title: str) -> PhaseResult:
    """Run ``ensemble`` from ``folder`` with the demo's seed; save its history as ``history_<stem>.npy``."""
    from libensemble.tools import add_unique_random_streams

    ensemble.persis_info = add_unique_random_streams({}, cfg.workers + 1, seed=2026)
    here = os.getcwd()
    os.chdir(folder)
    start = time.time()
    try:
        H, _, _ = ensemble.run()
    finally:
        os.chdir(here)
    wall = time.time() - start
    np.save(cfg.out_dir / f"history_{stem}.npy", H)
    return PhaseResult(title, H, wall)


def executor_phase(cfg: DemoConfig, progress: t.Any) -> PhaseResult:
    """Phase 1: MPI sims launched through ``GlobusComputeExecutor`` (executor mode)."""
    from libensemble import Ensemble
    from libensemble.specs import ExitCriteria, LibeSpecs, SimSpecs

    from bundle.cli.demo.progress import RichProgress
    from bundle.cli.demo.sims import MPI_APP, sim_mpi
    from bundle.cli.smoke import with_accepted_defaults
    from bundle.executor import GlobusComputeExecutor

    options = dict(cfg.options)
    if cfg.endpoint == "local":  # defaults the template refuses next to the user's options are left out
        defaults = {"slots_per_node": cfg.workers}
        options = with_accepted_defaults(cfg.template or "local", options, defaults)
    exctr = GlobusComputeExecutor(cfg.endpoint, template=cfg.template, user_endpoint_config=options)
    exctr.register_app(full_path=MPI_APP, app_name="objective")
    task_dir = (cfg.out_dir / "executor_tasks").resolve()
    task_dir.mkdir(parents=True, exist_ok=True)
    live = RichProgress(f"executor mode: {cfg.mpi_ranks}-rank MPI sims", cfg.sims, progress)
    if exctr.is_local:  # start the engine now, so the first sims do not carry its start-up
        progress.update(live.task_id, note="starting the local endpoint")
        exctr.gc_executor().wait_ready()
        progress.update(live.task_id, note="")
    ensemble = Ensemble(
        executor=exctr,
        libE_specs=LibeSpecs(
            comms="threads",  # the workers share this process's endpoint (one engine for the local endpoint)
            nworkers=cfg.workers,
            gen_on_manager=True,
            ensemble_dir_path=str(cfg.out_dir / "executor_ensemble"),
            disable_resource_manager=True,
            live_data=live,
        ),
        sim_specs=SimSpecs(
            sim_f=sim_mpi,
            inputs=["x", "sim_id"],
            outputs=[("f", float)],
            user={"mpi_ranks": cfg.mpi_ranks, "out_dir": str(task_dir)},
        ),
        gen_specs=_gen_specs(cfg),
        alloc_specs=_alloc_specs(),
        exit_criteria=ExitCriteria(sim_max=cfg.sims),
    )
    # the apps' stdout / stderr files land in task_dir
    return _run_phase(ensemble, cfg, task_dir, "executor_mode", "executor mode (MPI sims via GlobusComputeExecutor)")


def gconly_phase(cfg: DemoConfig, progress: t.Any) -> PhaseResult:
    """Phase 2: the manager sends the pure-Python objective to the endpoint (GC-only mode, no worker processes)."""
    from libensemble.specs import ExitCriteria, LibeSpecs, SimSpecs

    from bundle.cli.demo.progress import RichProgress
    from bundle.cli.demo.sims import sim_python
    from bundle.gconly import Ensemble, GCOnlySpecs

    options = dict(cfg.options)
    if cfg.endpoint == "local":
        # pure-Python sims: the GlobusComputeEngine variant of the same template
        options = {"engine_type": "GlobusComputeEngine", "max_workers_per_node": cfg.workers}
    live = RichProgress("GC-only mode: Python sims from the manager", cfg.sims, progress)
    if cfg.endpoint == "local":  # start the engine now, so the first sims do not carry its start-up
        from bundle.endpoints.local import LocalEndpoint
        from bundle.endpoints.session import GCSession

        progress.update(live.task_id, note="starting the local endpoint")
        endpoint = GCSession.get_executor(cfg.endpoint, options, template=cfg.template)
        assert isinstance(endpoint, LocalEndpoint)
        endpoint.wait_ready()
        progress.update(live.task_id, note="")
    work = (cfg.out_dir / "gconly").resolve()
    work.mkdir(parents=True, exist_ok=True)
    ensemble = Ensemble(
        libE_specs=LibeSpecs(nworkers=cfg.workers, live_data=live, workflow_dir_path=str(work)),
        sim_specs=SimSpecs(
            sim_f=sim_python, inputs=["x"], outputs=[("f", float)], globus_compute_endpoint=cfg.endpoint
        ),
        gen_specs=_gen_specs(cfg),
        alloc_specs=_alloc_specs(),
        exit_criteria=ExitCriteria(sim_max=cfg.sims),
        gc_specs=GCOnlySpecs(user_endpoint_config=options, template=cfg.template),
    )
    return _run_phase(ensemble, cfg, work, "gconly_mode", "GC-only mode (Python sims, no worker processes)")


def run_demo(cfg: DemoConfig, console: t.Any = None) -> list[PhaseResult]:
    """Run every phase, then print the summary and write the timeline.

    Parameters
    ----------
    cfg : DemoConfig
        The settings.
    console : rich.console.Console, optional
        Where to print.

    Returns
    -------
    list of PhaseResult
        One per phase run.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bundle.cli.demo.report import timeline
    from bundle.endpoints.session import GCSession, parse_endpoint
    from bundle.endpoints.templates import get_template

    _, template = parse_endpoint(cfg.endpoint, cfg.template)
    if template is not None:  # refuse bad options before anything is made or started
        get_template(template).validate(cfg.options)
    console = console or Console()
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    here = os.getcwd()
    results: list[PhaseResult] = []
    progress = Progress(
        TextColumn("{task.description:<44}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
    )
    try:
        with progress:
            results.append(executor_phase(cfg, progress))
            results.append(gconly_phase(cfg, progress))
    finally:
        os.chdir(here)
        GCSession.clear()
    png = timeline([(r.title, r.H) for r in results], cfg.out_dir / "timeline.png")
    print_summary(results, console)
    console.print(f"histories and [bold]{png}[/bold] are in {cfg.out_dir.resolve()}")
    return results


def print_summary(results: list[PhaseResult], console: t.Any) -> None:
    """Print one table row per phase: sims, failures, wall time, busy fraction per slot, best f."""
    from rich.table import Table

    from bundle.cli.demo.report import summarize

    table = Table(title="libe-gc demo: summary")
    for col in ("phase", "sims", "failed", "wall time", "busy per slot", "best f"):
        table.add_column(col)
    for r in results:
        s = summarize(r.H, r.wall)
        busy = ", ".join(f"{slot}: {frac:.0%}" for slot, frac in s["busy"].items())
        table.add_row(r.title, str(s["sims"]), str(s["failed"]), f"{s['wall']:.1f} s", busy, f"{s['best']:.4f}")
    console.print(table)
