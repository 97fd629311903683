"""Is the endpoint there?  A start-up status check, and which errors mean "the endpoint", not "the sim".

A GC-only run that cannot reach its endpoint must end with a clear error instead of marking
every sim ``TASK_FAILED`` or waiting forever:

* a cloud endpoint (UUID) is asked for its status once, before anything is submitted
  (``Client.get_endpoint_status``); an unknown, unauthorised or offline endpoint ends the run;
* a failure that names the endpoint or the service rather than the sim (a local endpoint whose
  workers never start: :class:`~bundle.errors.EndpointStartError`; a cloud endpoint that cannot
  start a user endpoint for ``user_endpoint_config``; the service refusing the submission:
  ``globus_sdk.GlobusAPIError`` / ``globus_sdk.NetworkError``) ends the run;
* a cloud endpoint reported offline for ``offline_timeout`` seconds while sims are in flight ends
  the run (:mod:`bundle.endpoints.health`);
* :class:`ResultWatch` ends the run when no result at all arrives for ``result_timeout`` seconds
  while sims are in flight.
"""

from __future__ import annotations

import time
import typing as t

from libensemble.manager import LoggedException

from bundle.endpoints.health import start_failure_reason, start_refusal
from bundle.errors import BundleError, EndpointShutdownError, EndpointStartError

__all__ = [
    "EndpointUnavailableError",
    "ResultWatch",
    "check_endpoint_online",
    "endpoint_failure",
    "is_service_error",
    "wait_local_ready",
]

_HINT_CLOUD = (
    "Check that the endpoint is running (globus-compute-endpoint list on its host, or the Globus web app), "
    "that you may use it, and that this machine reaches the Globus Compute service"
)


