"""From one finished remote task to the outcome of each simulation it carried.

A task carries one sim, or a batch of sims (``gc_specs.batch_size``), its answer packed or
plain (:mod:`bundle.gconly.wire`).  :func:`sim_outcomes` decodes the answer into one
``(ok, sim_f's return value or the error text, start, end)`` per sim, in the order the
sims were sent; it decides nothing about the run (a failed endpoint is told apart before).
"""

from __future__ import annotations

import typing as t

from bundle.gconly.remote import BatchItem
from bundle.gconly.wire import SimWire


def sim_outcomes(
    result: t.Any, *, count: int, batched: bool, packed: bool, submitted: float, finished: float
) -> list[BatchItem]:
    """Return one outcome per sim of a task that returned ``result``.

    Parameters
    ----------
    result : object
        What the task returned.
    count : int
        Sims the task carried.
    batched : bool
        Whether it carried a list of sims.
    packed : bool
        Whether its answer is packed.
    submitted, finished : float
        When the task went out and when it finished (the times of a one-sim task's outcome).

    Returns
    -------
    list of tuple
        ``(ok, value or error text, start, end)``, ``count`` of them.
    """
    if packed:
        try:
            result = SimWire.answer(result)
        except Exception as err:
            text = f"cannot read the result here: {type(err).__name__}: {err}"
            return [(False, text, submitted, finished)] * count
    if not batched:
        return [(True, result, submitted, finished)]
    if not isinstance(result, list) or len(result) != count:
        return [(False, f"malformed batch result: {result!r:.200}", submitted, finished)] * count
    return [t.cast(BatchItem, tuple(item)) for item in result]
