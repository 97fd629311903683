"""Errors raised by GC-only mode before or while it submits simulations."""

from __future__ import annotations

from bundle.errors import BundleError


class GCOnlyConfigError(BundleError, ValueError):
    """Specs that GC-only mode cannot run (say which option to change)."""


class SimSerializationError(BundleError, TypeError):
    """``sim_f`` or a simulation input that the endpoint's serializer cannot serialize.

    Attributes
    ----------
    what : str
        The object that failed, e.g. ``"sim_f"`` or ``"sim_specs['vocs']"``.
    """

    def __init__(self, message: str, *, what: str) -> None:
        super().__init__(message)
        self.what = what


class SimOutputError(BundleError, ValueError):
    """A simulation returned something libEnsemble cannot put in the history."""


class SystematicSimError(BundleError, RuntimeError):
    """The first sims of a GC-only run all failed with the same error (``gc_specs.fail_fast``).

    The run stops early (libEnsemble saves the history first); the message quotes the remote
    cause and says what to change.

    Attributes
    ----------
    cause : str
        The line of the remote error that names it, e.g. ``"NameError: name 'np' is not defined"``.
    """

    def __init__(self, message: str, *, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


class EndpointUnavailableError(BundleError, RuntimeError):
    """The endpoint cannot run the ensemble's sims: unreachable, offline, or silent for too long.

    The run ends with this error (libEnsemble saves the history first); the message names the
    endpoint and what to check.

    Attributes
    ----------
    endpoint : str
        The endpoint, as given in ``sim_specs.globus_compute_endpoint``.
    """

    def __init__(self, message: str, *, endpoint: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint
