"""Which engine GC-only sims run on, and the resource specification they carry.

Every bundled template defaults to ``engine_type: GlobusMPIEngine``.  GC-only mode sends
Python sims, and a real ``GlobusMPIEngine`` (Parsl's MPI mode) refuses a task with no
``resource_specification`` (``InvalidResourceSpecification``: "MPI mode requires ...");
given a one-rank spec it runs the Python task, but each task then holds a whole node (or,
with ``slots_per_node``, one slot) for its whole run.  So, before anything is submitted:

* when ``engine_type`` is not set and the template offers ``GlobusComputeEngine`` (every
  bundled template does), GC-only asks for it through ``user_endpoint_config``: sims are then
  ordinary Python tasks, as many per node as the engine has workers;
* when the user chose ``GlobusMPIEngine`` (``engine_type``, or an MPI-only option such as
  ``max_workers_per_block``, ``slots_per_node`` or ``mpi_launcher``), each sim is sent with
  a one-rank spec, and the cost is logged (one sim per node or slot at a time);
* for an endpoint UUID whose template is unknown nothing can be decided here; a first sim
  refused for a missing spec then ends the run with an error naming the options to set
  (:func:`mpi_spec_refusal`), rather than failing every sim one by one.
"""

from __future__ import annotations

import logging
import typing as t

from bundle.gconly.specs import GCOnlyConfigError

log = logging.getLogger(__name__)

ONE_RANK: dict[str, int] = {"num_nodes": 1, "ranks_per_node": 1, "num_ranks": 1}
"""The spec a Python task needs on a ``GlobusMPIEngine``: one rank on one node (or slot)."""

MPI_ONLY_OPTIONS = ("max_workers_per_block", "slots_per_node", "mpi_launcher")
"""Template options that only a ``GlobusMPIEngine`` endpoint uses: setting one chooses that engine."""

_MPI_REFUSAL = "MPI mode requires optional parsl_resource_specification"


class EngineChoice(t.NamedTuple):
    """What GC-only sends: the ``user_endpoint_config`` and each task's ``resource_specification``."""

    user_endpoint_config: dict[str, t.Any] | None
    resource_specification: dict[str, t.Any] | None
    note: str
    """One line saying what was chosen and why (logged at the start of a run)."""


def choose_engine(template: t.Any, user_endpoint_config: dict[str, t.Any] | None) -> EngineChoice:
    """Decide the engine and task spec of a GC-only run.

    Parameters
    ----------
    template : EndpointTemplate or None
        The template the endpoint renders (None: an endpoint UUID given without ``template``).
    user_endpoint_config : dict or None
        The user's template options.

    Returns
    -------
    EngineChoice
    """
    config = dict(user_endpoint_config) if user_endpoint_config is not None else None
    chosen = (config or {}).get("engine_type")
    if template is None:
        if chosen == "GlobusMPIEngine":
            return EngineChoice(config, dict(ONE_RANK), _mpi_note("the endpoint"))
        return EngineChoice(config, None, "template unknown: sims go without a resource_specification")
    props = template.schema.get("properties", {})
    offered = props.get("engine_type", {}).get("enum", [])
    engine = chosen or props.get("engine_type", {}).get("default")
    if engine != "GlobusMPIEngine":
        return EngineChoice(config, None, f"engine {engine or 'GlobusComputeEngine'}: sims are plain Python tasks")
    mpi_options = sorted(k for k in MPI_ONLY_OPTIONS if (config or {}).get(k) is not None)
    if chosen is None and not mpi_options and "GlobusComputeEngine" in offered:
        config = {**(config or {}), "engine_type": "GlobusComputeEngine"}
        return EngineChoice(
            config,
            None,
            f"template {template.name!r} defaults to GlobusMPIEngine; GC-only asks for engine_type "
            "GlobusComputeEngine (set engine_type to choose yourself)",
        )
    return EngineChoice(config, dict(ONE_RANK), _mpi_note(f"the {template.name!r} template's GlobusMPIEngine"))


def _mpi_note(what: str) -> str:
    return (
        f"{what} runs each sim as a one-rank MPI task ({ONE_RANK}); each sim holds one node or slot while it "
        "runs. For many Python sims per node set engine_type 'GlobusComputeEngine' in user_endpoint_config"
    )


def mpi_spec_refusal(err: BaseException, endpoint: str) -> GCOnlyConfigError | None:
    """Return the run-ending error when a sim was refused for lacking an MPI spec, else None.

    Parameters
    ----------
    err : BaseException
        A sim task's failure.
    endpoint : str
        The endpoint, for the message.

    Returns
    -------
    GCOnlyConfigError or None
    """
    text = str(getattr(err, "remote_data", "") or err)
    if "InvalidResourceSpecification" not in text or _MPI_REFUSAL not in text:
        return None
    return GCOnlyConfigError(
        f"endpoint {endpoint} runs a GlobusMPIEngine, which refuses Python tasks without a resource_specification. "
        "Set gc_specs.template to the template the endpoint was configured from (GC-only then asks for "
        "engine_type 'GlobusComputeEngine'), or set engine_type in gc_specs.user_endpoint_config "
        "('GlobusComputeEngine' if the template offers it; 'GlobusMPIEngine' sends each sim as a one-rank task)."
    )
