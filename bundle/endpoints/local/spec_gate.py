"""What the local endpoint refuses before a task reaches the engine: only what would hang a real endpoint.

A real endpoint's interchange reads a task's ``resource_specification`` from the
message header (``json.loads(header or "null") or {}``) and hands it, unchanged, to
``engine.submit``.  The engine checks it itself: Parsl's MPI mode refuses an empty
spec or unknown keys, a ``GlobusComputeEngine`` refuses MPI keys, and the task comes
back failed (``TaskExecutionFailed`` naming ``InvalidResourceSpecification``).  The
local endpoint does the same, so it refuses exactly what a real endpoint refuses.

A few specs pass Parsl's check but never return on a real ``GlobusMPIEngine``
endpoint; the local endpoint refuses those at submit, with
:class:`~bundle.errors.ResourceSpecificationError`:

* no ``num_nodes`` (the worker pool asserts "issue #3427" after the task and stops
  answering), or a ``num_nodes`` that is not a positive integer (Parsl cannot
  count nodes with it);
* more nodes than the engine's worker pool has (the task waits in Parsl's
  backlog forever).

Nothing is filled in or changed: a spec the local endpoint accepts reaches the
engine as a real endpoint would pass it.  Making specs complete is the
submitting side's job (:func:`bundle.wire.resource_spec.normalize_mpi_spec`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import typing as t

from bundle.errors import ResourceSpecificationError

PARSL_MPI_KEYS = frozenset({"num_nodes", "ranks_per_node", "num_ranks", "launcher_options"})
"""Keys Parsl's MPI mode accepts (``parsl.executors.high_throughput.mpi_prefix_composer``)."""


def as_sent(spec: t.Mapping[str, t.Any] | None) -> dict[str, t.Any]:
    """Return ``spec`` as an endpoint's interchange reads it from the task message.

    The SDK sends the spec as a JSON header; the interchange decodes it with
    ``json.loads(header or "null") or {}``.  So ``None`` becomes ``{}`` and tuples
    become lists, as on a real endpoint.

    Parameters
    ----------
    spec : Mapping or None
        The executor's ``resource_specification``.

    Returns
    -------
    dict
        What the engine receives.
    """
    header = json.dumps(spec) if spec is not None else None
    decoded: dict[str, t.Any] = json.loads(header or "null") or {}
    return decoded


def _allocation_nodes() -> int | None:
    """Nodes Parsl's MPI mode finds in the batch allocation this process runs in, counted as Parsl counts them.

    Parsl reads ``SLURM_NODELIST`` first (``scontrol show hostname``), else one node per line of
    ``PBS_NODEFILE`` (a host listed twice is two nodes).  None outside an allocation.
    """
    if os.environ.get("SLURM_NODELIST"):
        if shutil.which("scontrol") is None:
            return None
        out = subprocess.run(
            ["scontrol", "show", "hostname", os.environ["SLURM_NODELIST"]], capture_output=True, text=True
        )
        return len(out.stdout.split()) if out.returncode == 0 else None
    nodefile = os.environ.get("PBS_NODEFILE")
    if nodefile:
        try:
            with open(nodefile) as fh:
                return len(fh.readlines())
        except OSError:
            return None
    return None


def engine_nodes(template: t.Any, options: t.Mapping[str, t.Any] | None) -> int | None:
    """Return how many nodes a ``GlobusMPIEngine`` rendered from ``template`` hands out, or None if unknown.

    Parsl counts one node per line of the node file: the bundled templates list each
    node ``slots_per_node`` times.  The ``local`` template lists this host when it runs
    outside a batch allocation, and leaves the allocation's own list alone inside one.

    Parameters
    ----------
    template : EndpointTemplate
        The rendered template.
    options : Mapping or None
        Its ``user_endpoint_config``.

    Returns
    -------
    int or None
    """
    opts = dict(options or {})
    props = template.schema.get("properties", {})
    if "nodes_per_block" not in props:  # the local template: the pool runs here, with this environment
        inside = _allocation_nodes()
        if inside is not None or os.environ.get("SLURM_NODELIST") or os.environ.get("PBS_NODEFILE"):
            return inside
        return int(opts.get("slots_per_node") or opts.get("max_workers_per_block") or 1)
    nodes = int(opts.get("nodes_per_block") or props["nodes_per_block"].get("default") or 1)
    slots = int(opts.get("slots_per_node") or 1)
    return nodes * slots


def refuse_hanging_spec(spec: t.Mapping[str, t.Any], *, is_mpi: bool, nodes: int | None, template: str) -> None:
    """Raise when a real endpoint would accept ``spec`` and then never answer.

    Parameters
    ----------
    spec : Mapping
        The spec as the engine would receive it (see :func:`as_sent`).
    is_mpi : bool
        Whether the engine is a ``GlobusMPIEngine``.
    nodes : int or None
        Nodes the engine's worker pool has (None: not checked).
    template : str
        Template name, for the message.

    Raises
    ------
    ResourceSpecificationError
        For a spec Parsl accepts but would hang on.
    """
    if not is_mpi or not spec or set(spec) - PARSL_MPI_KEYS:
        return  # the engine answers these itself (a result or InvalidResourceSpecification)
    want = spec.get("num_nodes")
    if want is None:
        raise ResourceSpecificationError(
            f"resource_specification {dict(spec)} has no num_nodes: a GlobusMPIEngine endpoint "
            f"({template!r} template) accepts it and never returns a result (Parsl issue 3427). "
            "Send integer num_nodes, ranks_per_node and num_ranks (bundle.wire.resource_spec.normalize_mpi_spec)."
        )
    if isinstance(want, bool) or not isinstance(want, int) or want < 1:
        raise ResourceSpecificationError(
            f"resource_specification num_nodes={want!r} is not a positive integer: a GlobusMPIEngine endpoint "
            f"({template!r} template) cannot place the task and never returns a result. Send an integer >= 1."
        )
    if nodes is not None and want > nodes:
        raise ResourceSpecificationError(
            f"resource_specification asks for num_nodes={want} but the {template!r} endpoint's worker pool has "
            f"{nodes} node(s) (slots): the task would wait forever. Ask for at most {nodes}, or raise the "
            "template's nodes_per_block / slots_per_node."
        )
