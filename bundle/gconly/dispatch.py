"""Turn the manager's sim work orders into endpoint tasks, and finished tasks into worker answers.

One :class:`SimDispatcher` serves all virtual workers of a run.  The manager thread calls it
through :class:`~bundle.gconly.dispatch.VirtualWorkerComm`; futures only put finished tasks on a
queue (from the executor's threads), and every state change happens on the manager thread.
A work order is answered exactly once (done, failed or killed), and forgotten once answered,
so the manager's memory stays flat however many sims run.

The dispatcher keeps the orders and answers; the rest lives in a module each: the remote tasks
and their batching (:mod:`~bundle.gconly.tasks`), how calls cross the wire
(:mod:`~bundle.gconly.calls`), a finished task's per-sim outcomes
(:func:`~bundle.gconly.calls.sim_outcomes`), the task journal (:mod:`~bundle.gconly.journal`), the error
files and ``libE_stats.txt`` lines (:mod:`~bundle.gconly.records`)
and the result watchdog (:class:`~bundle.gconly.availability.ResultWatch`).
"""

from __future__ import annotations

import inspect
import pathlib
import time
import typing as t

import numpy as np
from libensemble.comms.comms import Comm
from libensemble.message_numbers import (
    EVAL_GEN_TAG,
    EVAL_SIM_TAG,
    MAN_SIGNAL_FINISH,
    MAN_SIGNAL_KILL,
    PERSIS_STOP,
    STOP_TAG,
    TASK_FAILED,
)

from bundle.errors import block_lost_message, lost_worker_pool
from bundle.gconly.availability import EndpointUnavailableError, ResultWatch, endpoint_failure
from bundle.gconly.calls import SimPayloadTooLargeError, SimWire, sim_outcomes
from bundle.gconly.engine_choice import mpi_spec_refusal
from bundle.gconly.failfast import SystematicSimError
from bundle.gconly.normalize import SimOutputError, check_calc_out, failed_output, normalize_sim_output
from bundle.gconly.records import ensemble_logger, log_stats, record_sim_errors, stats_line
from bundle.gconly.remote import make_batch_function
from bundle.gconly.serialization import SimSerializationError, check_mapping, check_serializable, serializer_of
from bundle.gconly.specs import GCOnlyConfigError
from bundle.gconly.tasks import RemoteTask, SimOrder, SimTasks, SubmitFailed
from bundle.processes import interrupt
from bundle.wire.remote_cause import error_text

if t.TYPE_CHECKING:
    import numpy.typing as npt

    from bundle.endpoints.health import EndpointHealth
    from bundle.gconly.failfast import FailFast
    from bundle.gconly.journal import Journal
    from bundle.gconly.resume import Reattach

ARG_NAMES = ("H rows (calc_in)", "persis_info", "sim_specs", "libE_info")