class EndpointUnavailableError(BundleError, LoggedException, RuntimeError):  # type: ignore[misc]  # libensemble is untyped
    """The endpoint cannot run the ensemble's sims: unreachable, offline, or silent for too long.

    The run ends with this error (libEnsemble saves the history first); the message names the
    endpoint and what to check.  It is also libEnsemble's ``LoggedException``, which a stock run
    raises for any error that stops the manager.

    Attributes
    ----------
    endpoint : str
        The endpoint, as given in ``sim_specs.globus_compute_endpoint``.
    """

    def __init__(self, message: str, *, endpoint: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


def is_service_error(err: BaseException) -> bool:
    """Return whether ``err`` comes from the Globus Compute service or the network, not from a sim."""
    import globus_sdk

    return isinstance(err, (globus_sdk.GlobusAPIError, globus_sdk.NetworkError))


def endpoint_failure(err: BaseException, endpoint: str) -> EndpointUnavailableError | None:
    """Return the run-ending error for a task failure that is the endpoint's, or None for a sim's own."""
    if isinstance(err, EndpointStartError):
        return EndpointUnavailableError(
            f"endpoint {endpoint!r} could not start its workers, so no sim can run: {err}\n"
            "Check the template's worker_init and launcher (gc_specs.user_endpoint_config), or raise "
            "gc_specs.local_options['start_timeout'] if workers start slowly here.",
            endpoint=endpoint,
        )
    if isinstance(err, EndpointShutdownError):
        return EndpointUnavailableError(f"endpoint {endpoint!r} was shut down during the run: {err}", endpoint=endpoint)
    reason = start_failure_reason(err)
    if reason is not None:
        refusal = start_refusal(endpoint, reason, err, "gc_specs.user_endpoint_config")
        return EndpointUnavailableError(str(refusal), endpoint=endpoint)
    if is_service_error(err):
        return EndpointUnavailableError(
            f"the Globus Compute service refused work for endpoint {endpoint}: {type(err).__name__}: {err}\n"
            f"{_HINT_CLOUD}.",
            endpoint=endpoint,
        )
    return None


def check_endpoint_online(executor: t.Any, endpoint: str) -> str:
    """Ask the Globus Compute service for a cloud endpoint's status; return it when ``"online"``.

    Parameters
    ----------
    executor : globus_compute_sdk.Executor
        The endpoint's executor (its ``client`` is asked).
    endpoint : str
        The endpoint UUID.

    Returns
    -------
    str
        The status reported (``"online"``), or ``"unknown"`` when ``executor`` has no SDK client.

    Raises
    ------
    EndpointUnavailableError
        When the service does not know the endpoint, refuses the request, cannot be reached,
        or reports the endpoint as not online.
    """
    client = getattr(executor, "client", None)
    if client is None:  # not an SDK Executor (nothing to ask)
        return "unknown"
    try:
        status = client.get_endpoint_status(endpoint)
    except Exception as err:
        if not is_service_error(err):
            raise
        code = getattr(err, "http_status", None)
        what = {404: "does not know", 403: "does not let you use", 401: "did not accept your login for"}.get(
            t.cast(int, code), "could not be asked about"
        )
        raise EndpointUnavailableError(
            f"the Globus Compute service {what} endpoint {endpoint} ({type(err).__name__}: {err}). "
            f"{_HINT_CLOUD}; check the UUID in sim_specs.globus_compute_endpoint.",
            endpoint=endpoint,
        ) from err
    state = str((status or {}).get("status", "unknown"))
    if state != "online":
        raise EndpointUnavailableError(
            f"endpoint {endpoint} is {state}: tasks sent to it would wait until it comes back. Start it "
            "(globus-compute-endpoint start <name> on its host), or set gc_specs.require_online=False to queue "
            "the sims for it anyway.",
            endpoint=endpoint,
        )
    return state


def wait_local_ready(executor: t.Any, endpoint: str) -> None:
    """Start a local endpoint's engine and wait until its workers have connected, before the run starts.

    The engine's start-up (seconds, more on a loaded host) then counts against no exit criterion
    (``wallclock_max``), as worker start-up does not in a stock run.  Bounded: the engine fails its
    start after ``start_timeout`` seconds from the launch of its first block.

    Parameters
    ----------
    executor : LocalEndpoint
        The run's local endpoint (anything else is left alone).
    endpoint : str
        The endpoint, for the message.

    Raises
    ------
    EndpointUnavailableError
        When the workers cannot start.
    """
    from bundle.endpoints.local import LocalEndpoint

    if not isinstance(executor, LocalEndpoint):
        return
    deadline = time.monotonic() + 2 * executor.start_timeout + 60
    try:
        while not executor.wait_ready() and time.monotonic() < deadline:
            pass
    except Exception as err:
        failure = endpoint_failure(err, endpoint)
        if failure is None:
            raise
        raise failure from err


class ResultWatch:
    """Notice when no result has arrived for ``timeout`` seconds while sims are in flight.

    Parameters
    ----------
    timeout : float or None
        Seconds without any result; None never times out.
    """

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.last = time.monotonic()

    def progress(self) -> None:
        """Restart the clock: a result arrived, or the first sim went out after a quiet spell."""
        self.last = time.monotonic()

    def expired(self) -> float:
        """Seconds since the last progress when past ``timeout``, else 0."""
        if self.timeout is None:
            return 0.0
        quiet = time.monotonic() - self.last
        return quiet if quiet > self.timeout else 0.0

    def stalled(self, quiet: float, sim_ids: list[int], endpoint: str) -> EndpointUnavailableError:
        """Return the error that ends a run after ``quiet`` seconds without a result.

        Parameters
        ----------
        quiet : float
            Seconds since the last result (from :meth:`expired`).
        sim_ids : list of int
            The sims in flight, sorted.
        endpoint : str
            The endpoint.

        Returns
        -------
        EndpointUnavailableError
            Saying what to check and which option to raise.
        """
        return EndpointUnavailableError(
            f"no result from endpoint {endpoint!r} for {quiet:.0f} s (gc_specs.result_timeout="
            f"{self.timeout:g}) while {len(sim_ids)} sims were in flight (sim_ids {sim_ids[:20]}"
            f"{' ...' if len(sim_ids) > 20 else ''}). Check that the endpoint is running and its workers can "
            "start (endpoint log, batch queue); raise gc_specs.result_timeout if one sim can take longer.",
            endpoint=endpoint,
        )
