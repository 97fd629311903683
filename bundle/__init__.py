"""libe-gc-bundle: run libEnsemble simulations on Globus Compute endpoints, with MPI first-class.

Heavy dependencies load on first use, so ``import bundle`` and the CLI stay fast.
"""

from __future__ import annotations

import typing as t

__version__ = "0.1.0"

__all__ = ["Ensemble", "GCOnlySpecs", "GCSession", "LocalEndpoint", "__version__", "libE"]

if t.TYPE_CHECKING:
    from bundle.gconly import Ensemble, GCOnlySpecs, libE
    from bundle.local import LocalEndpoint
    from bundle.session import GCSession


def __getattr__(name: str) -> t.Any:
    if name == "LocalEndpoint":
        from bundle.local import LocalEndpoint

        return LocalEndpoint
    if name == "GCSession":
        from bundle.session import GCSession

        return GCSession
    if name in ("Ensemble", "GCOnlySpecs", "libE"):
        from bundle import gconly

        return getattr(gconly, name)
    raise AttributeError(f"module 'bundle' has no attribute {name!r}")
