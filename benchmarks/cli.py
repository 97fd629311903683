"""The benchmarks' command lines, with click (as the ``libe-gc`` command line).

Each benchmark module has a click command ``cli`` and a ``main(argv) -> int`` that runs it as a
function, so ``python -m benchmarks`` can call the others in its own process.
"""

from __future__ import annotations

import sys

import click


def run_command(command: click.Command, argv: list[str] | None, prog_name: str) -> int:
    """Run ``command`` on ``argv`` (default: this process's arguments) and return its exit code.

    The arguments are also in the click context's ``obj["argv"]``, for a record of the command line.

    Parameters
    ----------
    command : click.Command
        The benchmark's command; it returns an exit code.
    argv : list of str, optional
        Its arguments.
    prog_name : str
        How usage and error messages name the program.

    Returns
    -------
    int
        The command's exit code; 2 for a usage error (shown on stderr), 0 after ``--help``.
    """
    try:
        args = list(sys.argv[1:] if argv is None else argv)
        code = command.main(args=args, prog_name=prog_name, standalone_mode=False, obj={"argv": args})
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.exceptions.Abort:
        return 1
    return int(code or 0)
