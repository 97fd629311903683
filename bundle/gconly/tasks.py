"""The remote tasks of one GC-only run: work orders go out as tasks, finished tasks come back to the manager.

:class:`SimTasks` submits one task per sim work order, or one per batch of ``batch_size`` orders
(held until the manager's next poll, :meth:`SimTasks.flush`), records each submission in the
task journal, and puts each finished task on a queue.  The executor's threads only ever touch
that queue; the manager thread takes finished tasks from it (:meth:`SimTasks.finished`) and
waits on it when every virtual worker is busy (:meth:`SimTasks.wait`).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
import typing as t

from bundle.endpoints.unsent import withdraw
from bundle.gconly.availability import endpoint_failure

if t.TYPE_CHECKING:
    from concurrent.futures import Future

    from bundle.gconly.calls import SimWire
    from bundle.gconly.journal import Journal
    from bundle.gconly.resume import Reattach


@dataclasses.dataclass(eq=False)
class SimOrder:
    """One sim work order of one virtual worker."""

    w: int
    work: dict[str, t.Any]
    args: tuple[t.Any, ...]
    nrows: int
    task: RemoteTask | None = None
    done: bool = False

    @property
    def rows(self) -> list[int]:
        """The order's ``sim_id`` values (its rows of the history)."""
        return [int(i) for i in self.work["libE_info"].get("H_rows", [])]

    @property
    def place(self) -> tuple[int, list[int]]:
        """Where the sim runs: its worker id and rows, from which libEnsemble names its sim directory."""
        return self.w, self.rows


@dataclasses.dataclass(eq=False)
class RemoteTask:
    """One remote task: one order, or a batch of orders."""

    orders: list[SimOrder]
    batched: bool
    submitted: float
    packed: bool = False
    future: Future[t.Any] | None = None
    finished: float = 0.0


class SubmitFailed(Exception):
    """A task could not be submitted, for a reason of its own (the run goes on; its sims fail).

    Parameters
    ----------
    message : str
        What went wrong.
    orders : list of SimOrder
        The task's orders.
    """

    def __init__(self, message: str, orders: list[SimOrder]) -> None:
        super().__init__(message)
        self.orders = orders


class SimTasks:
    """Submit the work orders of one run as tasks and collect the finished tasks.

    Parameters
    ----------
    executor : LocalEndpoint or globus_compute_sdk.Executor
        The endpoint's executor.
    wire : SimWire
        How the sims' calls cross to the endpoint (its registered function and argument form).
    batch_size : int
        Sims per task; above 1, orders wait in :attr:`pending` until :meth:`flush`.
    """

    def __init__(self, executor: t.Any, wire: SimWire, batch_size: int) -> None:
        self.executor = executor
        self.wire = wire
        self.batch_size = batch_size
        self.endpoint = ""
        """The endpoint's name, for error messages."""
        self.journal: Journal | None = None
        self.submitted = 0
        """Tasks submitted so far."""
        self.pending: list[SimOrder] = []
        """Orders waiting to go out in a batch."""
        self._done: queue.SimpleQueue[RemoteTask] = queue.SimpleQueue()
        self._wakeup = threading.Event()

    # --- going out ---------------------------------------------------------------------------

    def add(self, order: SimOrder) -> None:
        """Submit ``order`` now, or hold it for the next batch.

        Raises
        ------
        bundle.errors.EndpointUnavailableError
            When the endpoint itself cannot take tasks (the run must end).
        SubmitFailed
            When this task could not be submitted (its sim fails; the run goes on).
        """
        if self.batch_size > 1:
            self.pending.append(order)
        else:
            self._submit([order], batched=False, args=self.wire.request(order.args, order.place))

    def flush(self) -> None:
        """Submit the held orders, up to ``batch_size`` per task (see :meth:`add` for what it raises)."""
        while self.pending:
            chunk = self.pending[: self.batch_size]
            del self.pending[: self.batch_size]
            args = self.wire.batch_request([o.args for o in chunk], [o.place for o in chunk])
            self._submit(chunk, batched=True, args=args)

    def adopt(self, order: SimOrder, reattach: Reattach) -> bool:
        """Attach ``order`` to its task from before a crash (resumed run); False to submit it anew."""
        found = reattach.take(order.work["libE_info"].get("H_rows", []))
        if found is None:
            return False
        future, batched = found
        # A single sim's task answers in the wire form it was sent in (a resumed run uses the same);
        # a batch's share arrives already unpacked (bundle.gconly.resume).
        task = RemoteTask([order], batched, time.time(), packed=self.wire.packed and not batched, future=future)
        order.task = task
        future.add_done_callback(lambda _f: self._on_done(task))
        return True

    def _submit(self, orders: list[SimOrder], *, batched: bool, args: tuple[t.Any, ...]) -> None:
        task = RemoteTask(orders, batched, time.time(), packed=bool(args) and isinstance(args[0], bytes))
        for order in orders:
            order.task = task
        try:
            future = self.executor.submit_to_registered_function(self.wire.function_id, args=args)
        except Exception as err:
            fatal = endpoint_failure(err, self.endpoint)
            if fatal is not None:
                raise fatal from err
            task.finished = time.time()
            raise SubmitFailed(f"submission failed: {type(err).__name__}: {err}", orders) from err
        self.submitted += 1
        task.future = future
        if self.journal is not None:
            self.journal.submitted([o.rows for o in orders], batched, future)
        future.add_done_callback(lambda _f, task=task: self._on_done(task))

    def withdraw(self, order: SimOrder) -> None:
        """Forget a finished or killed ``order``; cancel its task once no order of it is waiting."""
        if order in self.pending:
            self.pending.remove(order)
        task = order.task
        if task is not None and task.future is not None and all(o.done for o in task.orders):
            withdraw(self.executor, task.future)  # cancelled; never sent if the SDK still holds it

    # --- coming back -------------------------------------------------------------------------

    def _on_done(self, task: RemoteTask) -> None:
        """Hand a finished task to the manager thread (called in the executor's thread)."""
        task.finished = time.time()
        self._done.put(task)
        self._wakeup.set()

    def finished(self) -> t.Iterator[RemoteTask]:
        """Yield the tasks that finished since the last call (manager thread)."""
        while not self._done.empty():  # checked first: the manager polls this for every virtual worker
            try:
                task = self._done.get_nowait()
            except queue.Empty:
                return
            if self.journal is not None and task.future is not None:
                self.journal.done(task.future)
            yield task

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for a task to finish, unless one already has."""
        self._wakeup.clear()
        if self._done.empty():
            self._wakeup.wait(timeout)

    def held(self) -> dict[str, int]:
        """How many orders and finished tasks are held (a finished run holds none)."""
        return {"pending": len(self.pending), "done_queue": self._done.qsize()}

    def clear(self) -> None:
        """Drop held orders and finished tasks (the run is over)."""
        self.pending.clear()
        while not self._done.empty():
            try:
                self._done.get_nowait()
            except queue.Empty:
                break
