"""libe-gc-bundle: run libEnsemble simulations on Globus Compute endpoints, with MPI first-class.

Heavy dependencies load on first use, so ``import bundle`` and the CLI stay fast.
"""

from __future__ import annotations

import importlib
import typing as t

__version__ = "0.1.0"

__all__ = [
    "Ensemble",
    "GCOnlySpecs",
    "GCSession",
    "GlobusComputeExecutor",
    "GlobusComputeTask",
    "LocalEndpoint",
    "__version__",
    "libE",
]

if t.TYPE_CHECKING:
    from bundle.endpoints.local import LocalEndpoint
    from bundle.endpoints.session import GCSession
    from bundle.executor import GlobusComputeExecutor, GlobusComputeTask
    from bundle.gconly import Ensemble, GCOnlySpecs, libE

_LAZY = {
    "LocalEndpoint": "bundle.endpoints.local",
    "GCSession": "bundle.endpoints.session",
    "GlobusComputeExecutor": "bundle.executor",
    "GlobusComputeTask": "bundle.executor",
    "Ensemble": "bundle.gconly",
    "GCOnlySpecs": "bundle.gconly",
    "libE": "bundle.gconly",
}


def __getattr__(name: str) -> t.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bundle' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
