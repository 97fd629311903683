"""Normalize a Parsl MPI ``resource_specification``.

Parsl's MPI mode hangs or fails late on specs that look reasonable: a spec
without ``num_nodes`` never returns a result, and ``{"num_nodes": 1,
"num_ranks": 1}`` yields ``ranks_per_node="1.0"`` which ``srun`` rejects.  This
module turns any consistent request into integer ``num_nodes``,
``ranks_per_node`` and ``num_ranks`` that agree, and refuses the rest with an
error that says what to change.
"""

from __future__ import annotations

import numbers
import typing as t

from bundle.errors import ResourceSpecificationError

MPI_KEYS = frozenset({"num_nodes", "ranks_per_node", "num_ranks", "launcher_options"})


def _positive_int(spec: t.Mapping[str, t.Any], key: str) -> int | None:
    """Read ``spec[key]`` as a positive integer, or None when absent.

    Any integer type counts (a NumPy integer a sim read from its history rows, as ``MPIExecutor``
    takes it), and a float with an integral value; ``bool`` does not.  The result is a Python ``int``.
    """
    if spec.get(key) is None:
        return None
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, float)) or value != int(value) or value < 1:
        raise ResourceSpecificationError(f"resource_specification[{key!r}] must be a positive integer, got {value!r}")
    return int(value)


def normalize_mpi_spec(spec: t.Mapping[str, t.Any] | None) -> dict[str, t.Any]:
    """Return a complete, integer MPI resource specification.

    Parameters
    ----------
    spec : Mapping or None
        Any subset of ``num_nodes``, ``ranks_per_node``, ``num_ranks`` and
        ``launcher_options``.  Missing counts are derived from the others; an
        empty spec means one rank on one node.

    Returns
    -------
    dict
        With integer ``num_nodes``, ``ranks_per_node`` and ``num_ranks``
        (``num_ranks == num_nodes * ranks_per_node``), plus
        ``launcher_options`` when given.

    Raises
    ------
    ResourceSpecificationError
        Unknown keys, non-integer or non-positive counts, ranks that do not
        divide evenly across nodes, or counts that disagree.
    """
    spec = dict(spec or {})
    unknown = set(spec) - MPI_KEYS
    if unknown:
        raise ResourceSpecificationError(
            f"unknown resource_specification keys {sorted(unknown)}; MPI tasks accept {sorted(MPI_KEYS)}"
        )
    nodes = _positive_int(spec, "num_nodes")
    rpn = _positive_int(spec, "ranks_per_node")
    ranks = _positive_int(spec, "num_ranks")

    if ranks is not None and nodes is not None and rpn is None and ranks % nodes:
        raise ResourceSpecificationError(
            f"num_ranks={ranks} does not divide evenly across num_nodes={nodes}; "
            f"use a multiple of {nodes} ranks, or a num_nodes that divides {ranks}"
        )
    if nodes is None:
        if ranks is not None and rpn is not None:
            if ranks % rpn:
                raise ResourceSpecificationError(
                    f"num_ranks={ranks} is not a multiple of ranks_per_node={rpn}; set num_nodes explicitly"
                )
            nodes = ranks // rpn
        else:
            nodes = 1
    if rpn is None:
        rpn = ranks // nodes if ranks is not None else 1
    if ranks is None:
        ranks = nodes * rpn
    if ranks != nodes * rpn:
        raise ResourceSpecificationError(
            f"num_ranks={ranks} disagrees with num_nodes={nodes} x ranks_per_node={rpn}; "
            "give any two of them, or three that agree"
        )
    out: dict[str, t.Any] = {"num_nodes": nodes, "ranks_per_node": rpn, "num_ranks": ranks}
    if spec.get("launcher_options") is not None:
        opts = spec["launcher_options"]
        if not isinstance(opts, str):
            raise ResourceSpecificationError(f"launcher_options must be a string, got {type(opts).__name__}")
        out["launcher_options"] = opts
    return out
