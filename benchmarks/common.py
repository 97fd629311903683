"""What every benchmark shares: how a rate is timed, how repetitions are summarized, the machine's state.

See ``benchmarks/README.md`` for the rules these serve.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import typing as t

import click
import numpy as np

MIN_REPS = 5
"""Repetitions of a full run (quick runs check that a benchmark works and say nothing about speed)."""


def h_window_rate(H: t.Any) -> float:
    """Return sims/s between the first sim given out and the last sim returned, from libEnsemble's history.

    The manager stamps ``sim_started_time`` when it sends a sim and ``sim_ended_time`` when the
    result arrives, with the same code in stock libEnsemble, in its Globus Compute path and in
    GC-only mode: start-up (worker processes, threads, registration) and shut-down are timed on no side.
    """
    ended = H[H["sim_ended"]]
    if len(ended) < 2:
        raise ValueError(f"need at least two ended sims to time a window, got {len(ended)}")
    window = float(np.max(ended["sim_ended_time"]) - np.min(ended["sim_started_time"]))
    return len(ended) / window


def summary(values: list[float]) -> dict[str, t.Any]:
    """Median and spread of repeated measurements, with the values themselves."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def ratios(num: list[float], den: list[float]) -> list[float]:
    """Per-repetition ratios of two series measured side by side."""
    return [a / b for a, b in zip(num, den, strict=True)]


def load_average() -> list[float]:
    """Return the machine's 1, 5 and 15 minute load averages (other work running skews rates)."""
    return [round(v, 2) for v in os.getloadavg()]


def machine() -> dict[str, t.Any]:
    """Return CPUs, Python, platform and load average, recorded with every result file."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": load_average(),
    }


Decorator = t.Callable[[t.Callable[..., t.Any]], t.Callable[..., t.Any]]


def quick_option(help: str) -> Decorator:
    """``--quick``: a short run that checks a benchmark works (``help`` says what it runs)."""
    return click.option("--quick", is_flag=True, help=help)


def reps_option(help: str) -> Decorator:
    """``--reps``: repetitions; unset means the benchmark's default for a full or a quick run."""
    return click.option("--reps", type=int, default=None, help=help)


def out_option(help: str) -> Decorator:
    """``--out``: the folder a benchmark writes its results into (default ``benchmark-results``)."""
    return click.option("--out", default="benchmark-results", help=help)


def output_option(default: str | None, help: str = "JSON file to write") -> Decorator:
    """``--output``: the JSON file a benchmark writes."""
    return click.option("--output", default=default, help=help)


engine_workers_option: Decorator = click.option(
    "--engine-workers", type=int, default=2, help="engine workers (default 2)"
)
"""``--engine-workers``: workers of the local endpoint's GlobusComputeEngine."""


def slurm_options(wait_help: str) -> Decorator:
    """Add the options of a benchmark on the shared Slurm: launcher, partition, interface, wait and start time."""
    options = [
        click.option("--launcher", default="srun", type=click.Choice(["srun", "mpiexec"]), help="mpi_launcher (srun)"),
        click.option("--partition", default=None, help="Slurm partition (default: the cluster's default)"),
        click.option("--network-interface", default="lo", help="network_interface option ('lo': one machine)"),
        click.option("--wait", type=float, default=900.0, help=wait_help),
        click.option("--start-timeout", type=float, default=600.0, help="seconds for the job's workers (600)"),
    ]

    def decorate(fn: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
        for option in reversed(options):  # listed in --help in the order above
            fn = option(fn)
        return fn

    return decorate


def benchmark_command(doc: str | None) -> t.Callable[[t.Callable[..., t.Any]], click.Command]:
    """Return a click command decorator; the help is the first line of the benchmark module's docstring ``doc``."""
    return click.command(help=(doc or "").strip().splitlines()[0], context_settings={"max_content_width": 120})


class EntryPoint(t.Protocol):
    """A benchmark's ``main``: run it on a list of arguments and return its exit code."""

    def __call__(self, argv: list[str] | None = None) -> int:
        """Run the benchmark on ``argv`` (default: the command line's arguments); return the exit code."""
        ...


def entry_point(command: click.Command, prog_name: str) -> EntryPoint:
    """Return a benchmark's ``main(argv=None) -> int``, which runs its click ``command`` on ``argv``.

    ``argv`` defaults to ``sys.argv[1:]``.  The command's return value is the exit code (``--help``
    gives 0), so ``python -m benchmarks`` can call each benchmark as a function.  Bad arguments
    print click's usage error and raise ``SystemExit(2)``, as they would from the command line.
    The arguments are the context's ``obj`` (``click.pass_obj``), for a command that records how
    it was called.
    """

    def main(argv: list[str] | None = None) -> int:
        args = sys.argv[1:] if argv is None else list(argv)
        try:
            code = command.main(args=args, prog_name=prog_name, standalone_mode=False, obj=args)
        except click.ClickException as err:
            err.show()
            raise SystemExit(err.exit_code) from None
        except click.Abort:
            click.echo("Aborted!", err=True)
            raise SystemExit(1) from None
        return int(code or 0)

    main.__doc__ = f"Run ``{prog_name}`` on ``argv`` (default: the command line's arguments); return the exit code."
    return main
