"""What one run's sims send to the endpoint, and how their answers are read back.

The fast form (``packed``) sends each sim's arguments as one ``bytes`` object pickled with the
standard library's ``pickle`` (protocol 5) to a runner registered once per run with ``sim_specs``
bound in (see :mod:`bundle.gconly.remote`).  The endpoint's serializer (dill, in Globus
Compute's default ``DillDataBase64``) then only has to carry a ``bytes`` object, which is
about ten times cheaper for libEnsemble's arguments (a structured NumPy row, ``persis_info``
with a NumPy random ``Generator``, ``libE_info``).

A call whose arguments stdlib ``pickle`` cannot send cleanly (an unpicklable object, or a
reference to something defined in the driver's ``__main__``, which only dill sends by value)
goes plain, through the endpoint's serializer, as before.  When the endpoint's serializer
cannot carry ``bytes`` or send the runner by value (a restricted strategy), every call goes
plain to ``sim_f`` itself (batches: to the batch runner), as before this form existed.
"""

from __future__ import annotations

import hashlib
import pickle
import threading
import typing as t
import weakref

from bundle.errors import PayloadTooLargeError
from bundle.gconly.remote import MAIN_MARKER, BatchItem, make_batch_function, make_sim_function
from bundle.gconly.specs import GCOnlyConfigError
from bundle.wire.limits import PAYLOAD_LIMIT, check_size, result_size, submission_size

if t.TYPE_CHECKING:
    import numpy as np
    from globus_compute_sdk.serialize import ComputeSerializer


class SimPayloadTooLargeError(PayloadTooLargeError, GCOnlyConfigError):
    """A GC-only task's arguments, result or registered runner over Globus Compute's 10 MiB limit.

    Raised before the first task is submitted (the runner: before the run starts; the first task's
    arguments and result: at the first sim), with the measured size and what to change.
    """


SIM_SPECS_SLOT = 2
"""Position of ``sim_specs`` in ``sim_f``'s arguments; a packed call carries ``None`` there."""

_REGISTERED: weakref.WeakKeyDictionary[t.Any, dict[tuple[str, t.Any, str], str]] = weakref.WeakKeyDictionary()
_REGISTRY_LOCK = threading.Lock()


def register_once(
    executor: t.Any, kind: str, sim_f: t.Callable[..., t.Any], fn: t.Callable[..., t.Any], variant: str = ""
) -> str:
    """Register ``fn`` (``sim_f`` itself, or a runner of it) once per executor and return its id.

    Parameters
    ----------
    executor : LocalEndpoint or globus_compute_sdk.Executor
        The endpoint's executor.
    kind : str
        ``"single"``, ``"batch"``, ``"packed"`` or ``"packed-batch"``.
    sim_f : callable
        The simulation function (the cache key).
    fn : callable
        What to register.
    variant : str
        More of the cache key: a digest of what ``fn`` has bound (``sim_specs``).

    Returns
    -------
    str
        The function id.
    """
    with _REGISTRY_LOCK:
        ids = _REGISTERED.setdefault(executor, {})
        fid = ids.get((kind, sim_f, variant))
        if fid is None:
            try:
                fid = str(executor.register_function(fn))
            except ValueError:
                # Registered by the user on this executor already: both the SDK Executor and
                # LocalEndpoint refuse a second registration and keep the id in their cache.
                known = getattr(executor, "_function_registry", None) or getattr(executor, "_fn_ids", None) or {}
                if fn not in known:
                    raise
                fid = str(known[fn])
            ids[(kind, sim_f, variant)] = fid
        return fid


def pickle_cleanly(obj: object) -> bytes | None:
    """Return ``obj`` pickled with stdlib ``pickle`` (protocol 5), or None when that would not load remotely.

    None when pickling fails, or when the pickle refers to a ``__main__`` global (a function or
    class of the calling script, which another process cannot import; dill sends those by value).
    """
    try:
        data = pickle.dumps(obj, protocol=5)
    except Exception:
        return None
    return None if MAIN_MARKER in data else data


def carries_runner(serializer: ComputeSerializer, runner: t.Callable[..., t.Any]) -> bool:
    """Return whether ``serializer`` sends ``runner`` by value with its globals.

    The runner makes a round trip here: source-based code strategies (``DillCodeSource``,
    ``PureSourceTextInspect``, ...) serialize it but cannot rebuild it under its own name with
    ``sim_f``, ``sim_specs`` and ``sim_dirs`` bound.
    """
    try:
        copy = serializer.deserialize(serializer.serialize(runner))
        bound = getattr(copy, "__globals__", {})
        return bool(
            getattr(copy, "__name__", "") == runner.__name__ and {"sim_f", "sim_specs", "sim_dirs"} <= set(bound)
        )
    except Exception:
        return False


