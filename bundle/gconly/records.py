"""What a GC-only run writes as libEnsemble's workers would: ``libE_stats.txt`` lines and error files.

A worker writes ``Worker     3: sim_id     7: sim Time: 0.012 Start: ... End: ... Status: Completed``;
the same line is written here for each simulation of a virtual worker, so tools that parse
``libE_stats.txt`` keep working.  The error text of a failed simulation is kept by ``sim_id`` and
written to one file each.
"""

from __future__ import annotations

import logging
import pathlib
import typing as t

from libensemble.comms.logs import LogConfig
from libensemble.message_numbers import EVAL_SIM_TAG, calc_status_strings, calc_type_strings
from libensemble.utils.misc import extract_H_ranges
from libensemble.utils.timer import Timer


def _timer(start: float, end: float) -> Timer:
    timer = Timer()
    timer.tstart = int(start * 1000)
    timer.tend = int(max(end, start) * 1000)
    timer.tcum = timer.tend - timer.tstart
    return timer


def stats_line(work: dict[str, t.Any], start: float, end: float, calc_status: object) -> str:
    """Return the message part of a ``libE_stats.txt`` line for one simulation.

    Parameters
    ----------
    work : dict
        The work order (its ``libE_info["H_rows"]`` label the line).
    start, end : float
        Epoch seconds.
    calc_status : int or str
        The simulation's status.

    Returns
    -------
    str
    """
    calc_id = extract_H_ranges(work).rjust(5, " ")
    status = calc_status_strings.get(calc_status, calc_status)
    return f"sim_id {calc_id}: {calc_type_strings[EVAL_SIM_TAG]} {_timer(start, end)} Status: {status}"


def worker_prefix(w: int) -> str:
    """Return the line prefix libEnsemble's stats logger gives worker ``w``."""
    return f"Worker {str(w).rjust(5, ' ')}"


def log_stats(w: int, line: str) -> None:
    """Write one stats line as virtual worker ``w``."""
    config = LogConfig.config
    if config is None:
        return
    logging.getLogger(config.stats_name).info(line, extra={"prefix": worker_prefix(w), "worker": w})


def ensemble_logger() -> logging.Logger:
    """Return a child of libEnsemble's logger, so messages reach ``ensemble.log``."""
    config = LogConfig.config
    return logging.getLogger(f"{config.name if config else 'libensemble'}.gconly")


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
