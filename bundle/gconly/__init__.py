"""GC-only mode: libEnsemble's manager submits pure-Python sims to a Globus Compute endpoint.

No worker processes start: ``nworkers`` virtual workers (:class:`~bundle.gconly.dispatch.VirtualWorkerComm`) hand the
stock ``Manager``'s sim work orders to a :class:`~bundle.gconly.dispatch.SimDispatcher`, which
submits ``sim_f`` (registered once per endpoint) and answers the manager as a worker would.
"""

from __future__ import annotations

from bundle.gconly.availability import EndpointUnavailableError
from bundle.gconly.calls import SimPayloadTooLargeError
from bundle.gconly.ensemble import Ensemble
from bundle.gconly.failfast import SystematicSimError
from bundle.gconly.launch import ERROR_DIR, libE, run_gconly
from bundle.gconly.normalize import SimOutputError
from bundle.gconly.serialization import SimSerializationError
from bundle.gconly.specs import GCOnlyConfigError, GCOnlySpecs

__all__ = [
    "ERROR_DIR",
    "EndpointUnavailableError",
    "Ensemble",
    "GCOnlyConfigError",
    "GCOnlySpecs",
    "SimOutputError",
    "SimPayloadTooLargeError",
    "SimSerializationError",
    "SystematicSimError",
    "libE",
    "run_gconly",
]
