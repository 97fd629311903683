"""Shell scripts a sim submits as a task: ``submit(func=MPIFunction(script))`` or ``func=ShellFunction(script)``.

A script may set up before the launch and clean up after it (``cd``, ``export``, a second
command), with ``$PARSL_MPI_PREFIX`` where the MPI launch goes::

    script = '''set -e
    cd run_7
    export OMP_NUM_THREADS=2
    $PARSL_MPI_PREFIX ./forces.x 1000
    '''
    task = exctr.submit(func=MPIFunction(script), num_procs=4)

The SDK's ``MPIFunction`` puts the launcher in front of the *first* command only, so such a
script would launch ``cd`` (which fails, while the script still exits 0); the bundle therefore
runs every script as a ``ShellFunction`` does (``/bin/bash``, the script as written), on the
endpoint's MPI engine when it holds ``$PARSL_MPI_PREFIX``.  An ``MPIFunction`` script without
``$PARSL_MPI_PREFIX`` is refused: it cannot say where the launch goes.
"""

from __future__ import annotations

import dataclasses
import re
import typing as t

from libensemble.executors.executor import ExecutorException

MPI_PREFIX = re.compile(r"\$(?:PARSL_MPI_PREFIX\b|\{PARSL_MPI_PREFIX\})")
"""``$PARSL_MPI_PREFIX`` or ``${PARSL_MPI_PREFIX}`` in a script."""


@dataclasses.dataclass(frozen=True)
class Script:
    """A script task's command and the options its ``ShellFunction`` carried.

    Attributes
    ----------
    text : str
        The script, as written.
    mpi : bool
        Whether it launches an MPI app (it holds ``$PARSL_MPI_PREFIX``).
    walltime, stdout, stderr
        The function's own options (None when unset).
    """

    text: str
    mpi: bool
    walltime: float | None = None
    stdout: str | None = None
    stderr: str | None = None

    @property
    def wire_text(self) -> str:
        """The script as sent: braces doubled, since ``ShellFunction`` formats its command with ``str.format``."""
        return self.text.replace("{", "{{").replace("}", "}}")

    def with_prefix(self, prefix: str) -> str:
        """Return the script with the launch prefix in the place of ``$PARSL_MPI_PREFIX`` (a task's ``runline``)."""
        return MPI_PREFIX.sub(lambda _m: prefix, self.text)


def script_of(func: t.Any) -> Script | None:
    """Return the script of a ``ShellFunction`` / ``MPIFunction`` given as ``submit(func=...)``, else None.

    Raises
    ------
    ExecutorException
        For an ``MPIFunction`` whose script does not hold ``$PARSL_MPI_PREFIX``, or a command that is not a string.
    """
    from globus_compute_sdk import MPIFunction, ShellFunction

    if not isinstance(func, ShellFunction):
        return None
    text = func.cmd
    if not isinstance(text, str) or not text.strip():
        raise ExecutorException(f"{type(func).__name__} needs a command (a non-empty string), got {text!r}")
    mpi = bool(MPI_PREFIX.search(text))
    if isinstance(func, MPIFunction) and not mpi:
        raise ExecutorException(
            "an MPIFunction script must say where the MPI launch goes: write $PARSL_MPI_PREFIX before the app, "
            "e.g. MPIFunction('cd run\\n$PARSL_MPI_PREFIX ./app args'). (The SDK's MPIFunction would put the "
            "launcher before the first command only; a serial script goes as ShellFunction(...).)"
        )
    return Script(text, mpi, func.walltime, func.stdout, func.stderr)
