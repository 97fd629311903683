"""A short smoke run: one Python function, one ``ShellFunction`` and one 2-rank ``MPIFunction``.

This is what ``libe-gc demo`` runs today on the local endpoint (or on an
endpoint UUID): it proves that the engine starts, that all three kinds of
function come back with correct results, and that ``$PARSL_MPI_PREFIX``
launches real MPI ranks.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import typing as t
from dataclasses import dataclass


def python_task(n: int) -> dict[str, t.Any]:
    """Compute a checkable value and report where it ran.

    Parameters
    ----------
    n : int
        Upper bound of the sum of squares.

    Returns
    -------
    dict
        ``sum_of_squares`` of ``range(n)``, plus host, pid and Python version.
    """
    import os
    import platform
    import socket

    return {
        "sum_of_squares": sum(i * i for i in range(n)),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "python": platform.python_version(),
    }


SHELL_COMMAND = "echo shell task on $(hostname); echo {word}"
MPI_COMMAND = "python -m mpi4py.bench helloworld"


@dataclass(frozen=True)
class SmokeResult:
    """Outcome of one smoke task."""

    kind: str
    ok: bool
    seconds: float
    detail: str


def run_smoke(executor: t.Any, *, mpi_ranks: int = 2, mpi: bool = True) -> list[SmokeResult]:
    """Submit the three smoke tasks and check their results.

    Parameters
    ----------
    executor : LocalEndpoint or globus_compute_sdk.Executor
        Where to run; its engine must be a GlobusMPIEngine for the MPI task.
    mpi_ranks : int
        Ranks of the MPI task (on one node).
    mpi : bool
        False for a ``GlobusComputeEngine``: no ``resource_specification`` and no MPI task (its
        row says it was skipped and why).

    Returns
    -------
    list of SmokeResult
        One per task, in submission order.
    """
    from globus_compute_sdk import MPIFunction, ShellFunction

    n = 1000
    expected = sum(i * i for i in range(n))
    word = f"token-{os.getpid()}"
    if mpi:
        executor.resource_specification = {"num_nodes": 1, "ranks_per_node": 1, "num_ranks": 1}
    t0 = time.monotonic()
    py_fut = executor.submit(python_task, n)
    sh_fut = executor.submit(ShellFunction(SHELL_COMMAND.format(word=word)))
    if mpi:
        executor.resource_specification = {"num_nodes": 1, "ranks_per_node": mpi_ranks, "num_ranks": mpi_ranks}
        mpi_fut = executor.submit(MPIFunction(MPI_COMMAND))

    results = []
    try:
        value = py_fut.result()
        ok = value["sum_of_squares"] == expected
        detail = f"sum_of_squares={value['sum_of_squares']} on {value['host']} (pid {value['pid']})"
    except Exception as err:
        ok, detail = False, f"{type(err).__name__}: {err}"
    results.append(SmokeResult("Python function", ok, time.monotonic() - t0, detail))

    try:
        shell = sh_fut.result()
        ok = shell.returncode == 0 and word in shell.stdout
        detail = shell.stdout.strip().replace("\n", " | ")
    except Exception as err:
        ok, detail = False, f"{type(err).__name__}: {err}"
    results.append(SmokeResult("ShellFunction", ok, time.monotonic() - t0, detail))

    if not mpi:
        detail = "skipped: engine_type GlobusComputeEngine runs no MPIFunction (GlobusMPIEngine does)"
        results.append(SmokeResult("MPIFunction", True, 0.0, detail))
        return results
    try:
        out = mpi_fut.result()
        lines = [ln for ln in out.stdout.splitlines() if "Hello, World!" in ln]
        ok = out.returncode == 0 and len(lines) == mpi_ranks and f"of {mpi_ranks}" in lines[0]
        detail = " | ".join(sorted(lines)) or f"returncode={out.returncode}: {out.stderr.strip()[-300:]}"
    except Exception as err:
        ok, detail = False, f"{type(err).__name__}: {err}"
    results.append(SmokeResult(f"MPIFunction ({mpi_ranks} ranks)", ok, time.monotonic() - t0, detail))
    return results


SMOKE_DEFAULTS = {"max_workers_per_block": 2}
"""Options ``libe-gc smoke`` adds for a local endpoint (two MPI slots) unless the user's options rule them out."""


def smoke_options(endpoint: str, template: str | None, options: dict[str, t.Any]) -> dict[str, t.Any]:
    """Return the user's options plus the smoke defaults that their template accepts with them.

    A default the template refuses next to the user's options (e.g. ``max_workers_per_block`` with
    ``engine_type=GlobusComputeEngine``) is left out, so an error never names an option the user
    did not give.  Cloud endpoints get the user's options only.
    """
    from bundle.endpoints.session import LOCAL, parse_endpoint

    name, local_template = parse_endpoint(endpoint, template)
    if name != LOCAL:
        return dict(options)
    return with_accepted_defaults(local_template or "local", options, SMOKE_DEFAULTS)


def with_accepted_defaults(
    template: str, options: t.Mapping[str, t.Any], defaults: t.Mapping[str, t.Any]
) -> dict[str, t.Any]:
    """Return ``options`` plus each of a command's ``defaults`` that ``template`` accepts next to them.

    Parameters
    ----------
    template : str
        Bundled template name.
    options : mapping
        The user's options (they always win, and are kept as given).
    defaults : mapping
        Options the command would like to add.

    Returns
    -------
    dict
        A default the schema refuses because of the user's options is left out, so a later
        error only ever names options the user gave.
    """
    from bundle.endpoints.templates import get_template
    from bundle.errors import TemplateOptionError

    tmpl = get_template(template)
    merged = dict(options)
    for key, value in defaults.items():
        if key in options:
            continue
        try:
            tmpl.validate({**merged, key: value}, partial=True)
        except TemplateOptionError as err:
            if err.option == key:
                continue  # refused because of the user's own options: leave it out
        merged[key] = value
    return merged


def main_smoke(endpoint: str, template: str | None, options: dict[str, t.Any], mpi_ranks: int) -> int:
    """Run the smoke tasks with a progress indication and print a summary table.

    Returns
    -------
    int
        0 when every task gave the expected result, 1 otherwise.
    """
    from rich.console import Console
    from rich.table import Table

    from bundle.endpoints.session import GCSession

    console = Console()
    t0 = time.monotonic()
    with console.status(f"Starting endpoint {endpoint!r} and running 3 tasks on {socket.gethostname()}..."):
        executor = GCSession.get_executor(endpoint, options or None, template=template)
        try:
            mpi = (options or {}).get("engine_type", "GlobusMPIEngine") != "GlobusComputeEngine"
            results = run_smoke(executor, mpi_ranks=mpi_ranks, mpi=mpi)
        finally:
            GCSession.clear(wait=False)
    table = Table(title=f"libe-gc smoke run on endpoint {endpoint!r} (Python {sys.version.split()[0]})")
    table.add_column("task")
    table.add_column("result")
    table.add_column("done after [s]", justify="right")
    table.add_column("output")
    for r in results:
        table.add_row(r.kind, "[green]ok[/]" if r.ok else "[red]FAILED[/]", f"{r.seconds:.1f}", r.detail)
    console.print(table)
    console.print(f"wall time {time.monotonic() - t0:.1f} s (includes starting the engine and its workers)")
    return 0 if all(r.ok for r in results) else 1
