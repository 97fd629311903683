"""What every benchmark shares: how a rate is timed, how repetitions are summarized, the machine's state.

See ``benchmarks/README.md`` for the rules these serve.
"""

from __future__ import annotations

import os
import platform
import statistics
import typing as t

import numpy as np

MIN_REPS = 5
"""Repetitions of a full run (quick runs check that a benchmark works and say nothing about speed)."""


def h_window_rate(H: t.Any) -> float:
    """Return sims/s between the first sim given out and the last sim returned, from libEnsemble's history.

    The manager stamps ``sim_started_time`` when it sends a sim and ``sim_ended_time`` when the
    result arrives, with the same code in stock libEnsemble, in its Globus Compute path and in
    GC-only mode: start-up (worker processes, threads, registration) and shut-down are timed on no side.
    """
    ended = H[H["sim_ended"]]
    if len(ended) < 2:
        raise ValueError(f"need at least two ended sims to time a window, got {len(ended)}")
    window = float(np.max(ended["sim_ended_time"]) - np.min(ended["sim_started_time"]))
    return len(ended) / window


def summary(values: list[float]) -> dict[str, t.Any]:
    """Median and spread of repeated measurements, with the values themselves."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def ratios(num: list[float], den: list[float]) -> list[float]:
    """Per-repetition ratios of two series measured side by side."""
    return [a / b for a, b in zip(num, den, strict=True)]


def load_average() -> list[float]:
    """Return the machine's 1, 5 and 15 minute load averages (other work running skews rates)."""
    return [round(v, 2) for v in os.getloadavg()]


def machine() -> dict[str, t.Any]:
    """Return CPUs, Python, platform and load average, recorded with every result file."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": load_average(),
    }
