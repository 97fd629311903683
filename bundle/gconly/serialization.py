"""Check, before anything is submitted, that the endpoint can serialize a simulation."""

from __future__ import annotations

import threading
import typing as t
import weakref

from libensemble.manager import LoggedException

from bundle.errors import BundleError

if t.TYPE_CHECKING:
    from globus_compute_sdk.serialize import ComputeSerializer


class SimSerializationError(BundleError, LoggedException, TypeError):  # type: ignore[misc]  # libensemble is untyped
    """``sim_f`` or a simulation input that the endpoint's serializer cannot serialize.

    Also libEnsemble's ``LoggedException`` (the first sim's inputs are checked once the run has started).

    Attributes
    ----------
    what : str
        The object that failed, e.g. ``"sim_f"`` or ``"sim_specs['vocs']"``.
    """

    def __init__(self, message: str, *, what: str) -> None:
        super().__init__(message)
        self.what = what


_SHIPPED: weakref.WeakKeyDictionary[t.Callable[..., t.Any], tuple[t.Callable[..., t.Any], str]] = (
    weakref.WeakKeyDictionary()
)
_SHIPPED_LOCK = threading.Lock()


def serializer_of(executor: t.Any) -> ComputeSerializer:
    """Return the executor's ``ComputeSerializer`` (a default one if it has none)."""
    from globus_compute_sdk.serialize import ComputeSerializer

    ser = getattr(executor, "serializer", None)
    return ser if isinstance(ser, ComputeSerializer) else ComputeSerializer()


def _describe(err: BaseException) -> str:
    cause = err.__cause__ or err.__context__
    inner = f"{type(cause).__name__}: {cause}" if cause is not None else ""
    return f"{type(err).__name__}: {err}" + (f" ({inner})" if inner else "")


def check_serializable(serializer: ComputeSerializer, what: str, obj: object, hint: str = "") -> None:
    """Serialize ``obj`` with the endpoint's serializer or raise a clear error naming ``what``.

    Parameters
    ----------
    serializer : ComputeSerializer
        The endpoint's serializer.
    what : str
        How the user knows this object (``"sim_f"``, ``"sim_specs['user']"``, ...).
    obj : object
        The object to check.
    hint : str
        What to change, appended to the message.

    Raises
    ------
    SimSerializationError
    """
    try:
        serializer.serialize(obj)
    except Exception as err:
        strategy = type(serializer.code_serializer if callable(obj) else serializer.data_serializer).__name__
        raise SimSerializationError(
            f"GC-only mode cannot send {what} to the endpoint: the endpoint's serializer ({strategy}) failed "
            f"with {_describe(err)}. {hint or 'Make it picklable (module-level functions, plain data).'}",
            what=what,
        ) from err


def check_mapping(serializer: ComputeSerializer, what: str, mapping: t.Mapping[str, t.Any], hint: str = "") -> None:
    """Check a dict, naming the first key whose value cannot be serialized."""
    try:
        serializer.serialize(dict(mapping))
    except Exception:
        for key, value in mapping.items():
            check_serializable(serializer, f"{what}[{key!r}]", value, hint)
        check_serializable(serializer, what, dict(mapping), hint)


def ship_checked(serializer: ComputeSerializer, what: str, fn: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
    """Return ``fn`` shipped with the globals it reads (:func:`bundle.wire.shipping.ship`), or refuse it.

    Raises
    ------
    SimSerializationError
        Naming every global ``fn`` reads that would be undefined on the endpoint, or what cannot be
        shipped (:class:`bundle.wire.shipping.ShippingError`).
    """
    from bundle.wire.shipping import ShippingError, remote_name_problems, ship

    try:
        shipped = ship(fn)
    except ShippingError as err:
        message = f"{what} cannot be sent to the endpoint (nothing was submitted): {err}."
        raise SimSerializationError(message, what=what) from None
    problems = remote_name_problems(shipped, type(serializer.code_serializer).__name__)
    if problems:
        raise SimSerializationError(
            f"{what} would fail on the endpoint (nothing was submitted): " + "; ".join(problems) + ".",
            what=what,
        )
    if shipped is fn:
        return fn
    # The same function with the same globals as in an earlier run: reuse that copy, so the endpoint's
    # registration of it is reused too (one registration per endpoint, not per run).
    try:
        payload = serializer.serialize(shipped)
    except Exception:
        return shipped  # check_serializable names the problem later
    with _SHIPPED_LOCK:
        earlier = _SHIPPED.get(fn)
        if earlier is not None and earlier[1] == payload:
            return earlier[0]
        _SHIPPED[fn] = (shipped, payload)
    return shipped
