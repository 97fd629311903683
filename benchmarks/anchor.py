"""libEnsemble's own Globus Compute path on a local engine: the anchor GC-only mode is compared with.

Stock ``libE`` with ``sim_specs["globus_compute_endpoint"]`` set runs each sim through
libEnsemble's ``GlobusComputeRunner`` (``libensemble/utils/runners.py``): every worker builds its
own ``globus_compute_sdk.Executor(endpoint_id=...)``, registers ``sim_f`` with it, and per sim
submits ``(H rows, persis_info, sim_specs, libE_info)`` and blocks on the future.  Here only the
network is taken out: the ``Executor`` that runner builds is replaced by :class:`EngineExecutor`,
which submits to an already started local endpoint (the same warmed engine GC-only mode uses),
with the endpoint's serializer, so the engine receives the task as it would from the service.
Each worker still serializes and registers its own copy of ``sim_f``, as with its own
``Executor``.

Workers are threads (``comms="threads"``): a worker process could not reach the engine started by
the benchmark's process.  A thread blocked on a future holds no GIL, so this costs the anchor nothing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import typing as t

from benchmarks.common import h_window_rate


class EngineExecutor:
    """Stand-in for the ``globus_compute_sdk.Executor`` libEnsemble builds: submits to a started local endpoint.

    Parameters
    ----------
    endpoint : LocalEndpoint
        A started local endpoint, shared by all workers.
    """

    def __init__(self, endpoint: t.Any) -> None:
        self.endpoint = endpoint

    def register_function(self, fn: t.Callable[..., t.Any], **_: t.Any) -> str:
        """Serialize ``fn`` as a registration would; return its function id on the endpoint."""
        try:
            return str(self.endpoint.register_function(fn))
        except ValueError:  # another worker registered it: pay for the serialization all the same
            self.endpoint.serializer.serialize(fn)
            return str(self.endpoint._fn_ids[fn])

    def submit_to_registered_function(
        self, function_id: str, args: t.Any = None, kwargs: dict[str, t.Any] | None = None
    ) -> t.Any:
        """Submit as ``Executor.submit_to_registered_function`` does (libEnsemble passes a list of arguments)."""
        return self.endpoint.submit_to_registered_function(function_id, args=tuple(args or ()), kwargs=kwargs)

    def shutdown(self, *_: t.Any, **__: t.Any) -> None:
        """Leave the shared endpoint running (libEnsemble calls this when each worker ends)."""


@contextlib.contextmanager
def on_engine(endpoint: t.Any) -> t.Iterator[None]:
    """Within the block, libEnsemble's ``GlobusComputeRunner`` builds :class:`EngineExecutor` on ``endpoint``."""
    from libensemble.utils.runners import GlobusComputeRunner

    original = GlobusComputeRunner._get_globus_compute_executor

    def factory(self: t.Any) -> t.Callable[..., EngineExecutor]:
        return lambda endpoint_id=None, **_: EngineExecutor(endpoint)

    GlobusComputeRunner._get_globus_compute_executor = factory  # type: ignore[method-assign]
    try:
        yield
    finally:
        GlobusComputeRunner._get_globus_compute_executor = original  # type: ignore[method-assign]


def run_libe(specs: dict[str, t.Any], libE_specs: dict[str, t.Any], prefix: str) -> tuple[t.Any, float]:
    """Run stock ``libE`` in a temporary folder; return its history and wall seconds of the call.

    Raises
    ------
    RuntimeError
        When not every sim ended.
    """
    from libensemble.libE import libE

    sims = specs["exit_criteria"]["sim_max"]
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            start = time.perf_counter()
            H, _, flag = libE(
                specs["sim_specs"],
                specs["gen_specs"],
                specs["exit_criteria"],
                specs["persis_info"],
                specs["alloc_specs"],
                {"gen_on_manager": True, **libE_specs},
            )
            elapsed = time.perf_counter() - start
        finally:
            os.chdir(cwd)
    done = int(H["sim_ended"].sum())
    if flag != 0 or done < sims:
        raise RuntimeError(f"libE run ({libE_specs}) failed: flag {flag}, {done} of {sims} sims ended")
    return H, elapsed


def measure_anchor(endpoint: t.Any, specs: dict[str, t.Any], nworkers: int) -> tuple[float, float]:
    """Run libEnsemble's own Globus Compute path on ``endpoint``; return (sims/s in the H window, call seconds)."""
    specs = {**specs, "sim_specs": {**specs["sim_specs"], "globus_compute_endpoint": str(endpoint.endpoint_id)}}
    with on_engine(endpoint):
        H, elapsed = run_libe(specs, {"nworkers": nworkers, "comms": "threads"}, "bench-anchor-")
    return h_window_rate(H), elapsed
