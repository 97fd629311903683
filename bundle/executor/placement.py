"""Whether a block can place an MPI task of ``num_nodes`` nodes: checked at submit, before anything runs.

Parsl's MPI mode hands each task whole entries of the block's node list: ``nodes_per_block``
nodes, each listed ``slots_per_node`` times, shared by up to ``max_workers_per_block`` tasks at
once.  Three requests cannot be served and are refused here with what to change:

* more nodes than a block has (the task would wait forever);
* ``num_nodes > 1`` with ``slots_per_node > 1``: slots are entries of the node list, so the
  nodes of a multi-node task could be two slots of one node;
* a task that may have to wait for nodes while more than two tasks share the block: when a
  task finishes, Parsl's ``MPITaskScheduler`` (Parsl 2026.10) retries its waiting tasks in a
  loop that never ends if one of them still does not fit (fixed upstream in Parsl pull request
  3800, not released), and no task of that block returns again.  With at most two tasks in a
  block a waiting task always fits once the other ends; with ``max_workers_per_block x
  num_nodes`` within the block's node entries no task waits at all.
"""

from __future__ import annotations

import dataclasses
import typing as t

from bundle.errors import ResourceSpecificationError
from bundle.executor.launch import allocation_hosts, template_option


@dataclasses.dataclass(frozen=True)
class BlockShape:
    """What one block of an endpoint offers MPI tasks.

    Attributes
    ----------
    nodes : int
        Nodes in a block (``nodes_per_block``, or the driver's allocation for the ``local`` template).
    slots : int
        Times each node is listed (``slots_per_node``).
    workers : int
        Tasks the block runs or holds at once (``max_workers_per_block``).
    per_block_option : bool
        Whether the template has ``nodes_per_block`` (else the allocation sets the nodes).
    """

    nodes: int
    slots: int
    workers: int
    per_block_option: bool

    @property
    def entries(self) -> int:
        """Entries of the node list Parsl's MPI mode hands out (nodes x slots)."""
        return self.nodes * self.slots


def block_shape(template: t.Any, options: t.Mapping[str, t.Any] | None) -> BlockShape | None:
    """Return the block an endpoint rendered from ``template`` with ``options`` runs MPI tasks in.

    Parameters
    ----------
    template : EndpointTemplate or None
        The template (None when unknown: nothing can be checked).
    options : Mapping or None
        The ``user_endpoint_config``.

    Returns
    -------
    BlockShape or None
        None for an unknown template.
    """
    if template is None:
        return None
    options = options or {}
    per_block = template_option(template, options, "nodes_per_block")
    if per_block is not None:
        nodes = int(per_block)
        slots = int(template_option(template, options, "slots_per_node") or 1)
        workers = template_option(template, options, "max_workers_per_block")
        return BlockShape(nodes, slots, int(workers) if workers is not None else nodes * slots, True)
    # The local template: this host outside an allocation, the allocation's nodes inside one.  It runs
    # slots_per_node tasks at once unless max_workers_per_block says otherwise, and outside an allocation
    # lists this host max_workers_per_block times unless slots_per_node says otherwise.
    hosts = allocation_hosts()
    explicit_workers = options.get("max_workers_per_block")
    explicit_slots = options.get("slots_per_node")
    workers = int(explicit_workers or explicit_slots or 1)
    if hosts:
        slots = int(explicit_slots or 1)
    else:
        slots = int(explicit_slots or workers)
    return BlockShape(len(hosts) or 1, slots, workers, False)


def check_fits(shape: BlockShape | None, num_nodes: int, template_name: str | None) -> None:
    """Refuse a task of ``num_nodes`` nodes that a block of ``shape`` cannot run (see the module docstring).

    Parameters
    ----------
    shape : BlockShape or None
        From :func:`block_shape` (None: nothing is checked).
    num_nodes : int
        The task's nodes.
    template_name : str or None
        For the message.

    Raises
    ------
    ResourceSpecificationError
        Saying which option to change.
    """
    if shape is None:
        return
    where = f"the endpoint ({template_name!r} template)"
    if num_nodes > shape.nodes:
        how = (
            "raise the template's nodes_per_block"
            if shape.per_block_option
            else "run the driver inside a batch allocation of that many nodes"
        )
        raise ResourceSpecificationError(
            f"a task asks for num_nodes={num_nodes} but {where} gives a task at most {shape.nodes} node(s); "
            f"ask for fewer nodes or {how}"
        )
    if num_nodes > 1 and shape.slots > 1:
        raise ResourceSpecificationError(
            f"a task asks for num_nodes={num_nodes} but {where} splits each node into slots_per_node={shape.slots} "
            "slots for one-node tasks, so two of its nodes could be slots of one node; set slots_per_node to 1 "
            "for multi-node tasks (pack one-node tasks on an endpoint of their own)"
        )
    if shape.workers > 2 and shape.workers * num_nodes > shape.entries:
        most = max(2, shape.entries // num_nodes)
        raise ResourceSpecificationError(
            f"a task asks for num_nodes={num_nodes} on {where} whose block of {shape.nodes} node(s) runs up to "
            f"max_workers_per_block={shape.workers} tasks at once: such a task can wait for nodes held by others, "
            "and Parsl's MPI scheduler then stops starting tasks for good once one finishes while a waiting task "
            f"still does not fit; set max_workers_per_block to at most {most} (or raise nodes_per_block)"
        )
