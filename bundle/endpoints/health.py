"""Is a cloud endpoint still able to run the tasks sent to it?  What the bundle learns while tasks wait.

Two ways tasks on an endpoint UUID wait forever, which no task result reports:

* the endpoint is stopped (``globus-compute-endpoint stop``, its host or network lost) while they run or wait:
  the Globus Compute service then reports it ``offline`` (the daemon's last heartbeat says it is shutting down)
  and nothing ever answers them; a task that was running there is lost with it;
* the endpoint cannot start a user endpoint for the tasks' ``user_endpoint_config`` (its template's schema
  refuses an option, the identity cannot be mapped, ...): the daemon reports why, once, and the service fails
  the tasks waiting at that moment with that report, while tasks sent a moment later wait for a user endpoint
  that never starts (the daemon ignores a start command for the one it is still reaping).

One :class:`EndpointHealth` per SDK ``Executor`` (:func:`health_of`) keeps what the bundle learnt: the
endpoint's refusal of the configuration (:meth:`EndpointHealth.record`; it holds for every later task of that
executor), and the service's answers to status requests, made in a short background thread at most every few
seconds while someone waits on a task (:meth:`EndpointHealth.check`, which never blocks on the network).  Only an
endpoint seen ``online`` and then reported ``offline`` counts as gone: one offline from the start is waited for,
as the service holds its tasks (``pending_timeout`` and ``require_online`` cover that case).
"""

from __future__ import annotations

import logging
import threading
import time
import typing as t
import weakref

from bundle.errors import BundleError, EndpointOfflineError, UserEndpointStartError

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_OFFLINE_TIMEOUT",
    "EndpointHealth",
    "check_offline_timeout",
    "health_of",
    "start_failure_reason",
    "start_refusal",
]

DEFAULT_OFFLINE_TIMEOUT = 120.0
"""Seconds an endpoint may be reported offline (after being online) before the tasks waiting on it fail.

Long enough for ``globus-compute-endpoint restart``; short enough that a stopped endpoint ends a run in minutes."""

START_FAILURE_MARKERS = (
    "Unable to start user endpoint process",
    "failure starting user endpoint",
    "Failed to start or unexpected error",
)
"""How ``globus-compute-endpoint`` (4.x) words its report that a user endpoint did not start; the service passes
the report on as the error of the tasks that were waiting for it."""


def start_failure_reason(err: BaseException) -> str | None:
    """Return the endpoint's reason when ``err`` is its report that a user endpoint could not start, else None.

    Parameters
    ----------
    err : BaseException
        A task's error (the SDK's ``TaskExecutionFailed`` carries the endpoint's report as its remote data).

    Returns
    -------
    str or None
        The report's first line, e.g. ``Unable to start user endpoint process for alice [exit code: 73;
        (ValidationError) Additional properties are not allowed ('node_per_block' was unexpected)``; None for
        any other error (a sim's own, a lost worker pool).
    """
    if type(err).__name__ != "TaskExecutionFailed":
        return None
    text = str(getattr(err, "remote_data", "") or err)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or not any(marker in lines[0] for marker in START_FAILURE_MARKERS):
        return None
    return lines[0] if len(lines[0]) <= 600 else lines[0][:600] + " ..."