class SimDispatcher:
    """Submit sims for the virtual workers of one run and collect their answers.

    Parameters
    ----------
    executor : LocalEndpoint or globus_compute_sdk.Executor
        The endpoint's executor (from :meth:`bundle.endpoints.session.GCSession.get_executor`).
    sim_specs : dict
        The validated ``sim_specs`` sent to ``sim_f`` (``sim_f``, ``in``, ``out``, ``user``, ...).
    nworkers : int
        Virtual workers (sims in flight).
    batch_size : int
        Sims per remote task.
    error_dir : pathlib.Path
        Folder for one ``sim_<sim_id>.txt`` per failed sim (made on the first failure).
    poll_interval : float
        Longest sleep of :meth:`mail_flag` when every virtual worker is busy.
    pack_calls : bool
        Send calls packed when the endpoint's serializer allows it (``GCOnlySpecs.pack_calls``).
    worker_ids : sequence of int, optional
        The virtual workers' ids (default 1..nworkers; after the generator workers', see
        :mod:`bundle.gconly.gen_workers`).
    sim_dirs : dict, optional
        Where sims run on the endpoint (:meth:`bundle.gconly.simdirs.SimDirs.bound`); None: where the
        endpoint's worker is.
    """

    def __init__(
        self,
        executor: t.Any,
        sim_specs: dict[str, t.Any],
        nworkers: int,
        batch_size: int,
        error_dir: pathlib.Path,
        poll_interval: float = 0.05,
        pack_calls: bool = True,
        worker_ids: t.Sequence[int] | None = None,
        sim_dirs: dict[str, t.Any] | None = None,
    ) -> None:
        self.executor = executor
        self.sim_specs = sim_specs
        self.sim_f: t.Callable[..., t.Any] = sim_specs["sim_f"]
        self.nworkers = nworkers
        self.worker_ids = tuple(worker_ids) if worker_ids is not None else tuple(range(1, nworkers + 1))
        """The virtual workers' ids."""
        self.total_workers = max(self.worker_ids)
        """The manager's workers, generator workers included (``comm.get_num_workers()``)."""
        self._first_id = self.worker_ids[0]
        self.batch_size = batch_size
        self.error_dir = error_dir
        self.poll_interval = poll_interval
        self.out_dtype = np.dtype([tuple(f) for f in sim_specs["out"]]) if sim_specs.get("out") else None
        self.in_dtype: np.dtype[t.Any] | None = None
        self.nparams = len(inspect.signature(self.sim_f).parameters)
        self.serializer = serializer_of(executor)
        self.errors: dict[int, str] = {}
        """Error text of each failed sim, by ``sim_id``."""
        self.fatal: BaseException | None = None
        """An error that stopped the run (e.g. an input that cannot be serialized)."""
        self._orders: dict[int, SimOrder] = {}
        self._expect_rows: dict[int, dict[str, t.Any]] = {}
        self._answers: dict[int, dict[str, t.Any]] = {}
        self._first_checked = False
        self._closed = False
        self._log = ensemble_logger()
        # Set by run_gconly: tasks to reattach (resumed run), the result watch, the fail-fast count.
        self.reattach: Reattach | None = None
        self.watch = ResultWatch(None)
        self.failfast: FailFast | None = None
        self.health: EndpointHealth | None = None
        """What is known of a cloud endpoint's state (set by run_gconly; None for a local endpoint)."""
        self.offline_timeout: float | None = None
        self._check_function()
        self.wire = SimWire(
            executor, self.serializer, sim_specs, batched=batch_size > 1, pack=pack_calls, sim_dirs=sim_dirs
        )
        self.function_id = self.wire.function_id
        self.tasks = SimTasks(executor, self.wire, batch_size)
        """The run's remote tasks (submission, batching, the journal, finished tasks)."""

    @property
    def endpoint(self) -> str:
        """The endpoint's name, for error messages."""
        return self.tasks.endpoint

    @endpoint.setter
    def endpoint(self, value: str) -> None:
        self.tasks.endpoint = value

    @property
    def journal(self) -> Journal | None:
        """The task journal (set by run_gconly when the run keeps one)."""
        return self.tasks.journal

    @journal.setter
    def journal(self, value: Journal | None) -> None:
        self.tasks.journal = value

    @property
    def submitted(self) -> int:
        """Tasks submitted so far."""
        return self.tasks.submitted

    # --- checks -------------------------------------------------------------------------

    def _check_function(self) -> None:
        name = getattr(self.sim_f, "__qualname__", repr(self.sim_f))
        check_serializable(
            self.serializer,
            f"sim_f ({name})",
            self.sim_f,
            "Define sim_f at module level in a module the endpoint can import (not in a notebook cell "
            "that closes over local objects).",
        )
        if self.batch_size > 1:
            check_serializable(self.serializer, f"the batch runner of sim_f ({name})", make_batch_function(self.sim_f))

    def check_inputs(self, persis_info: t.Mapping[int, t.Any]) -> None:
        """Check ``sim_specs`` and the virtual workers' ``persis_info`` before the run starts.

        Raises
        ------
        SimSerializationError
        """
        hint = "Keep sim_specs picklable; put unpicklable objects in module globals of sim_f's module."
        check_mapping(self.serializer, "sim_specs", self.sim_specs, hint)
        for w in self.worker_ids:
            if isinstance(persis_info.get(w), dict):
                check_mapping(self.serializer, f"persis_info[{w}]", persis_info[w])

    def _check_first(self, order: SimOrder) -> None:
        """Check the first work item's arguments, one by one, and the size of its task, before the first submission."""
        self._first_checked = True
        for name, arg in zip(ARG_NAMES, order.args, strict=False):
            check_serializable(self.serializer, f"the first simulation's {name}", arg)
        self.wire.check_first_task(order.args, order.nrows, self.out_dtype, self.batch_size)

    # --- messages from the manager -------------------------------------------------------

    def on_send(self, w: int, tag: int, msg: t.Any) -> None:
        """Take one message the manager sent to virtual worker ``w``."""
        work = self._expect_rows.pop(w, None)
        if work is not None:
            self._start(w, work, msg)
        elif tag in (STOP_TAG, PERSIS_STOP) and msg == MAN_SIGNAL_KILL:
            self._kill(w)
        elif tag in (STOP_TAG, PERSIS_STOP) and msg == MAN_SIGNAL_FINISH:
            self._finish(w)
        elif tag == EVAL_SIM_TAG and isinstance(msg, dict):
            if msg.get("libE_info", {}).get("persistent"):
                self._raise_fatal(
                    GCOnlyConfigError(
                        "GC-only mode runs each sim as one remote task; persistent sims are not supported. "
                        "Use an allocation function that gives non-persistent sim work (e.g. give_sim_work_first "
                        "or start_only_persistent, which persists only the generator)."
                    )
                )
            rows = msg["libE_info"].get("H_rows", [])
            if len(rows):
                self._expect_rows[w] = msg
            else:
                self._start(w, msg, np.zeros(0, dtype=self.in_dtype))
        elif tag == EVAL_GEN_TAG:
            self._raise_fatal(
                GCOnlyConfigError(
                    f"the allocation function sent generator work to virtual sim worker {w}; in GC-only mode "
                    "generators run on the generator workers (libE_specs.gen_workers, or the manager with "
                    "gen_on_manager): pick them with AllocSupport.avail_worker_ids(gen_workers=True)"
                )
            )
        elif tag == 0 and isinstance(msg, dict) and EVAL_SIM_TAG in msg:
            self.in_dtype = msg[EVAL_SIM_TAG]  # the start-up message: history dtypes
        # else: the workflow dir start-up message needs no answer.

    def _raise_fatal(self, err: BaseException) -> t.NoReturn:
        self.fatal = err
        raise err

    def refuse(self, err: BaseException) -> t.NoReturn:
        """End the run with ``err`` (raised in the manager's thread, e.g. by a generator worker's comm)."""
        self._raise_fatal(err)

    def _raise_again(self) -> None:
        """Raise the error that stopped the run, if one did (Ctrl-C too: the sims in flight never answer)."""
        if self.fatal is None:
            self.fatal = interrupt.error()
        if self.fatal is not None:
            raise self.fatal

    def _start(self, w: int, work: dict[str, t.Any], calc_in: npt.NDArray[t.Any]) -> None:
        libE_info = dict(work["libE_info"])
        libE_info.update(comm=None, executor=None, workerID=w, rset_team=libE_info.get("rset_team", []))
        persis_info = work.get("persis_info")
        if persis_info is None:
            persis_info = work["persis_info"] = {}
        args = (calc_in, persis_info, self.sim_specs, libE_info)[: self.nparams]
        order = SimOrder(w, work, args, len(work["libE_info"].get("H_rows", [])))
        self._orders[w] = order
        if not self._first_checked:
            try:
                self._check_first(order)
            except (SimSerializationError, SimPayloadTooLargeError) as err:
                self._raise_fatal(err)
        if len(self._orders) == 1:
            self.watch.progress()  # the first sim in flight after a quiet spell: the clock starts now
        if self.reattach is not None and self.tasks.adopt(order, self.reattach):
            return
        self._send(lambda: self.tasks.add(order))

    def _send(self, submit: t.Callable[[], None]) -> None:
        """Run a submission: a task that could not be submitted fails its sims; an endpoint that cannot ends the run."""
        try:
            submit()
        except SubmitFailed as err:
            for i, order in enumerate(err.orders):  # one failure of the whole submission: fail-fast counts it once
                task = order.task
                assert task is not None
                self._fail(order, str(err), task.submitted, task.finished, count=i == 0)
        except EndpointUnavailableError as err:
            self._raise_fatal(err)

    def _kill(self, w: int) -> None:
        order = self._orders.get(w)
        if order is None or order.done:
            return
        now = time.time()
        start = order.task.submitted if order.task else now
        self._answer(order, failed_output(self.out_dtype, order.nrows), order.work["persis_info"], MAN_SIGNAL_KILL)
        log_stats(w, stats_line(order.work, start, now, MAN_SIGNAL_KILL))
        self.tasks.withdraw(order)

    def _finish(self, w: int) -> None:
        self._expect_rows.pop(w, None)
        order = self._orders.pop(w, None)
        if order is not None and not order.done:
            order.done = True
            self.tasks.withdraw(order)

    # --- answers to the manager ------------------------------------------------------------

    def _drain(self) -> None:
        for task in self.tasks.finished():
            self._complete(task)

    def _complete(self, task: RemoteTask) -> None:
        future = task.future
        self.watch.progress()
        live = [o for o in task.orders if not o.done]
        if future is None or not live or future.cancelled():
            return
        err = future.exception()
        if err is not None:
            fatal = endpoint_failure(err, self.endpoint) or mpi_spec_refusal(err, self.endpoint)
            if fatal is not None:
                self._raise_fatal(fatal)
            text = error_text(err)
            if lost_worker_pool(err):
                text = f"BlockLostError: {block_lost_message('the sim', err)}\n\n{text}"
            for i, order in enumerate(live):  # the task failed as a whole: fail-fast counts it once
                self._fail(order, text, task.submitted, task.finished, count=i == 0)
            return
        outcomes, whole_task = sim_outcomes(
            future.result(),
            count=len(task.orders),
            batched=task.batched,
            packed=task.packed,
            submitted=task.submitted,
            finished=task.finished,
        )
        counted = False
        for order, (ok, payload, start, end) in zip(task.orders, outcomes, strict=True):
            if order.done:
                continue
            if ok:
                self._succeed(order, payload, start, end)
            else:
                self._fail(order, str(payload), start, end, count=not (whole_task and counted))
                counted = True

    def _succeed(self, order: SimOrder, out: object, start: float, end: float) -> None:
        try:
            calc_out, persis_info, calc_status = normalize_sim_output(out, order.work["persis_info"])
            check_calc_out(calc_out, len(order.work["libE_info"].get("H_rows", [])), self.out_dtype)
        except SimOutputError as err:
            self._fail(order, str(err), start, end)
            return
        self._answer(order, calc_out, persis_info, calc_status)
        log_stats(order.w, stats_line(order.work, start, end, calc_status))
        if self.failfast is not None:
            self.failfast.succeeded()

    def _fail(self, order: SimOrder, text: str, start: float, end: float, count: bool = True) -> None:
        """Answer ``order`` as failed; ``count``: whether fail-fast counts it (once per whole-task failure)."""
        sim_ids = order.rows
        self._log.warning(
            "sim_id %s on virtual worker %d failed (TASK_FAILED):\n%s", sim_ids, order.w, text, extra={"worker": 0}
        )
        record_sim_errors(self.errors, self.error_dir, sim_ids, text, self._log)
        self._answer(order, failed_output(self.out_dtype, order.nrows), order.work["persis_info"], TASK_FAILED)
        log_stats(order.w, stats_line(order.work, start, end, TASK_FAILED))
        if self.failfast is not None and count:
            try:
                self.failfast.failed(sim_ids[0] if sim_ids else -1, text)
            except SystematicSimError as err:
                self._raise_fatal(err)

    def _answer(self, order: SimOrder, calc_out: object, persis_info: object, calc_status: object) -> None:
        order.done = True
        self._orders.pop(order.w, None)
        libE_info = order.work["libE_info"]
        self._answers[order.w] = {
            "calc_out": calc_out,
            "persis_info": persis_info,
            "libE_info": libE_info,
            "calc_status": calc_status,
            "calc_type": EVAL_SIM_TAG,
        }

    # --- the comm surface -------------------------------------------------------------------

    def mail_flag(self, w: int) -> bool:
        """Return whether virtual worker ``w`` has an answer; sleep briefly when all are busy.

        The first virtual worker's poll waits (up to ``poll_interval``) for any task to finish
        when every virtual worker has a task in flight, so the manager does not spin.  Once an
        error has stopped the run, every poll raises it again: the manager's final receive ends at
        once instead of waiting for the sims still in flight.
        """
        self._raise_again()
        if self.tasks.pending:
            self._send(self.tasks.flush)
        self._drain()
        if w in self._answers:
            return True
        if w == self._first_id and self._orders:
            self._check_watch()
        if w == self._first_id and not self._answers and len(self._orders) >= self.nworkers:
            self.tasks.wait(self.poll_interval)
            self._drain()
            return w in self._answers
        return False

    def recv(self, w: int, timeout: float | None = None) -> tuple[int, dict[str, t.Any]]:
        """Return virtual worker ``w``'s answer, waiting for it if needed.

        Raises
        ------
        libensemble.comms.comms.Timeout
            When ``timeout`` passes first.
        """
        from libensemble.comms.comms import Timeout

        self._raise_again()
        deadline = None if timeout is None else time.monotonic() + timeout
        while w not in self._answers:
            if w not in self._orders:
                raise RuntimeError(f"virtual worker {w} has no sim in flight to receive from")
            if deadline is not None and time.monotonic() >= deadline:
                raise Timeout()
            if self.tasks.pending:
                self._send(self.tasks.flush)
            self.tasks.wait(self.poll_interval)
            self._drain()
            if w not in self._answers:
                self._check_watch()
        return 0, self._answers.pop(w)

    def _check_watch(self) -> None:
        """End the run when sims in flight can no longer return.

        That is when no result has arrived for ``result_timeout`` seconds, or when a cloud endpoint has been
        reported offline for ``offline_timeout`` seconds meanwhile.
        """
        quiet = self.watch.expired()
        gone = self.health.check(self.offline_timeout) if self.health is not None else None
        if not quiet and gone is None:
            return
        sim_ids = sorted(int(i) for o in self._orders.values() for i in o.work["libE_info"].get("H_rows", []))
        if gone is not None:
            some = f"{sim_ids[:20]}{' ...' if len(sim_ids) > 20 else ''}"
            self._raise_fatal(
                EndpointUnavailableError(
                    f"{gone}\nSims in flight: {len(sim_ids)} (sim_ids {some}).", endpoint=self.endpoint
                )
            )
        self._raise_fatal(self.watch.stalled(quiet, sim_ids, self.endpoint))

    def close(self) -> None:
        """Cancel every task still in flight (the run is over); idempotent."""
        if self._closed:
            return
        self._closed = True
        for order in list(self._orders.values()):
            order.done = True
            self.tasks.withdraw(order)
        self._orders.clear()
        self._expect_rows.clear()
        self._answers.clear()
        self.tasks.clear()

    def held(self) -> dict[str, int]:
        """How much the dispatcher still holds: orders, answers, held orders and finished tasks."""
        return {
            "orders": len(self._orders),
            "answers": len(self._answers),
            "expected_rows": len(self._expect_rows),
            **self.tasks.held(),
        }


