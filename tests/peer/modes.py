"""The two ways the peer suite swaps the bundle into an unmodified libEnsemble test script.

Both patch libEnsemble's module attributes before the script runs (see ``runner.py``), so the
script's own source, imports and asserts stay exactly as shipped:

* **executor**: ``MPIExecutor`` (as ``libensemble.executors.MPIExecutor`` and
  ``libensemble.executors.mpi_executor.MPIExecutor``) becomes :class:`PeerExecutor`, a
  :class:`bundle.GlobusComputeExecutor` on the local endpoint.  A script's
  ``from libensemble.executors.mpi_executor import MPIExecutor`` then binds the swapped class.
* **gconly**: ``libE`` (as ``libensemble.libE.libE`` and the name ``libensemble.ensemble`` calls)
  becomes :func:`gconly_libE`, which sets ``sim_specs["globus_compute_endpoint"] = "local"`` and
  calls ``bundle.libE``.

Patching the names rather than editing the scripts' text keeps every line the script runs
libEnsemble's, works for every spelling of the import that goes through those modules, and
fails loudly (the script then runs stock and the check on the mode's marker fails) if libEnsemble
moves them.
"""

from __future__ import annotations

import os
import sys
import typing as t

import bundle
from bundle import GCOnlySpecs, GlobusComputeExecutor

MARKER = "libe-gc-peer mode"
"""Printed (with the mode) on stderr when a swap takes effect, so the test sees the bundle was used."""

EXECUTOR_OPTIONS: dict[str, t.Any] = {}
"""``user_endpoint_config`` of the swapped-in executor: the ``local`` template as shipped."""

GCONLY_OPTIONS: dict[str, t.Any] = {"engine_type": "GlobusComputeEngine", "max_workers_per_node": 2}
"""``user_endpoint_config`` of GC-only runs: Python workers, one per core of the CI machine."""


def _announce(what: str) -> None:
    print(f"{MARKER}: {what}", file=sys.stderr, flush=True)


def install_executor() -> None:
    """Make every ``MPIExecutor()`` the script builds a :class:`PeerExecutor`."""
    import libensemble.executors as executors
    import libensemble.executors.mpi_executor as mpi_executor

    executors.MPIExecutor = PeerExecutor
    mpi_executor.MPIExecutor = PeerExecutor


class PeerExecutor(GlobusComputeExecutor):  # type: ignore[misc]
    """``MPIExecutor``'s constructor, building a ``GlobusComputeExecutor`` on the local endpoint."""

    def __init__(self, custom_info: dict[str, t.Any] | None = None) -> None:
        if custom_info:
            # MPIExecutor's custom_info picks an MPI runner and its flags: the endpoint's template does that.
            raise RuntimeError(f"peer suite: MPIExecutor(custom_info={custom_info!r}) has no endpoint meaning")
        super().__init__("local", user_endpoint_config=dict(EXECUTOR_OPTIONS))
        _announce(f"executor (GlobusComputeExecutor, pid {os.getpid()})")


def install_gconly() -> None:
    """Make every ``libE()`` call of the script a GC-only run on the local endpoint."""
    import libensemble.ensemble as ensemble

    libe_module = sys.modules["libensemble.libE"]
    libe_module.libE = gconly_libE  # type: ignore[attr-defined]
    ensemble.libE = gconly_libE  # type: ignore[attr-defined]


def gconly_libE(
    sim_specs: t.Any,
    gen_specs: t.Any = None,
    exit_criteria: t.Any = None,
    persis_info: dict[t.Any, t.Any] | None = None,
    alloc_specs: t.Any = None,
    libE_specs: t.Any = None,
    H0: t.Any = None,
) -> tuple[t.Any, dict[t.Any, t.Any], int]:
    """``libE()`` with ``libE()``'s signature, run in GC-only mode on the local endpoint.

    The script's ``sim_specs`` is not changed: the endpoint is set on a copy.
    """
    if isinstance(sim_specs, dict):
        sim = dict(sim_specs, globus_compute_endpoint="local")
    else:
        sim = sim_specs.model_copy(update={"globus_compute_endpoint": "local"})
    _announce("gconly (bundle.libE)")
    gc_specs = GCOnlySpecs(user_endpoint_config=dict(GCONLY_OPTIONS))
    result: tuple[t.Any, dict[t.Any, t.Any], int] = bundle.libE(
        sim, gen_specs, exit_criteria, persis_info, alloc_specs, libE_specs, H0, gc_specs=gc_specs
    )
    return result


INSTALL: dict[str, t.Callable[[], None]] = {"executor": install_executor, "gconly": install_gconly}
"""The swaps by mode name (a stock run imports nothing of this module)."""
