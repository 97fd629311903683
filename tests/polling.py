"""Waiting in tests: poll a condition until it holds or a timeout passes."""

from __future__ import annotations

import time
import typing as t


def wait_for(predicate: t.Callable[[], t.Any], timeout: float, period: float = 0.05) -> t.Any:
    """Poll ``predicate`` every ``period`` s until truthy; return its value (the last falsy one after ``timeout``)."""
    end = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < end:
        time.sleep(period)
        value = predicate()
    return value
