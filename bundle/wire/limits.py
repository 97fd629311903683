"""Globus Compute's size limits, measured as the service and the endpoint measure them.

The Globus Compute service refuses a task whose payload is over 10 MiB, and the endpoint fails a
task whose serialized result is over 10 MiB (``MaxResultSizeExceeded``, from
``globus_compute_endpoint.engines.helper``).  Both sizes are those of the *serialized* data: the
SDK's default data strategy is base64 text of a pickle, about 4/3 of the raw bytes, so about
7.5 MiB of raw data is the real ceiling.  The functions here serialize as the SDK and the endpoint
do and return the length they would see, so a check before the first submission refuses exactly
what the service or the endpoint would refuse later.
"""

from __future__ import annotations

import typing as t

from bundle.errors import PayloadTooLargeError

if t.TYPE_CHECKING:
    from globus_compute_sdk.serialize import ComputeSerializer

PAYLOAD_LIMIT = 10 * 1024 * 1024
"""Bytes: Globus Compute's limit of a task's payload and of its serialized result (10 MiB, 10,485,760)."""


def submission_size(
    serializer: ComputeSerializer, args: tuple[t.Any, ...], kwargs: dict[str, t.Any] | None = None
) -> int:
    """Return the bytes of a task's payload as the SDK packs it (``serialize(args)``, ``serialize(kwargs)``).

    Parameters
    ----------
    serializer : ComputeSerializer
        The executor's serializer.
    args, kwargs
        The task's arguments.

    Returns
    -------
    int
    """
    return len(serializer.pack_buffers([serializer.serialize(args), serializer.serialize(kwargs or {})]))


def result_size(serializer: ComputeSerializer, value: object) -> int:
    """Return the bytes of a task's result as the endpoint serializes it (the default strategy)."""
    return len(serializer.serialize(value))


def check_size(
    size: int,
    what: str,
    change: str,
    *,
    at_least: bool = False,
    limit: int = PAYLOAD_LIMIT,
    error: type[PayloadTooLargeError] = PayloadTooLargeError,
) -> None:
    """Refuse ``size`` bytes over ``limit``, saying what was measured and what to change.

    Parameters
    ----------
    size : int
        Measured bytes.
    what : str
        What was measured, e.g. ``"the result of one task (1 sim of 1 row)"``.
    change : str
        What to change, one sentence.
    at_least : bool
        ``size`` is a lower bound (raw bytes, too many to serialize for a measure).
    limit : int
        The limit in bytes.
    error : type
        The exception raised (a mode's own subclass).

    Raises
    ------
    PayloadTooLargeError
    """
    if size <= limit:
        return
    measured = f"at least {size:,} bytes" if at_least else f"{size:,} bytes once serialized"
    raise error(
        f"{what} would be {measured}, over Globus Compute's limit of {limit:,} bytes (10 MiB) per task "
        f"and per result, so the service or the endpoint would refuse it. What to change: {change}",
        what=what,
        size=size,
        limit=limit,
    )


def rough_size(values: t.Iterable[t.Any]) -> int:
    """Return the raw bytes of the arrays, buffers and strings among ``values`` (and in lists, tuples, dicts).

    A cheap lower bound of what serializing them costs, used to measure only arguments that may be large.
    """
    total = 0
    stack = list(values)
    seen = 0
    while stack and seen < 10_000:
        value = stack.pop()
        seen += 1
        nbytes = getattr(value, "nbytes", None)
        if isinstance(nbytes, int):
            total += nbytes
        elif isinstance(value, (bytes, bytearray, str)):
            total += len(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
    return total
