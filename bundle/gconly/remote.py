"""The functions GC-only mode registers on the endpoint: one sim per task, or a batch of sims.

Both are registered once per endpoint, ``sim_f`` and ``sim_specs``, and sent **by value**: the
endpoint's Python needs ``sim_f``'s own imports, not this package.  ``sim_specs`` is bound into
the function's globals, so it crosses the wire once per run rather than with every sim; each
sim's arguments carry ``None`` in its place.

A call's arguments arrive in one of two forms, and the answer comes back in the same form:

* **packed**: one ``bytes`` object, the argument tuple (or, for a batch, the list of argument
  tuples) pickled with the standard library's ``pickle``.  The answer is the return value (or
  the list of per-sim results) pickled likewise; when it cannot be pickled cleanly, the plain
  value is returned instead and the endpoint's serializer sends it, as for any task.  When
  ``sim_f`` returns the ``persis_info`` it was given, unchanged (same pickle), ``None`` takes
  its place in the answer, and the driver keeps its own copy (as for a bare ``H_o``): a NumPy
  random ``Generator`` is costly to rebuild.  A packed
  answer is always ``bytes``; a plain answer to a packed call never is (a ``bytes`` value
  always pickles), so the driver tells them apart.
* **plain**: the argument tuple (or list of tuples) itself, sent with the endpoint's serializer
  when stdlib ``pickle`` cannot send it; the answer is plain too.

Each sim runs where a libEnsemble worker would run it (see :mod:`bundle.gconly.simdirs`): the
runner changes into the run's base directory on the endpoint (``sim_dirs["base"]``), and, when
the run uses libEnsemble's sim directory options (``sim_dirs["specs"]``), into the sim's own
directory, made with libEnsemble's ``EnsembleDirectory`` from the sim's *place*: its worker id and
history rows, sent beside the arguments (a second argument of the runner, a list of them for a
batch).  It changes back after every sim: a Globus Compute worker process runs one task at a
time, and the next may be another run's.
"""

from __future__ import annotations

import typing as t

from bundle.wire.byvalue import by_value

SIM_FUNCTION_NAME = "libe_gconly_sim"
BATCH_FUNCTION_NAME = "libe_gconly_sim_batch"

BatchItem = tuple[bool, t.Any, float, float]
"""``(ok, sim_f's return value or the error text, start time, end time)`` for one simulation."""

MAIN_MARKER = b"__main__"
"""In a pickle, a reference to a ``__main__`` global: such a pickle cannot load in another process."""


def _in_place(place: t.Any, call: t.Callable[[], t.Any]) -> t.Any:  # pragma: no cover - runs remotely
    """Run ``call()`` in the sim's directory (``sim_dirs``, bound at creation), then change back."""
    import os

    dirs = sim_dirs  # type: ignore[name-defined]  # noqa: F821 - bound at creation
    if dirs is None:
        return call()
    saved = os.getcwd()
    try:
        base = os.path.expanduser(dirs["base"])
        os.makedirs(base, exist_ok=True)
        os.chdir(base)
        if dirs.get("specs") is None or place is None:
            return call()
        import numpy as np
        from libensemble.message_numbers import EVAL_SIM_TAG
        from libensemble.utils.output_directory import EnsembleDirectory

        worker_id, rows = place
        work = {"libE_info": {"H_rows": np.asarray(rows, dtype=int)}}
        stack, calc_dir = EnsembleDirectory(dirs["specs"]).prep_calc_dir(work, {}, worker_id, EVAL_SIM_TAG)
        with stack.loc(calc_dir):
            return call()
    finally:
        os.chdir(saved)


def _call_sim(args: t.Any, packed: bool, place: t.Any = None) -> t.Any:  # pragma: no cover - runs remotely
    """Call ``sim_f`` on one argument tuple; for a packed call, an unchanged ``persis_info`` comes back as None."""
    import pickle

    if sim_specs is not None and len(args) > 2:  # type: ignore[name-defined]  # noqa: F821 - bound at creation
        args = (*args[:2], sim_specs, *args[3:])  # type: ignore[name-defined]  # noqa: F821
    sent = pickle.dumps(args[1], protocol=5) if packed and len(args) > 1 else None
    out = _in_place(place, lambda: sim_f(*args))  # type: ignore[name-defined]  # noqa: F821 - bound at creation
    if sent is not None and isinstance(out, tuple) and len(out) > 1 and out[1] is args[1]:
        try:
            if pickle.dumps(out[1], protocol=5) == sent:
                out = (out[0], None, *out[2:])  # persis_info unchanged: the driver keeps its own
        except Exception:
            pass
    return out


