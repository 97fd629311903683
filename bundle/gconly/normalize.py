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

import inspect
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


def _fields(dtype: np.dtype[t.Any]) -> str:
    """``[('f', float64), ...]``: the fields of a structured dtype as a message names them."""
    names = dtype.names or ()
    return "[" + ", ".join(f"({name!r}, {dtype[name]})" for name in names) + "]"


def check_out_fields(calc_out: npt.NDArray[t.Any], out_dtype: npt.DTypeLike | None) -> None:
    """Refuse an ``H_o`` whose fields are not the ones ``sim_specs["out"]`` declares.

    libEnsemble's manager adds a field it does not know to the history as a new column and leaves
    the declared ones at zero, so such a return would look like a sim that worked.

    Parameters
    ----------
    calc_out : numpy.ndarray
        A structured ``H_o``.
    out_dtype : dtype-like or None
        ``sim_specs["out"]`` (None: nothing declared, nothing checked).

    Raises
    ------
    SimOutputError
        Naming the fields expected and the fields returned.
    """
    if out_dtype is None:
        return
    expected = np.dtype(out_dtype)
    got = calc_out.dtype
    if set(got.names or ()) != set(expected.names or ()):
        raise SimOutputError(
            f"sim_f returned H_o with fields {_fields(got)}, but sim_specs['out'] declares {_fields(expected)}; "
            "return np.zeros(len(H), dtype=sim_specs['out']) filled in"
        )


def check_calc_out(calc_out: object, nrows: int, out_dtype: npt.DTypeLike | None = None) -> None:
    """Refuse a ``calc_out`` that libEnsemble's manager would crash on, or would record wrongly.

    Parameters
    ----------
    calc_out : object
        The normalized ``H_o``.
    nrows : int
        Rows in the work order.
    out_dtype : dtype-like, optional
        ``sim_specs["out"]``: the fields ``H_o`` must have (see :func:`check_out_fields`).

    Raises
    ------
    SimOutputError
        When ``calc_out`` is not a NumPy structured array with one row per work-order row and the
        declared fields.
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
    check_out_fields(calc_out, out_dtype)


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


class CheckedSim:
    """A ``sim_f`` whose return is checked against ``sim_specs["out"]`` where it runs (a libEnsemble worker).

    :class:`bundle.Ensemble` and :func:`bundle.libE` run a sim that is not sent to an endpoint
    (executor mode, or any stock run) through this wrapper: an ``H_o`` with other fields than
    ``sim_specs["out"]`` declares raises :class:`SimOutputError` in the sim, naming both, instead of
    landing in the history as new columns beside declared ones left at zero.

    Parameters
    ----------
    sim_f : callable
        The user's ``sim_f``; called with as many of ``(H, persis_info, sim_specs, libE_info)`` as it takes.
    """

    def __init__(self, sim_f: t.Callable[..., t.Any]) -> None:
        self.sim_f = sim_f
        self.nparams = len(inspect.signature(sim_f).parameters)
        self.__name__ = getattr(sim_f, "__name__", type(sim_f).__name__)
        self.__qualname__ = getattr(sim_f, "__qualname__", self.__name__)

    def __repr__(self) -> str:
        return f"CheckedSim({self.sim_f!r})"

    def __call__(self, H: t.Any, persis_info: t.Any, sim_specs: t.Any, libE_info: t.Any) -> t.Any:
        """Call ``sim_f`` and check the fields of the ``H_o`` it returns.

        Raises
        ------
        SimOutputError
            When ``H_o``'s fields are not the ones ``sim_specs["out"]`` declares.
        """
        out = self.sim_f(*(H, persis_info, sim_specs, libE_info)[: self.nparams])
        calc_out = out[0] if isinstance(out, (tuple, list)) and out else out
        declared = sim_specs.get("out") if isinstance(sim_specs, t.Mapping) else None
        if declared and isinstance(calc_out, np.ndarray) and calc_out.dtype.names is not None:
            check_out_fields(calc_out, [tuple(field) for field in declared])
        return out


def checked_sim_specs(sim_specs: t.Any) -> t.Any:
    """Return ``sim_specs`` (a dict or libEnsemble's ``SimSpecs``) with its ``sim_f`` wrapped in :class:`CheckedSim`.

    Parameters
    ----------
    sim_specs : dict or SimSpecs or None
        As given to ``libE()`` or ``Ensemble``; returned unchanged without a ``sim_f`` (a gest-api
        ``simulator``, whose outputs libEnsemble builds itself) or when already wrapped.

    Returns
    -------
    dict or SimSpecs
        A copy; the caller's object is not changed.
    """
    if isinstance(sim_specs, t.Mapping):
        sim_f = sim_specs.get("sim_f")
        if callable(sim_f) and not isinstance(sim_f, CheckedSim):
            return {**sim_specs, "sim_f": CheckedSim(sim_f)}
        return sim_specs
    sim_f = getattr(sim_specs, "sim_f", None)
    if callable(sim_f) and not isinstance(sim_f, CheckedSim) and hasattr(sim_specs, "model_copy"):
        return sim_specs.model_copy(update={"sim_f": CheckedSim(sim_f)})
    return sim_specs
