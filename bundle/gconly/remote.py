"""The function that runs a batch of simulations in one remote task.

It is registered once per endpoint and ``sim_f``, and sent **by value**: the endpoint's
Python needs ``sim_f``'s own imports, not this package.
"""

from __future__ import annotations

import builtins
import types
import typing as t

BATCH_FUNCTION_NAME = "libe_gconly_sim_batch"

BatchItem = tuple[bool, t.Any, float, float]
"""``(ok, sim_f's return value or the error text, start time, end time)`` for one simulation."""


def _sim_batch(calls: list[tuple[t.Any, ...]]) -> list[BatchItem]:  # pragma: no cover - runs remotely
    """Call ``sim_f`` once per argument tuple, keeping each result or error apart."""
    import time
    import traceback

    results = []
    for args in calls:
        start = time.time()
        try:
            out = sim_f(*args)  # type: ignore[name-defined]  # noqa: F821 - bound by make_batch_function
        except Exception as err:
            text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
            results.append((False, text, start, time.time()))
        else:
            results.append((True, out, start, time.time()))
    return results


def make_batch_function(sim_f: t.Callable[..., t.Any]) -> t.Callable[[list[tuple[t.Any, ...]]], list[BatchItem]]:
    """Return a copy of the batch runner bound to ``sim_f`` that serializers send by value.

    The copy's globals hold only the builtins and ``sim_f``, and its module is ``__main__``,
    so dill (the SDK's default code serializer) pickles its code rather than a reference to
    this module.

    Parameters
    ----------
    sim_f : callable
        The simulation function.

    Returns
    -------
    callable
        ``f(calls) -> [(ok, out_or_error_text, start, end), ...]``.
    """
    glb: dict[str, t.Any] = {"__builtins__": builtins, "sim_f": sim_f}
    fn = types.FunctionType(_sim_batch.__code__, glb, BATCH_FUNCTION_NAME)
    fn.__module__ = "__main__"
    fn.__qualname__ = BATCH_FUNCTION_NAME
    fn.__doc__ = f"Run a batch of {getattr(sim_f, '__qualname__', sim_f)!s} simulations."
    return t.cast(t.Callable[[list[tuple[t.Any, ...]]], list[BatchItem]], fn)