def _answer(value: t.Any) -> t.Any:  # pragma: no cover - runs remotely
    """Return ``value`` pickled, or itself when it does not pickle cleanly (the endpoint's serializer sends it)."""
    import pickle

    try:
        data = pickle.dumps(value, protocol=5)
    except Exception:
        return value
    return value if b"__main__" in data else data


def _sim_one(call: t.Any, place: t.Any = None) -> t.Any:  # pragma: no cover - runs remotely
    """Call ``sim_f`` once (in its directory, from its ``place``); answer in the form the call came in."""
    import pickle

    packed = isinstance(call, bytes)
    out = _call_sim(pickle.loads(call) if packed else call, packed, place)
    return _answer(out) if packed else out


def _sim_batch(calls: t.Any, places: t.Any = None) -> t.Any:  # pragma: no cover - runs remotely
    """Call ``sim_f`` once per argument tuple (each in its directory), keeping each result or error apart."""
    import pickle
    import time
    import traceback

    packed = isinstance(calls, bytes)
    results = []
    for i, args in enumerate(pickle.loads(calls) if packed else calls):
        start = time.time()
        try:
            out = _call_sim(args, packed, None if places is None else places[i])
        except Exception as err:
            text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
            results.append((False, text, start, time.time()))
            continue
        results.append((True, out, start, time.time()))
    return _answer(results) if packed else results


def make_sim_function(
    sim_f: t.Callable[..., t.Any], sim_specs: dict[str, t.Any] | None = None, sim_dirs: dict[str, t.Any] | None = None
) -> t.Callable[..., t.Any]:
    """Return the one-sim runner bound to ``sim_f`` (and ``sim_specs``) that serializers send by value.

    The copy's globals hold only the builtins, ``sim_f`` and ``sim_specs``, and its module is
    ``__main__``, so dill (the SDK's default code serializer) pickles its code rather than a
    reference to this module.

    Parameters
    ----------
    sim_f : callable
        The simulation function.
    sim_specs : dict, optional
        Put in the third argument's place (when ``sim_f`` takes one); None leaves the arguments as sent.
    sim_dirs : dict, optional
        Where sims run on the endpoint (:meth:`bundle.gconly.simdirs.SimDirs.bound`); None: where the
        endpoint's worker is.

    Returns
    -------
    callable
        ``f(call, place=None) -> answer``, see the module docstring for the two forms.
    """
    fn = by_value(
        _sim_one,
        SIM_FUNCTION_NAME,
        (_call_sim, _answer, _in_place),
        sim_f=sim_f,
        sim_specs=sim_specs,
        sim_dirs=sim_dirs,
    )
    fn.__doc__ = f"Run one {getattr(sim_f, '__qualname__', sim_f)!s} simulation."
    return t.cast(t.Callable[..., t.Any], fn)


def make_batch_function(
    sim_f: t.Callable[..., t.Any], sim_specs: dict[str, t.Any] | None = None, sim_dirs: dict[str, t.Any] | None = None
) -> t.Callable[..., t.Any]:
    """Return the batch runner bound to ``sim_f`` (and ``sim_specs``) that serializers send by value.

    Parameters
    ----------
    sim_f : callable
        The simulation function.
    sim_specs, sim_dirs : dict, optional
        As for :func:`make_sim_function`.

    Returns
    -------
    callable
        ``f(calls, places=None) -> [(ok, out_or_error_text, start, end), ...]`` for a list of argument
        tuples; the same list pickled (or plain, if it cannot be pickled) for a packed call.
    """
    fn = by_value(
        _sim_batch,
        BATCH_FUNCTION_NAME,
        (_call_sim, _answer, _in_place),
        sim_f=sim_f,
        sim_specs=sim_specs,
        sim_dirs=sim_dirs,
    )
    fn.__doc__ = f"Run a batch of {getattr(sim_f, '__qualname__', sim_f)!s} simulations."
    return t.cast(t.Callable[..., t.Any], fn)
