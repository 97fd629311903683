"""Take a task back before the Globus Compute SDK sends it to the web service, and stop waiting for it after.

The SDK ``Executor`` queues each submitted task (``(future, task)`` pairs) for its
submitter thread, which sends them in batches.  A future cancelled while still in
that queue would be sent anyway (the SDK does not look at cancellation), and the task
would run on the endpoint.  :func:`withdraw` cancels the future and removes the task
from the queue, so it never leaves this process.  Once the SDK has taken the task from
its queue (``task_id`` then follows), only cancelling the future is possible: the task
runs and its result is ignored.

A sent task's future also sits in the SDK's result watcher until its result arrives, and
the SDK's exit handler waits for every such future: a task whose endpoint was stopped never
answers, so the calling script would never exit.  :func:`withdraw` therefore also takes the
cancelled future off the result watcher's list.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import typing as t

log = logging.getLogger(__name__)


def withdraw(executor: t.Any, future: t.Any) -> bool:
    """Cancel ``future``; for an SDK ``Executor``, keep its task from being sent if still queued, and stop watching it.

    Parameters
    ----------
    executor : globus_compute_sdk.Executor or LocalEndpoint
        The executor the task was submitted to.
    future : concurrent.futures.Future
        The task's future.

    Returns
    -------
    bool
        True when the task was taken out of the SDK's send queue (it will not run).
    """
    removed = False
    to_send = getattr(executor, "_tasks_to_send", None)
    if isinstance(to_send, queue.Queue) and getattr(future, "task_id", None) is None:
        with to_send.mutex:
            kept = [item for item in to_send.queue if item[0] is not future]
            removed = len(kept) != len(to_send.queue)
            if removed:
                to_send.queue.clear()
                to_send.queue.extend(kept)
        if removed:
            to_send.task_done()  # the submitter will never take it: keep the queue's count right
            log.debug("task withdrawn before the SDK sent it")
    if not future.done() and future.cancel():
        # As an executor does for a future it cancels: wake whoever waits on it (concurrent.futures.wait).
        with contextlib.suppress(RuntimeError):  # notified meanwhile by another thread that cancelled it
            future.set_running_or_notify_cancel()
    _stop_watching(future)
    return removed


def _stop_watching(future: t.Any) -> None:
    """Take a cancelled future off the SDK result watchers' lists (they would wait for its result at exit)."""
    task_id = getattr(future, "task_id", None)
    if task_id is None:  # not sent yet: the SDK never watches a future that is done when it is sent
        return
    try:
        from globus_compute_sdk.sdk.executor import _RESULT_WATCHERS
    except ImportError:
        return
    for watcher in list(_RESULT_WATCHERS.values()):
        lock = getattr(watcher, "_new_futures_lock", None)
        watched = getattr(watcher, "_open_futures", None)
        empty = getattr(watcher, "_open_futures_empty", None)
        if lock is None or not isinstance(watched, dict) or empty is None:
            continue
        with lock:
            if watched.get(task_id) is future:
                del watched[task_id]
                if not watched:
                    empty.set()