def check_offline_timeout(value: float | None, where: str) -> float | None:
    """Return ``value`` as seconds (or None), refusing anything else.

    Parameters
    ----------
    value : float or None
        Seconds an endpoint may be reported offline; None never gives up.
    where : str
        How the option is spelled, for the error message.

    Returns
    -------
    float or None

    Raises
    ------
    ValueError
        For a value that is not a positive number of seconds or None.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{where} must be a positive number of seconds or None, got {value!r}")
    return float(value)


class EndpointHealth:
    """What the bundle knows of one cloud endpoint's ability to run the tasks of one SDK ``Executor``.

    Parameters
    ----------
    client : globus_compute_sdk.Client
        The executor's client (asked for the endpoint's status).
    endpoint_id : str
        The endpoint UUID.
    """

    def __init__(self, client: t.Any, endpoint_id: str) -> None:
        self._client = client
        self.endpoint_id = endpoint_id
        self._lock = threading.Lock()
        self._refusal: UserEndpointStartError | None = None
        self._asked_at = -float("inf")
        self._asking = False
        self._seen_online = False
        self._offline_since: float | None = None
        self._status = "unknown"

    # --- what the tasks report -----------------------------------------------------------------

    def record(self, err: BaseException) -> UserEndpointStartError | None:
        """Remember the endpoint's report that it could not start a user endpoint; return it as the bundle's error.

        Parameters
        ----------
        err : BaseException
            A task's error.

        Returns
        -------
        UserEndpointStartError or None
            None when ``err`` is not such a report.
        """
        reason = start_failure_reason(err)
        if reason is None:
            return None
        with self._lock:
            if self._refusal is None:
                self._refusal = start_refusal(self.endpoint_id, reason, err)
            return self._refusal

    def mark_online(self) -> None:
        """Note that the service reported the endpoint online (e.g. in a check made before the first task)."""
        with self._lock:
            self._seen_online = True
            self._offline_since = None
            self._status = "online"
            self._asked_at = time.monotonic()

    # --- the service's view ------------------------------------------------------------------------

    def check(self, offline_timeout: float | None) -> BundleError | None:
        """Return the error that ends a wait on this endpoint, or None while tasks may still come back.

        Asks the service for the endpoint's status in a background thread when the last answer is older
        than a few seconds (``offline_timeout / 3``, between 1 and 10 s); never waits for the answer.

        Parameters
        ----------
        offline_timeout : float or None
            Seconds the endpoint may be reported offline after being seen online; None never gives up.

        Returns
        -------
        UserEndpointStartError, EndpointOfflineError or None
        """
        now = time.monotonic()
        with self._lock:
            if self._refusal is not None:
                return self._refusal
            if offline_timeout is None:
                return None
            period = min(10.0, max(1.0, offline_timeout / 3))
            if not self._asking and now - self._asked_at >= period:
                self._asking = True
                self._asked_at = now
                threading.Thread(target=self._ask, name="libe-gc-endpoint-status", daemon=True).start()
            since = self._offline_since
            if since is None or now - since < offline_timeout:
                return None
            status = self._status
        return EndpointOfflineError(
            f"endpoint {self.endpoint_id} went offline while tasks waited on it: the Globus Compute service has "
            f"reported it {status!r} for {now - since:.0f} s (offline_timeout={offline_timeout:g} s). It was "
            "stopped, or lost its host or network; tasks that were running there are lost with it. Start it again "
            "(globus-compute-endpoint start <name> on its host, 'globus-compute-endpoint list' shows its state) "
            "and rerun; raise offline_timeout to wait longer for an endpoint that restarts.",
            endpoint=self.endpoint_id,
        )

    def _ask(self) -> None:
        """Ask the service for the endpoint's status (background thread); an unanswered request changes nothing."""
        status: str | None = None
        try:
            answer = self._client.get_endpoint_status(self.endpoint_id)
            status = str(answer.get("status", "unknown")) if isinstance(answer, t.Mapping) else None
        except Exception as err:  # the service or the network: no news about the endpoint itself
            log.debug("status of endpoint %s not known: %s: %s", self.endpoint_id, type(err).__name__, err)
        with self._lock:
            self._asking = False
            if status is None:
                return
            self._status = status
            if status == "online":
                self._seen_online = True
                self._offline_since = None
            elif status == "offline" and self._seen_online and self._offline_since is None:
                log.warning("endpoint %s is reported offline while tasks wait on it", self.endpoint_id)
                self._offline_since = time.monotonic()


def start_refusal(
    endpoint: str, reason: str, err: BaseException, config_name: str = "user_endpoint_config"
) -> UserEndpointStartError:
    """Return the bundle's error for an endpoint's report that it could not start a user endpoint.

    Parameters
    ----------
    endpoint : str
        The endpoint UUID.
    reason : str
        The report's first line (:func:`start_failure_reason`).
    err : BaseException
        The task error that carried the report (kept as the cause).
    config_name : str
        How the caller's configuration option is spelled, for the message.

    Returns
    -------
    UserEndpointStartError
    """
    hint = ""
    if "ValidationError" in reason:
        hint = (
            f" The template's schema on the endpoint refused an option of {config_name}: correct it. Name the template "
            "the endpoint was configured from (template=... in GlobusComputeExecutor or GCOnlySpecs) and the bundle "
            "checks the options against it before anything is sent."
        )
    refusal = UserEndpointStartError(
        f"endpoint {endpoint} could not start a user endpoint for {config_name}, so no task of that configuration "
        f"can run: {reason}.{hint} Its tasks are no longer sent (they would wait forever).",
        endpoint=endpoint,
        reason=reason,
    )
    refusal.__cause__ = err
    return refusal


_HEALTH: weakref.WeakKeyDictionary[t.Any, EndpointHealth] = weakref.WeakKeyDictionary()
_HEALTH_LOCK = threading.Lock()


def health_of(executor: t.Any) -> EndpointHealth | None:
    """Return the :class:`EndpointHealth` of an SDK ``Executor`` (one per executor); None for a local endpoint.

    Parameters
    ----------
    executor : globus_compute_sdk.Executor or LocalEndpoint
        An endpoint executor from :class:`~bundle.endpoints.session.GCSession`.

    Returns
    -------
    EndpointHealth or None
        None for an executor without a service client (the local endpoint reports its own start and shutdown
        failures on the tasks).
    """
    # From its defining module: the class itself, even where ``globus_compute_sdk.Executor`` is replaced.
    from globus_compute_sdk.sdk.executor import Executor

    client = getattr(executor, "client", None) if isinstance(executor, Executor) else None
    if client is None:
        return None
    with _HEALTH_LOCK:
        health = _HEALTH.get(executor)
        if health is None:
            health = _HEALTH[executor] = EndpointHealth(client, str(executor.endpoint_id))
        return health