class VirtualWorkerComm(Comm):  # type: ignore[misc]
    """The comm of virtual worker ``w``.

    Parameters
    ----------
    dispatcher : SimDispatcher
        Shared by all virtual workers of a run.
    w : int
        Worker id (one of the dispatcher's ``worker_ids``).
    """

    def __init__(self, dispatcher: SimDispatcher, w: int) -> None:
        self.dispatcher = dispatcher
        self.w = w
        self.rank = w
        self.recv_buffer = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(w={self.w})"

    def send(self, *args: t.Any) -> None:
        """Take a message from the manager: ``(tag, Work)``, ``(0, H rows)`` or ``(STOP_TAG, signal)``."""
        tag, msg = (args[0], args[1]) if len(args) >= 2 else (0, args[0])
        self.dispatcher.on_send(self.w, tag, msg)

    def recv(self, timeout: float | None = None) -> tuple[int, dict[str, t.Any]]:
        """Return this worker's answer ``(0, D)`` to the manager."""
        return self.dispatcher.recv(self.w, timeout)

    def mail_flag(self) -> bool:
        """Return whether an answer is ready for the manager."""
        return self.dispatcher.mail_flag(self.w)

    def get_num_workers(self) -> int:
        """Return the number of the manager's workers, as a stock worker's comm does."""
        return self.dispatcher.total_workers

    def kill_pending(self) -> None:
        """Nothing is pending on the manager side of a virtual comm."""
