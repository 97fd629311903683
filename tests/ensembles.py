"""Ensemble set-ups the tests share: ``libE_specs`` for sims run through a GlobusComputeExecutor, given rows."""

from __future__ import annotations

import pathlib
import typing as t

import numpy as np
from libensemble.specs import LibeSpecs


def executor_libe_specs(
    nworkers: int, ensemble_dir: pathlib.Path | None = None, comms: str = "threads", **more: t.Any
) -> LibeSpecs:
    """Return ``libE_specs`` for sims that launch through a GlobusComputeExecutor.

    The generator runs on the manager and libEnsemble's own resource manager is off (the
    executor's endpoint places the ranks).  With ``ensemble_dir``, each sim runs in its own
    directory under it.  ``more`` adds any other ``LibeSpecs`` field.
    """
    if ensemble_dir is not None:
        more = {"sim_dirs_make": True, "ensemble_dir_path": ensemble_dir, **more}
    return LibeSpecs(comms=comms, nworkers=nworkers, gen_on_manager=True, disable_resource_manager=True, **more)


def given_rows(n: int) -> np.ndarray:
    """Return ``H0`` of ``n`` sims not yet started, ``sim_id`` 0 to ``n - 1`` and ``x`` zero."""
    H0 = np.zeros(n, dtype=[("x", float, (1,)), ("sim_id", int), ("sim_started", bool)])
    H0["sim_id"] = np.arange(n)
    return H0