def carries_bytes(serializer: ComputeSerializer) -> bool:
    """Return whether ``serializer`` sends a ``bytes`` argument unchanged (packed calls need it)."""
    try:
        return bool(serializer.deserialize(serializer.serialize(b"\x80")) == b"\x80")
    except Exception:
        return False


def carries_packed_calls(serializer: ComputeSerializer, runner: t.Callable[..., t.Any]) -> bool:
    """Return whether ``serializer`` sends ``bytes`` arguments, and ``runner`` by value with its globals."""
    return carries_bytes(serializer) and carries_runner(serializer, runner)


def _digest(serializer: ComputeSerializer, value: object) -> str:
    """Return a digest of what a runner has bound (a registration is reused for the same), by any serializer."""
    from globus_compute_sdk.serialize import ComputeSerializer

    for ser in (serializer, ComputeSerializer()):
        try:
            return hashlib.sha256(ser.serialize(value).encode()).hexdigest()
        except Exception:
            continue
    return f"id-{id(value)}"


class SimWire:
    """How the sims of one run cross to the endpoint.

    Parameters
    ----------
    executor : LocalEndpoint or globus_compute_sdk.Executor
        The endpoint's executor.
    serializer : ComputeSerializer
        The executor's serializer.
    sim_specs : dict
        The run's ``sim_specs`` (``sim_f`` among them).
    batched : bool
        Whether tasks carry a list of sims.
    pack : bool
        Send calls packed when the endpoint's serializer allows it (``GCOnlySpecs.pack_calls``).
    sim_dirs : dict, optional
        Where sims run on the endpoint (:meth:`bundle.gconly.simdirs.SimDirs.bound`), bound into the runner.

    Raises
    ------
    GCOnlyConfigError
        When the run needs sim directories and the endpoint's serializer cannot send the runner that makes them.
    """

    def __init__(
        self,
        executor: t.Any,
        serializer: ComputeSerializer,
        sim_specs: dict[str, t.Any],
        batched: bool,
        pack: bool = True,
        sim_dirs: dict[str, t.Any] | None = None,
    ) -> None:
        sim_f = sim_specs["sim_f"]
        make = make_batch_function if batched else make_sim_function
        runner = make(sim_f, sim_specs, sim_dirs)
        self.serializer = serializer
        travels = carries_runner(serializer, runner)
        self.packed = pack and travels and carries_bytes(serializer)
        """True for the fast form; False: every call goes plain through the endpoint's serializer."""
        self.batched = batched
        self.runner = travels
        """Whether calls go to GC-only's runner (else, plain, to ``sim_f`` itself: no sim directories)."""
        self.per_sim = travels and sim_dirs is not None and sim_dirs.get("specs") is not None
        """Whether each call carries its sim's place (worker id and rows) for its sim directory."""
        if sim_dirs is not None and sim_dirs.get("specs") is not None and not travels:
            raise GCOnlyConfigError(
                "libEnsemble's sim directory options need GC-only's runner on the endpoint, which the endpoint's "
                f"serializer ({type(serializer.code_serializer).__name__}) cannot send by value with its globals: "
                "use the SDK's default code strategy (DillCode), or unset the sim directory options"
            )
        digest = _digest(serializer, [sim_specs, sim_dirs])
        if self.packed:
            self._check_registered(runner, "sim_f with sim_specs bound")
            kind = "packed-batch" if batched else "packed"
            self.function_id = register_once(executor, kind, sim_f, runner, digest)
        elif travels:  # plain calls (sim_specs among the arguments, as sim_f takes them) to a runner in place
            plain = make(sim_f, None, sim_dirs)
            self._check_registered(plain, "the runner of sim_f")
            self.function_id = register_once(executor, "plain-batch" if batched else "plain", sim_f, plain, digest)
        elif batched:
            batch_runner = make_batch_function(sim_f)
            self._check_registered(batch_runner, "the batch runner of sim_f")
            self.function_id = register_once(executor, "batch", sim_f, batch_runner)
        else:  # the endpoint's serializer sends no runner: sim_f itself, run where the endpoint's worker is
            self._check_registered(sim_f, "sim_f")
            self.function_id = register_once(executor, "single", sim_f, sim_f)

    def _check_registered(self, fn: t.Callable[..., t.Any], what: str) -> None:
        """Refuse a function to register over the size limit (sim_f's globals or sim_specs carrying data)."""
        try:
            size = len(self.serializer.serialize(fn))
        except Exception:
            return  # what cannot be serialized is named by the serialization checks
        check_size(
            size,
            f"{what}, as registered with the endpoint (the globals sim_f reads travel with it)",
            "keep large data out of sim_specs and out of the module-level names sim_f reads: put it in a file "
            "the endpoint can read and load it in sim_f.",
            error=SimPayloadTooLargeError,
        )

    def check_first_task(
        self, args: tuple[t.Any, ...], nrows: int, out_dtype: np.dtype[t.Any] | None, batch_size: int
    ) -> None:
        """Refuse a run whose tasks would be over the size limit, from the first sim's arguments (before it goes).

        Measures, with the endpoint's serializer, the first task's payload (``batch_size`` times the first
        sim's, for a batch) and a result of ``batch_size`` sims of ``nrows`` zero-filled rows of ``out_dtype``
        in the form the runner sends it back.

        Raises
        ------
        SimPayloadTooLargeError
        """
        import numpy as np

        n = batch_size if self.batched else 1
        sims = f"{n} sim{'s' if n > 1 else ''} of {nrows} row{'s' if nrows != 1 else ''}"
        fewer = "lower gc_specs.batch_size, " if n > 1 else ""
        check_size(
            submission_size(self.serializer, self.request(args)) * n,
            f"the arguments of one task ({sims}, gc_specs.batch_size={batch_size})",
            f"{fewer}send fewer rows per sim (the allocation function's work orders), or pass large inputs "
            "through files the endpoint can read (e.g. paths in sim_specs['user'], or libE_specs.sim_input_dir).",
            error=SimPayloadTooLargeError,
        )
        if out_dtype is None:
            return
        zeros = [np.zeros(nrows, dtype=out_dtype) for _ in range(n)]  # distinct arrays: pickle shares no copies
        what = f"the result of one task ({sims} of sim_specs['out'], gc_specs.batch_size={batch_size})"
        change = (
            f"{fewer}return fewer rows per sim, or write large outputs (arrays of sim_specs['out']) to files on "
            "the endpoint's file system (e.g. in each sim's directory, libE_specs.sim_dirs_make) and return small "
            "fields."
        )
        raw = sum(z.nbytes for z in zeros)
        if raw > PAYLOAD_LIMIT:  # already over: no need to serialize it to know
            check_size(raw, what, change, at_least=True, error=SimPayloadTooLargeError)
        value: t.Any = [(True, (z, None), 0.0, 0.0) for z in zeros] if self.batched else (zeros[0], None)
        if self.packed:
            value = pickle.dumps(value, protocol=5)
        check_size(result_size(self.serializer, value), what, change, error=SimPayloadTooLargeError)

    def request(self, args: tuple[t.Any, ...], place: tuple[int, list[int]] | None = None) -> tuple[t.Any, ...]:
        """Return the ``args=`` of the task for one sim's full argument tuple (and its place, when it needs one)."""
        where = (place,) if self.per_sim else ()
        if not self.packed:
            return (args, *where) if self.runner else args
        call = (*args[:SIM_SPECS_SLOT], None, *args[SIM_SPECS_SLOT + 1 :]) if len(args) > SIM_SPECS_SLOT else args
        data = pickle_cleanly(call)
        return (call if data is None else data, *where)

    def batch_request(
        self, calls: list[tuple[t.Any, ...]], places: list[tuple[int, list[int]]] | None = None
    ) -> tuple[t.Any, ...]:
        """Return the ``args=`` of the task for a batch of sims' full argument tuples (and their places)."""
        where = (places,) if self.per_sim else ()
        if not self.packed:
            return (calls, *where)
        slim = [(*c[:SIM_SPECS_SLOT], None, *c[SIM_SPECS_SLOT + 1 :]) if len(c) > SIM_SPECS_SLOT else c for c in calls]
        data = pickle_cleanly(slim)
        return (slim if data is None else data, *where)

    @staticmethod
    def answer(result: object) -> object:
        """Return what ``sim_f`` (or the batch runner) returned, from the result of a packed call.

        Raises
        ------
        Exception
            When a packed answer does not unpickle here (e.g. a class the driver cannot import).
        """
        return pickle.loads(result) if isinstance(result, bytes) else result


def sim_outcomes(
    result: t.Any, *, count: int, batched: bool, packed: bool, submitted: float, finished: float
) -> tuple[list[BatchItem], bool]:
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
    tuple
        The outcomes, ``(ok, value or error text, start, end)``, ``count`` of them; and whether they
        are one failure of the whole task (an answer that cannot be read), which counts once.
    """
    if packed:
        try:
            result = SimWire.answer(result)
        except Exception as err:
            text = f"cannot read the result here: {type(err).__name__}: {err}"
            return [(False, text, submitted, finished)] * count, True
    if not batched:
        return [(True, result, submitted, finished)], False
    if not isinstance(result, list) or len(result) != count:
        return [(False, f"malformed batch result: {result!r:.200}", submitted, finished)] * count, True
    return [t.cast(BatchItem, tuple(item)) for item in result], False
