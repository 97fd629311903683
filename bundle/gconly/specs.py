"""Options of GC-only mode that libEnsemble's own specs have no field for.

libEnsemble's pydantic ``SimSpecs`` and ``LibeSpecs`` forbid unknown keys, so the
endpoint's template options cannot ride on ``sim_specs``.  They live here, in one
frozen object passed as ``gc_specs=`` to :class:`bundle.Ensemble` or :func:`bundle.libE`.
The endpoint itself stays where libEnsemble users put it: ``sim_specs.globus_compute_endpoint``.
"""

from __future__ import annotations

import dataclasses
import os
import typing as t

from libensemble.manager import LoggedException

from bundle.endpoints.health import DEFAULT_OFFLINE_TIMEOUT
from bundle.errors import BundleError


class GCOnlyConfigError(BundleError, LoggedException, ValueError):  # type: ignore[misc]  # libensemble is untyped
    """Specs that GC-only mode cannot run (say which option to change).

    Also libEnsemble's ``LoggedException``, as every error that stops a GC-only run once it has
    started (an allocation function's order GC-only cannot send, a first sim the endpoint refuses).
    """


@dataclasses.dataclass(frozen=True)
class GCOnlySpecs:
    """How GC-only mode reaches its endpoint and packs simulations.

    Parameters
    ----------
    user_endpoint_config : dict, optional
        Template options for the endpoint (``user_endpoint_config`` of the Globus Compute SDK).
        Checked against the template's JSON schema before anything is submitted.
    template : str, optional
        Bundled template: rendered by a ``"local"`` endpoint (default ``"local"``); for an
        endpoint UUID, the template its administrator configured it from, used only to
        check ``user_endpoint_config`` on the submit side.
    batch_size : int
        Up to this many simulations (work orders) travel in one remote task: one round trip
        for many cheap sims.  Results, statuses and failures stay per simulation.  Only
        sims in flight together can share a task, so set ``nworkers`` to at least
        ``batch_size`` times the endpoint's workers.  Default 1 (one task per sim).
    local_options : dict, optional
        Options of a local endpoint (``run_dir``, ``start_timeout``); the same name as in
        ``GlobusComputeExecutor`` and ``GCSession.get_executor``.
    poll_interval : float
        Longest time, in seconds, the manager sleeps when every virtual worker is busy
        (it wakes at once when a result arrives).  Bounds how late exit criteria such as
        ``wallclock_max`` are noticed.  Default 0.05.
    resume : bool or path
        Continue a run whose calling script died: load the history libEnsemble last saved
        (``libE_specs.save_every_k_sims``, or the abort dump) from the workflow directory (or from
        the directory given) as ``H0``, give its unfinished sims out again (on a cloud endpoint:
        reattach their tasks with ``reload_tasks``), and count ``sim_max`` over the whole run.
        Default False.  See "Resuming after a crash" in the docs.
    result_timeout : float or None
        End the run with :class:`~bundle.gconly.EndpointUnavailableError` when no result
        at all arrives for this many seconds while sims are in flight (the history is saved first).
        Set it to a few times your longest sim.  None waits forever.  Default 86400 (one day).
    require_online : bool
        For an endpoint UUID: ask the Globus Compute service for the endpoint's status before
        submitting, and end the run at once when it is unknown or not online.  False queues the
        sims for an offline endpoint (they run when it comes back).  Default True.
    offline_timeout : float or None
        For an endpoint UUID: end the run with :class:`~bundle.gconly.EndpointUnavailableError`
        (history saved) when the service, having reported the endpoint online, reports it ``offline``
        for this many seconds while sims are in flight: it was stopped or lost, and the sims it held
        never return.  Default 120; None waits for it (``result_timeout`` still applies), as does
        ``require_online=False``, which never asks for the endpoint's status.
    pack_calls : bool
        Send each call's arguments pickled in one ``bytes`` object when the endpoint's serializer
        allows it (faster).  False sends every call plain through the endpoint's serializer, e.g.
        for an endpoint that must not run ``pickle.loads`` on arguments.  Default True.
    fail_fast : int
        Stop the run with :class:`~bundle.gconly.SystematicSimError` (history saved) when
        the first ``fail_fast`` sims to end all failed with the same error (a systematic bug such
        as a ``NameError``, a missing module or a malformed return); the message quotes the remote
        cause and says what to change.  One sim that succeeds first disarms it.  0 never stops a run
        for failing sims.  Default 5.
    remote_workdir : str, optional
        For an endpoint UUID: the folder on the endpoint's file system where sims run, standing for
        the workflow directory (a relative ``libE_specs.ensemble_dir_path`` and the sim directories
        land below it).  ``~`` is the endpoint user's home.  Default ``~/libe_gc_runs``.  Input files
        of this machine (``sim_input_dir``, ``sim_dir_copy_files``, ``sim_dir_symlink_files``) are
        accepted only under an absolute ``remote_workdir`` (a file system the endpoint shares).  Not
        for the local endpoint, whose sims run where libEnsemble's workers would.

    Examples
    --------
    >>> GCOnlySpecs(user_endpoint_config={"engine_type": "GlobusComputeEngine"}, batch_size=8)
    GCOnlySpecs(user_endpoint_config={'engine_type': 'GlobusComputeEngine'}, template=None, batch_size=8, ...)
    """

    user_endpoint_config: dict[str, t.Any] | None = None
    template: str | None = None
    batch_size: int = 1
    local_options: dict[str, t.Any] = dataclasses.field(default_factory=dict)
    poll_interval: float = 0.05
    resume: bool | str | os.PathLike[str] = False
    result_timeout: float | None = 86400.0
    require_online: bool = True
    offline_timeout: float | None = DEFAULT_OFFLINE_TIMEOUT
    sdk_options: dict[str, t.Any] = dataclasses.field(default_factory=dict)
    pack_calls: bool = True
    fail_fast: int = 5
    remote_workdir: str | None = None
    endpoint_options: dict[str, t.Any] | None = None
    """Deprecated spelling of ``local_options`` (warns; removed in the next release)."""

    def __post_init__(self) -> None:
        if self.user_endpoint_config is not None and not isinstance(self.user_endpoint_config, dict):
            raise GCOnlyConfigError(
                f"gc_specs.user_endpoint_config must be a dict or None, not {type(self.user_endpoint_config).__name__}"
            )
        if self.template is not None and not isinstance(self.template, str):
            raise GCOnlyConfigError(f"gc_specs.template must be a template name, not {self.template!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise GCOnlyConfigError(f"gc_specs.batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not isinstance(self.local_options, dict):
            raise GCOnlyConfigError("gc_specs.local_options must be a dict")
        if self.endpoint_options is not None:
            if not isinstance(self.endpoint_options, dict):
                raise GCOnlyConfigError("gc_specs.endpoint_options (deprecated: use local_options) must be a dict")
            from bundle.endpoints.session import merge_local_options

            merged = merge_local_options(
                self.local_options, self.endpoint_options, "GCOnlySpecs(endpoint_options=...)", 4
            )
            object.__setattr__(self, "local_options", merged)
            object.__setattr__(self, "endpoint_options", None)
        if not isinstance(self.poll_interval, (int, float)) or not 0 < self.poll_interval <= 5:
            raise GCOnlyConfigError(f"gc_specs.poll_interval must be in (0, 5] seconds, got {self.poll_interval!r}")
        if not isinstance(self.resume, (bool, str, os.PathLike)) or self.resume == "":
            raise GCOnlyConfigError(f"gc_specs.resume must be True/False or a directory, got {self.resume!r}")
        timeout = self.result_timeout
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
            raise GCOnlyConfigError(f"gc_specs.result_timeout must be seconds > 0 or None, got {timeout!r}")
        from bundle.endpoints.health import check_offline_timeout

        try:
            check_offline_timeout(self.offline_timeout, "gc_specs.offline_timeout")
        except ValueError as err:
            raise GCOnlyConfigError(str(err)) from None
        if not isinstance(self.sdk_options, dict):
            raise GCOnlyConfigError(f"gc_specs.sdk_options must be a dict, not {type(self.sdk_options).__name__}")
        if self.sdk_options:
            from bundle.endpoints.sdk_options import check_sdk_options

            try:
                check_sdk_options(self.sdk_options, local=False)
            except TypeError as err:
                raise GCOnlyConfigError(f"gc_specs.sdk_options: {err}") from None
        if not isinstance(self.require_online, bool):
            raise GCOnlyConfigError(f"gc_specs.require_online must be True or False, got {self.require_online!r}")
        if self.remote_workdir is not None and (not isinstance(self.remote_workdir, str) or not self.remote_workdir):
            raise GCOnlyConfigError(
                "gc_specs.remote_workdir must be a folder of the endpoint (a non-empty string), got "
                f"{self.remote_workdir!r}"
            )
        if isinstance(self.fail_fast, bool) or not isinstance(self.fail_fast, int) or self.fail_fast < 0:
            raise GCOnlyConfigError(
                f"gc_specs.fail_fast must be an integer >= 0 (0 turns it off), got {self.fail_fast!r}"
            )

    @classmethod
    def coerce(cls, value: GCOnlySpecs | t.Mapping[str, t.Any] | None) -> GCOnlySpecs:
        """Return ``value`` as a :class:`GCOnlySpecs` (from a dict, or defaults for None)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, t.Mapping):
            known = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise GCOnlyConfigError(f"unknown gc_specs option(s) {unknown}; known: {sorted(known)}")
            return cls(**dict(value))
        raise GCOnlyConfigError(f"gc_specs must be a GCOnlySpecs or a dict, not {type(value).__name__}")
