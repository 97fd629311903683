"""Warn before the first submission when a cloud endpoint runs another Python than the submit side.

Functions travel as Python bytecode (dill, the SDK's default code serializer), which does
not load across Python minor versions: the task then fails on the endpoint with an error
that does not say why.  The Globus Compute service knows which Python an endpoint runs
(``Client.get_endpoint_metadata``); :func:`warn_on_python_mismatch` asks it once per
endpoint, with a time limit, and warns saying what to change.  It never fails a run: an
endpoint whose metadata cannot be read (network, credentials, an endpoint that has not
started yet) is logged at debug level and the run goes on.
"""

from __future__ import annotations

import logging
import platform
import threading
import typing as t
import warnings
from dataclasses import dataclass

from bundle.errors import EndpointPythonWarning

log = logging.getLogger(__name__)

OK, WARN, FAIL = "ok", "warn", "fail"
"""The status of a :class:`Check`."""

METADATA_TIMEOUT = 10.0
"""Seconds to wait for the service's answer before giving up (silently) on the check."""

_checked: set[str] = set()
_lock = threading.Lock()


@dataclass(frozen=True)
class Check:
    """The outcome of one check.

    Parameters
    ----------
    name : str
        What was checked.
    status : str
        ``"ok"``, ``"warn"`` or ``"fail"``.
    found : str
        What was found (never a secret).
    fix : str
        What to do when the status is not ``ok``.
    """

    name: str
    status: str
    found: str
    fix: str = ""


def compare_endpoint(local_python: str, remote_python: str | None, remote_sdk: str | None) -> Check:
    """Compare the submit side's Python with what an endpoint reports.

    Parameters
    ----------
    local_python : str
        This interpreter's version (``platform.python_version()``).
    remote_python, remote_sdk : str or None
        The endpoint's Python and SDK versions, when known.

    Returns
    -------
    Check
        ``fail`` when the minor versions differ (functions serialized by dill's code strategy
        do not load across Python minor versions), ``warn`` when unknown.
    """
    if not remote_python:
        return Check(
            "endpoint Python", WARN, "unknown", "start the endpoint once (its metadata lists the Python it runs)"
        )
    same = local_python.split(".")[:2] == remote_python.split(".")[:2]
    found = f"endpoint {remote_python} (SDK {remote_sdk or '?'}), submit side {local_python}"
    if same:
        return Check("endpoint Python", OK, found)
    return Check(
        "endpoint Python",
        FAIL,
        found,
        f"use Python {'.'.join(remote_python.split('.')[:2])} on the submit side (functions serialized by "
        "Python bytecode do not load across minor versions), or a source-based serialization strategy",
    )


def _fetch_metadata(client: t.Any, endpoint_id: str, timeout: float) -> dict[str, t.Any] | None:
    """Return the endpoint's metadata, or None if it could not be read within ``timeout`` seconds."""
    box: dict[str, t.Any] = {}

    def ask() -> None:
        try:
            box["data"] = client.get_endpoint_metadata(endpoint_id)
        except Exception as err:  # network, credentials, unknown endpoint: not this check's business
            box["error"] = err

    worker = threading.Thread(target=ask, name="libe-gc-endpoint-metadata", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        log.debug("endpoint %s: no metadata within %g s; Python version not checked", endpoint_id, timeout)
        return None
    if "error" in box:
        err = box["error"]
        log.debug(
            "endpoint %s: metadata not readable (%s); Python version not checked", endpoint_id, type(err).__name__
        )
        return None
    data = box.get("data")
    return data if isinstance(data, dict) else None


def endpoint_python(data: t.Mapping[str, t.Any]) -> tuple[str | None, str | None]:
    """Return (Python version, endpoint version) from ``get_endpoint_metadata``'s answer, when present."""
    nested = data.get("metadata")
    meta: t.Mapping[str, t.Any] = nested if isinstance(nested, dict) else data
    py, sdk = meta.get("python_version"), meta.get("endpoint_version")
    return (py if isinstance(py, str) and py else None, sdk if isinstance(sdk, str) and sdk else None)


def warn_on_python_mismatch(executor: t.Any, endpoint_id: str, timeout: float | None = None) -> str | None:
    """Warn once per endpoint when its Python minor version differs from this interpreter's.

    Parameters
    ----------
    executor : globus_compute_sdk.Executor
        The endpoint's executor; its ``client`` asks the service.
    endpoint_id : str
        The endpoint's UUID.
    timeout : float, optional
        Seconds to wait for the service (default :data:`METADATA_TIMEOUT`).

    Returns
    -------
    str or None
        The warning's text when one was issued.
    """
    with _lock:
        if endpoint_id in _checked:
            return None
        _checked.add(endpoint_id)
    client = getattr(executor, "client", None)
    if client is None or not hasattr(client, "get_endpoint_metadata"):
        log.debug("endpoint %s: executor has no client; Python version not checked", endpoint_id)
        return None
    data = _fetch_metadata(client, endpoint_id, METADATA_TIMEOUT if timeout is None else timeout)
    if data is None:
        return None
    remote, remote_sdk = endpoint_python(data)
    if remote is None:
        log.debug("endpoint %s does not report its Python version", endpoint_id)
        return None
    check = compare_endpoint(platform.python_version(), remote, remote_sdk)
    if check.status != FAIL:
        log.debug("endpoint %s: %s", endpoint_id, check.found)
        return None
    message = f"endpoint {endpoint_id} runs another Python minor version ({check.found}): tasks may fail to " + (
        f"deserialize there. To fix: {check.fix}."
    )
    log.warning("%s", message)
    warnings.warn(message, EndpointPythonWarning, stacklevel=3)
    return message


def forget_checks() -> None:
    """Forget which endpoints were checked (for tests, and after a fork)."""
    with _lock:
        _checked.clear()
