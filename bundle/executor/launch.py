"""From libEnsemble's resource words to one normalized ``resource_specification`` and a launch line.

``MPIExecutor.submit`` takes ``num_procs``, ``num_nodes``, ``procs_per_node`` and
``extra_args`` (in which ``-n``/``-N``/``--ntasks-per-node``-style options also
count, read with the endpoint launcher's own table).  :func:`mpi_spec` turns them into the integer ``num_nodes``,
``ranks_per_node`` and ``num_ranks`` that Parsl's MPI mode needs (never empty,
never fractional), with the rest of ``extra_args`` as ``launcher_options``.
:func:`launch_prefix` composes the prefix the engine's launcher will use, with
Parsl's own composer, so a dry run knows the launch line.
"""

from __future__ import annotations

import os
import re
import shlex
import typing as t
from dataclasses import dataclass

from bundle.errors import ResourceSpecificationError
from bundle.wire.resource_spec import normalize_mpi_spec


@dataclass(frozen=True)
class LauncherFlags:
    """The options of one MPI launcher that carry libEnsemble's resource words.

    Attributes
    ----------
    ranks, nodes, ranks_per_node : tuple of str
        Option names read from ``extra_args`` as ``num_procs``, ``num_nodes`` and ``procs_per_node``
        (empty when the launcher has no such option).
    """

    ranks: tuple[str, ...]
    nodes: tuple[str, ...]
    ranks_per_node: tuple[str, ...]

    def names(self) -> set[str]:
        """Return every option name of this table."""
        return {*self.ranks, *self.nodes, *self.ranks_per_node}


#: One table per launcher Parsl's MPI mode composes (``mpi_launcher``), after libEnsemble's MPI runners
#: (``libensemble/executors/mpi_runner.py``); the words Parsl's composer writes are among them.  The same
#: option can mean different things: ``-N`` is a node count for ``srun`` but ranks per node for ``aprun``.
LAUNCHER_FLAGS: dict[str, LauncherFlags] = {
    "mpiexec": LauncherFlags(
        ranks=("-n", "-np", "--np", "--n"),
        nodes=(),
        ranks_per_node=("-ppn", "--ppn", "-npernode", "--npernode"),
    ),
    "srun": LauncherFlags(ranks=("-n", "--ntasks"), nodes=("-N", "--nodes"), ranks_per_node=("--ntasks-per-node",)),
    "aprun": LauncherFlags(ranks=("-n",), nodes=(), ranks_per_node=("-N",)),
}


def launcher_flags(mpi_launcher: str) -> LauncherFlags:
    """Return the resource-word table of ``mpi_launcher``.

    Raises
    ------
    ResourceSpecificationError
        When the launcher is not one Parsl's MPI mode knows.
    """
    try:
        return LAUNCHER_FLAGS[mpi_launcher]
    except KeyError:
        raise ResourceSpecificationError(
            f"unknown mpi_launcher {mpi_launcher!r}; use one of {', '.join(sorted(LAUNCHER_FLAGS))}"
        ) from None


def _refuse_foreign(tokens: list[str], mpi_launcher: str, flags: LauncherFlags) -> None:
    """Refuse another launcher's resource option that ``mpi_launcher`` would not read the same way."""
    foreign = set().union(*(f.names() for f in LAUNCHER_FLAGS.values())) - flags.names()
    for tok in tokens:
        name = tok.partition("=")[0]
        if name in foreign:
            raise ResourceSpecificationError(
                f"extra_args option {name} is not a resource option of {mpi_launcher}; "
                "give num_procs, num_nodes or procs_per_node instead"
            )


def _take(tokens: list[str], names: tuple[str, ...]) -> int | None:
    """Remove ``name value`` or ``name=value`` for any of ``names`` from ``tokens``; return the value."""
    found: int | None = None
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        name, eq, raw = tok.partition("=")
        if name in names:
            if not eq:
                if i + 1 >= len(tokens):
                    raise ResourceSpecificationError(f"extra_args option {tok!r} needs a value")
                raw = tokens[i + 1]
                del tokens[i : i + 2]
            else:
                del tokens[i]
            try:
                found = int(raw)
            except ValueError:
                raise ResourceSpecificationError(f"extra_args option {name} needs an integer, got {raw!r}") from None
            continue
        i += 1
    return found


