"""Task ids that arrive a moment after submit, as the Globus Compute SDK's do.

The SDK ``Executor`` returns a future at once and sets its ``task_id`` later, from
the web service's answer to the batch submission (on its submitter thread).  Code
that reads ``future.task_id`` right after submit (a task journal, a resume) must
cope with ``None``; the local endpoint keeps that contract by setting ids on one
background thread per process, always before the task's result.
"""

from __future__ import annotations

import os
import queue
import threading
import typing as t

from bundle.processes.forksafe import after_fork_in_child

if t.TYPE_CHECKING:
    from globus_compute_sdk.sdk.asynchronous.compute_future import ComputeFuture

_Item = tuple["ComputeFuture", str]


class TaskIdAnnouncer:
    """Set futures' ``task_id`` on a daemon thread shared by the process."""

    _queue: t.ClassVar[queue.SimpleQueue[_Item] | None] = None
    _pid: t.ClassVar[int | None] = None
    _lock: t.ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def _ensure(cls) -> queue.SimpleQueue[_Item]:
        with cls._lock:
            if cls._queue is None or cls._pid != os.getpid():
                cls._queue = queue.SimpleQueue()
                cls._pid = os.getpid()
                threading.Thread(target=cls._run, args=(cls._queue,), name="libe-gc-task-ids", daemon=True).start()
            return cls._queue

    @staticmethod
    def _run(items: queue.SimpleQueue[_Item]) -> None:
        while True:
            fut, task_id = items.get()
            if fut.task_id is None:
                fut.task_id = task_id

    def announce(self, fut: ComputeFuture, task_id: str) -> None:
        """Have ``fut.task_id`` set to ``task_id`` shortly (unless set before, e.g. by its result).

        Parameters
        ----------
        fut : ComputeFuture
            The future handed to the caller.
        task_id : str
            The task's id.
        """
        self._ensure().put((fut, task_id))


@after_fork_in_child
def _reset_after_fork() -> None:
    TaskIdAnnouncer._lock = threading.Lock()
