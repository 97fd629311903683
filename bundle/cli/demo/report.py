"""What the demo shows at the end: a summary table and a timeline picture of the sims."""

from __future__ import annotations

import typing as t
from pathlib import Path

import numpy as np

STATUS_COLOURS = {"ok": "#2e7d32", "failed": "#c62828", "cancelled": "#9e9e9e"}


def sim_status(H: np.ndarray) -> np.ndarray:
    """Per-row status of ended sims: ``failed`` when no finite ``f`` came back, ``cancelled``, else ``ok``."""
    status = np.full(len(H), "ok", dtype=object)
    names = H.dtype.names or ()
    if "f" in names:
        status[~np.isfinite(H["f"])] = "failed"
    if "cancel_requested" in names:
        status[H["cancel_requested"] & ~H["sim_ended"]] = "cancelled"
    return status


def summarize(H: np.ndarray, wall: float) -> dict[str, t.Any]:
    """Sims, failures, wall time and busy fraction per slot (libEnsemble worker) of one run.

    Parameters
    ----------
    H : numpy structured array
        The run's history.
    wall : float
        The run's wall time in seconds.

    Returns
    -------
    dict
        ``sims``, ``failed``, ``wall``, ``busy`` (slot -> fraction of the wall time running sims) and ``best``.
    """
    done = H[H["sim_ended"]]
    status = sim_status(done)
    busy: dict[int, float] = {}
    for slot in sorted(set(int(w) for w in done["sim_worker"])):
        rows = done[done["sim_worker"] == slot]
        busy[slot] = float(np.sum(rows["sim_ended_time"] - rows["sim_started_time"])) / wall if wall > 0 else 0.0
    ok = done[status == "ok"]
    best = float(np.min(ok["f"])) if len(ok) and "f" in (ok.dtype.names or ()) else float("nan")
    return {"sims": len(done), "failed": int(np.sum(status == "failed")), "wall": wall, "busy": busy, "best": best}


def timeline(phases: list[tuple[str, np.ndarray]], path: Path) -> Path:
    """Draw one row per slot and one bar per sim, coloured by status, for each phase; save a PNG.

    Parameters
    ----------
    phases : list of (title, history)
        The runs to draw, one panel each.
    path : Path
        Where to write the PNG.

    Returns
    -------
    Path
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(len(phases), 1, figsize=(10, 1.2 + 1.6 * len(phases)), squeeze=False)
    for ax, (title, H) in zip(axes[:, 0], phases, strict=True):
        done = H[H["sim_ended"]]
        if len(done) == 0:
            ax.set_title(f"{title}: no sims")
            continue
        t0 = float(np.min(done["sim_started_time"]))
        status = sim_status(done)
        slots = sorted(set(int(w) for w in done["sim_worker"]))
        for row, slot in enumerate(slots):
            mine = done["sim_worker"] == slot
            bars = [
                (s - t0, e - s)
                for s, e in zip(done["sim_started_time"][mine], done["sim_ended_time"][mine], strict=True)
            ]
            colours = [STATUS_COLOURS[s] for s in status[mine]]
            ax.broken_barh(bars, (row - 0.4, 0.8), facecolors=colours, edgecolors="white", linewidth=0.5)
        ax.set_yticks(range(len(slots)), [f"slot {s}" for s in slots])
        ax.set_ylim(-0.6, len(slots) - 0.4)
        ax.set_xlabel("seconds since the first sim started")
        ax.set_title(f"{title}: {len(done)} sims")
        ax.grid(axis="x", alpha=0.3)
    handles = [Patch(color=c, label=s) for s, c in STATUS_COLOURS.items()]
    fig.legend(handles=handles, loc="upper right", ncols=len(handles), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