def mpi_spec(
    num_procs: int | None = None,
    num_nodes: int | None = None,
    procs_per_node: int | None = None,
    extra_args: str | None = None,
    default: t.Mapping[str, t.Any] | None = None,
    mpi_launcher: str = "mpiexec",
) -> dict[str, t.Any]:
    """Map ``MPIExecutor.submit``'s resource words to a normalized MPI ``resource_specification``.

    Parameters
    ----------
    num_procs, num_nodes, procs_per_node : int, optional
        As in ``MPIExecutor.submit``; explicit values win over the same words in ``extra_args``.
    extra_args : str, optional
        Launcher arguments.  Rank, node and per-node counts in it are read as resource words; the
        rest is passed to the launcher as ``launcher_options``.
    default : Mapping, optional
        The executor's default ``resource_specification``, used when no resource word is given.
    mpi_launcher : str
        The endpoint's launcher; its table in :data:`LAUNCHER_FLAGS` says which options are resource words.

    Returns
    -------
    dict
        Integer ``num_nodes``, ``ranks_per_node`` and ``num_ranks`` that agree, plus
        ``launcher_options`` when any remain.

    Raises
    ------
    ResourceSpecificationError
        When the words disagree, do not divide evenly, are not positive integers, or ``extra_args``
        holds another launcher's resource option.
    """
    flags = launcher_flags(mpi_launcher)
    tokens = shlex.split(extra_args) if extra_args else []
    x_ranks, x_nodes, x_ppn = (_take(tokens, names) for names in (flags.ranks, flags.nodes, flags.ranks_per_node))
    _refuse_foreign(tokens, mpi_launcher, flags)
    words = {
        "num_ranks": num_procs if num_procs is not None else x_ranks,
        "num_nodes": num_nodes if num_nodes is not None else x_nodes,
        "ranks_per_node": procs_per_node if procs_per_node is not None else x_ppn,
    }
    spec: dict[str, t.Any] = {k: v for k, v in words.items() if v is not None}
    if not spec:
        spec = {k: v for k, v in dict(default or {}).items() if k != "launcher_options"}
    options = " ".join(shlex.quote(tok) for tok in tokens)
    default_options = dict(default or {}).get("launcher_options")
    options = " ".join(filter(None, [default_options, options]))
    if options:
        spec["launcher_options"] = options
    try:
        return normalize_mpi_spec(spec)
    except ResourceSpecificationError as err:
        given = ", ".join(
            f"{k}={v}"
            for k, v in (
                ("num_procs", num_procs),
                ("num_nodes", num_nodes),
                ("procs_per_node", procs_per_node),
                ("extra_args", extra_args),
            )
            if v is not None
        )
        # In the words of MPIExecutor.submit's arguments, which the user wrote.
        text = re.sub(r"\branks_per_node\b", "procs_per_node", re.sub(r"\bnum_ranks\b", "num_procs", str(err)))
        raise ResourceSpecificationError(f"cannot launch with {given or 'the default resources'}: {text}") from None


def allocation_hosts() -> list[str]:
    """Return the distinct hosts of the batch allocation this process runs in (empty outside one).

    Returns
    -------
    list of str
        From ``PBS_NODEFILE`` or ``SLURM_JOB_NODELIST`` (expanded with ``scontrol`` when it is found).
    """
    nodefile = os.environ.get("PBS_NODEFILE")
    if nodefile and os.path.isfile(nodefile):
        with open(nodefile) as fh:
            return list(dict.fromkeys(line.strip() for line in fh if line.strip()))
    nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST")
    if nodelist:
        import shutil
        import subprocess

        if shutil.which("scontrol"):
            out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.split()
        return [nodelist]
    return []


def launch_prefix(mpi_launcher: str, spec: t.Mapping[str, t.Any], hosts: list[str] | None = None) -> str:
    """Compose the launcher prefix the engine will put before the app, with Parsl's composer.

    Parameters
    ----------
    mpi_launcher : str
        ``mpiexec``, ``srun`` or ``aprun``.
    spec : Mapping
        A normalized MPI ``resource_specification``.
    hosts : list of str, optional
        Hosts of the task; placeholders ``<node1>``... when unknown.

    Returns
    -------
    str
        For example ``mpiexec -n 2 -ppn 2 -hosts localhost``.
    """
    from parsl.executors.high_throughput.mpi_prefix_composer import compose_all

    nodes = int(spec["num_nodes"])
    names = list(hosts or [])[:nodes] or [f"<node{i + 1}>" for i in range(nodes)]
    prefixes = compose_all(mpi_launcher, dict(spec), names)
    return " ".join(prefixes["PARSL_MPI_PREFIX"].split())


def template_option(template: t.Any, options: t.Mapping[str, t.Any] | None, name: str) -> t.Any:
    """Return a template option's value: the user's, else the schema's default, else None.

    Parameters
    ----------
    template : EndpointTemplate or None
        The template the endpoint renders (None when unknown).
    options : Mapping or None
        The ``user_endpoint_config``.
    name : str
        Option name.

    Returns
    -------
    object
        The value, or None.
    """
    if options and options.get(name) is not None:
        return options[name]
    if template is None:
        return None
    return template.schema.get("properties", {}).get(name, {}).get("default")


def max_nodes(template: t.Any, options: t.Mapping[str, t.Any] | None) -> int | None:
    """Return how many nodes one task can get from an endpoint rendered from ``template``.

    Parameters
    ----------
    template : EndpointTemplate or None
        The template (None when unknown: no limit is checked).
    options : Mapping or None
        The ``user_endpoint_config``.

    Returns
    -------
    int or None
        ``nodes_per_block`` when the template has it; for a template without it (``local``), the
        nodes of the allocation the driver runs in, or 1; None when the template is unknown.
    """
    if template is None:
        return None
    nodes = template_option(template, options, "nodes_per_block")
    if nodes is not None:
        return int(nodes)
    return len(allocation_hosts()) or 1
