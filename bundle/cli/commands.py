"""The ``libe-gc`` command line."""

from __future__ import annotations

import sys
import typing as t

import click

from bundle import __version__
from bundle.cli.endpoint import endpoint, parse_options, templates_show
from bundle.cli.errors import CleanErrorsGroup, preflight


@click.group(cls=CleanErrorsGroup)
@click.version_option(__version__, prog_name="libe-gc")
def main() -> None:
    """Run libEnsemble ensembles on Globus Compute endpoints, with MPI first-class."""


@main.command()
@click.option("--endpoint", default="local", show_default=True, help="'local', 'local:<template>' or an endpoint UUID.")
@click.option(
    "--template", default=None, help="Bundled template (local), or the one a cloud endpoint was configured from."
)
@click.option(
    "--option", "options", multiple=True, metavar="KEY=VALUE", help="user_endpoint_config option; repeatable."
)
@click.option("--sims", default=16, show_default=True, type=click.IntRange(1, 100000), help="Sims per phase.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 256), help="Sims in flight.")
@click.option("--mpi-ranks", default=2, show_default=True, type=click.IntRange(1, 64), help="Ranks of each MPI sim.")
@click.option(
    "--out",
    "out_dir",
    default="libe-gc-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Output folder.",
)
def demo(
    endpoint: str,
    template: str | None,
    options: tuple[str, ...],
    sims: int,
    workers: int,
    mpi_ranks: int,
    out_dir: str,
) -> None:
    """Run a complete ensemble on an endpoint: MPI sims through GlobusComputeExecutor, then GC-only Python sims.

    A persistent generator on the libEnsemble manager proposes points; a live bar follows the sims; a
    summary table and a timeline picture (timeline.png) close the run.
    """
    from pathlib import Path

    from bundle.cli.demo.run import DemoConfig, run_demo
    from bundle.errors import BundleError

    cfg = DemoConfig(endpoint, template, parse_options(options), sims, workers, mpi_ranks, Path(out_dir))
    preflight(endpoint)
    try:
        results = run_demo(cfg)
    except (BundleError, ValueError, TypeError) as err:
        raise click.ClickException(str(err)) from err
    from bundle.cli.demo.report import summarize

    failed = sum(summarize(r.H, r.wall)["failed"] for r in results)
    if failed:
        raise click.ClickException(f"{failed} sim(s) failed; see the histories in {out_dir}")


@main.command()
@click.option("--endpoint", default="local", show_default=True, help="'local', 'local:<template>' or an endpoint UUID.")
@click.option("--template", default=None, help="Bundled template for a local endpoint (default: local).")
@click.option(
    "--option", "options", multiple=True, metavar="KEY=VALUE", help="user_endpoint_config option; repeatable."
)
@click.option("--mpi-ranks", default=2, show_default=True, type=click.IntRange(1, 64), help="Ranks of the MPI task.")
def smoke(endpoint: str, template: str | None, options: tuple[str, ...], mpi_ranks: int) -> None:
    """Run a Python function, a ShellFunction and an MPIFunction on an endpoint and print the results."""
    from bundle.cli.smoke import main_smoke, smoke_options
    from bundle.errors import BundleError

    preflight(endpoint)
    try:
        opts = smoke_options(endpoint, template, parse_options(options))
        code = main_smoke(endpoint, template, opts, mpi_ranks)
    except (BundleError, ValueError, TypeError) as err:
        raise click.ClickException(str(err)) from err
    sys.exit(code)


@main.group()
def templates() -> None:
    """Bundled endpoint templates."""


@templates.command("list")
def templates_list() -> None:
    """List the bundled endpoint templates and where they are installed."""
    from bundle.endpoints.templates import endpoint_configs_dir, get_template, list_templates

    click.echo(f"# {endpoint_configs_dir()}")
    for name in list_templates():
        desc = get_template(name).schema.get("description", "")
        click.echo(f"{name:12s} {desc}")


@main.command()
@click.option(
    "--endpoint", default=None, help="A cloud endpoint UUID: compare its Python and check options against its schema."
)
@click.option("--template", default=None, help="Bundled template whose options to check.")
@click.option(
    "--option", "options", multiple=True, metavar="KEY=VALUE", help="user_endpoint_config option; repeatable."
)
def doctor(endpoint: str | None, template: str | None, options: tuple[str, ...]) -> None:
    """Check what breaks runs in the field (versions, launchers, scheduler, credentials, options) and how to fix it."""
    from rich.console import Console
    from rich.table import Table

    from bundle.cli import doctor as checks
    from bundle.endpoints.python_check import FAIL, OK, WARN, Check

    opts = parse_options(options)
    # Options are checked against --template, else against the endpoint's published schema.
    results = checks.run_checks(template, opts if template or not endpoint else {})
    if endpoint:
        try:
            preflight(endpoint)  # unreachable service or no way to log in: say so at once, no prompt
        except click.ClickException as err:
            results.append(Check("endpoint metadata", FAIL, err.message, "see the message"))
        else:
            results += checks.check_endpoint(endpoint, opts)
    table = Table(title="libe-gc doctor")
    for column in ("check", "status", "found", "how to fix"):
        table.add_column(column, overflow="fold")
    style = {OK: "green", WARN: "yellow", FAIL: "bold red"}
    for c in results:
        table.add_row(c.name, f"[{style[c.status]}]{c.status}[/]", c.found, c.fix)
    Console().print(table)
    failed = [c.name for c in results if c.status == FAIL]
    if failed:
        raise click.ClickException(f"{len(failed)} check(s) failed: {', '.join(failed)}")


@main.command()
@click.option("--quick", is_flag=True, help="A short run (a minute or two) that checks the benchmarks work.")
@click.option(
    "--out",
    "out_dir",
    default="benchmark-results",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the JSON results and the markdown summary.",
)
@click.option(
    "--only", default=None, help="Comma-separated benchmarks to run (executor,gpus,gconly,scaling,payload,slurm)."
)
def bench(quick: bool, out_dir: str, only: str | None) -> None:
    """Run the benchmark suite (python -m benchmarks): every figure a ratio measured side by side in one run.

    The benchmarks live in the source checkout (benchmarks/), not in the installed package.
    """
    run = _benchmarks_main()
    argv = [*(["--quick"] if quick else []), "--out", out_dir, *(["--only", only] if only else [])]
    code = run(argv)
    if code:
        raise click.ClickException(f"some benchmarks failed (exit {code}); see the output above")


def _benchmarks_main() -> t.Callable[[list[str]], int]:
    """Return the benchmark suite's ``main``, or fail clearly outside a source checkout."""
    import importlib
    from pathlib import Path

    hint = (
        "the benchmarks live in the libe-gc-bundle source checkout (benchmarks/), not in the installed package: "
        "clone the repository, 'pip install -e .' there, and run 'libe-gc bench' or 'python -m benchmarks' "
        "from the checkout"
    )
    try:
        module = importlib.import_module("benchmarks.__main__")
    except ImportError as err:
        raise click.ClickException(f"cannot import the benchmarks ({err}); {hint}") from err
    root = Path(module.__file__ or "").resolve().parents[1]
    if not (root / "bundle" / "cli.py").is_file() or not callable(getattr(module, "main", None)):
        raise click.ClickException(f"'benchmarks' at {root} is not this project's benchmark suite; {hint}")
    return t.cast(t.Callable[[list[str]], int], module.main)


templates.add_command(templates_show)
main.add_command(endpoint)
