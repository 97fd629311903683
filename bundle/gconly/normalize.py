"""Turn what a remote ``sim_f`` returned into what a libEnsemble worker would send the manager.

Mirrors ``libensemble.worker.Worker._handle_calc`` and ``Runner.run`` (libEnsemble 1.6):

* ``(H_o, persis_info, calc_status)`` is passed through;
* ``(H_o, calc_status)``, with an int or str status, keeps the manager's ``persis_info``;
* ``(H_o, persis_info)`` gets an unset status;
* a bare ``H_o`` (or ``None``) keeps the manager's ``persis_info`` with an unset status;
* a dict where ``H_o`` belongs is refused with libEnsemble's own hint (``SimSpecs.simulator``).

Two deliberate differences: a bare ``H_o`` with exactly two rows is taken as ``H_o`` (the
worker's ``len(out) == 2`` test would split it into two rows), and NumPy integers count as a
``calc_status`` like Python ints do.
"""

from __future__ import annotations

import numbers
import typing as t

import numpy as np
import numpy.typing as npt
from libensemble.message_numbers import UNSET_TAG

from bundle.errors import BundleError

SimResult = tuple[t.Any, dict[str, t.Any], t.Any]
"""``(calc_out, persis_info, calc_status)`` as the manager expects them."""

_DICT_HINT = (
    "Manager received a dictionary from a simulation. "
    "Perhaps you meant to set `SimSpecs.simulator` instead of `SimSpecs.sim_f`?"
)


class SimOutputError(BundleError, ValueError):
    """A simulation returned something libEnsemble cannot put in the history."""


def _is_status(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, numbers.Integral) and not isinstance(value, bool))


def normalize_sim_output(out: object, persis_info: dict[str, t.Any]) -> SimResult:
    """Normalize a ``sim_f`` return value.

    Parameters
    ----------
    out : object
        What ``sim_f`` returned.
    persis_info : dict
        The ``persis_info`` the manager sent with the work order (kept when ``sim_f`` returns none).

    Returns
    -------
    tuple
        ``(calc_out, persis_info, calc_status)``.

    Raises
    ------
    SimOutputError
        When ``calc_out`` is a dict (a gest-api simulator given as ``sim_f``).
    """
    if out is None:
        result: SimResult = (None, persis_info, UNSET_TAG)
    elif isinstance(out, np.ndarray):
        result = (out, persis_info, UNSET_TAG)
    elif isinstance(out, (tuple, list)):
        if len(out) >= 3:
            result = (out[0], out[1], out[2])
        elif len(out) == 2:
            if _is_status(out[1]):
                result = (out[0], persis_info, int(out[1]) if not isinstance(out[1], str) else out[1])
            else:
                result = (out[0], out[1], UNSET_TAG)
        elif len(out) == 1:
            result = (out[0], persis_info, UNSET_TAG)
        else:
            result = (None, persis_info, UNSET_TAG)
    else:
        result = (out, persis_info, UNSET_TAG)
    if isinstance(result[0], dict):
        raise SimOutputError(_DICT_HINT)
    if result[1] is None:
        result = (result[0], persis_info, result[2])
    return result


def check_calc_out(calc_out: object, nrows: int) -> None:
    """Refuse a ``calc_out`` that libEnsemble's manager would crash on (it aborts the whole run).

    Parameters
    ----------
    calc_out : object
        The normalized ``H_o``.
    nrows : int
        Rows in the work order.

    Raises
    ------
    SimOutputError
        When ``calc_out`` is not a NumPy structured array with one row per work-order row.
    """
    if calc_out is None:
        return
    if not isinstance(calc_out, np.ndarray) or calc_out.dtype.names is None:
        raise SimOutputError(
            f"sim_f returned a {type(calc_out).__name__} where H_o belongs; return a NumPy structured array "
            "with the dtype of sim_specs['out'] (e.g. np.zeros(len(H), dtype=sim_specs['out']))"
        )
    if calc_out.ndim != 1 or len(calc_out) != nrows:
        raise SimOutputError(
            f"sim_f returned H_o with {len(calc_out) if calc_out.ndim else 0} rows for a work order of {nrows} "
            f"row(s); return one row per row of H (np.zeros(len(H), dtype=sim_specs['out']))"
        )


def failed_output(out_dtype: npt.DTypeLike | None, nrows: int) -> npt.NDArray[t.Any] | None:
    """Return the ``H_o`` recorded for a failed or killed simulation.

    Float and complex output fields are NaN (so ``stop_val`` never trips on a sim that did
    not run, and generators can tell); other fields keep their zero default.

    Parameters
    ----------
    out_dtype : dtype-like or None
        ``sim_specs["out"]`` (None: nothing to record).
    nrows : int
        Rows in the work order.

    Returns
    -------
    numpy.ndarray or None
    """
    if out_dtype is None:
        return None
    out = np.zeros(nrows, dtype=out_dtype)
    names = out.dtype.names or ()
    for name in names:
        base = out.dtype[name].base
        if np.issubdtype(base, np.floating) or np.issubdtype(base, np.complexfloating):
            out[name] = np.nan
    return out
