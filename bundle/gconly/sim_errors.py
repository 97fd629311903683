"""The error text of failed simulations: kept by ``sim_id`` and written to one file each."""

from __future__ import annotations

import logging
import pathlib
import typing as t


def record_sim_errors(
    errors: dict[int, str], error_dir: pathlib.Path, sim_ids: t.Iterable[int], text: str, log: logging.Logger
) -> None:
    """Keep ``text`` as the error of each of ``sim_ids`` and write it to ``error_dir/sim_<id>.txt``.

    Parameters
    ----------
    errors : dict
        Error text by ``sim_id``, updated in place.
    error_dir : pathlib.Path
        Folder of the error files (made when needed).
    sim_ids : iterable of int
        The failed simulations.
    text : str
        Their error text.
    log : logging.Logger
        Where a file that cannot be written is reported (the run goes on).
    """
    for sim_id in sim_ids:
        errors[sim_id] = text
        try:
            error_dir.mkdir(parents=True, exist_ok=True)
            (error_dir / f"sim_{sim_id}.txt").write_text(text + "\n")
        except OSError as err:
            log.warning("could not write the error of sim_id %d: %s", sim_id, err)
