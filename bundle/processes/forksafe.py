"""Per-process state that a forked child must not inherit, and locks per key.

libEnsemble's ``local`` comms fork workers from the driver.  A child inherits the parent's locks
(possibly held by a thread that does not exist in the child), engines, watcher pipe and executor
cache, none of which are its own.  :func:`after_fork_in_child` is the one way the bundle resets
such state; :class:`KeyedLocks` gives one lock per endpoint (or other key), so that one slow
endpoint never holds up another, and starts afresh in a forked child.
"""

from __future__ import annotations

import os
import threading
import typing as t
import weakref

F = t.TypeVar("F", bound=t.Callable[[], None])


def after_fork_in_child(fn: F) -> F:
    """Run ``fn`` in the child after each ``os.fork`` (where the platform has fork); usable as a decorator.

    Parameters
    ----------
    fn : callable
        Called with no arguments in the child.

    Returns
    -------
    callable
        ``fn`` itself.
    """
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=fn)
    return fn


class KeyedLocks:
    """One lock per key, made on first use; fresh (all released) in a forked child.

    Parameters
    ----------
    weak : bool
        Hold the keys weakly (objects such as endpoint executors: a lock goes with its key);
        otherwise keys are any hashable value, kept until :meth:`discard`.
    """

    _all: t.ClassVar[weakref.WeakSet[KeyedLocks]] = weakref.WeakSet()

    def __init__(self, weak: bool = False) -> None:
        self.weak = weak
        self._guard = threading.Lock()
        self._locks: t.MutableMapping[t.Any, threading.Lock] = weakref.WeakKeyDictionary() if weak else {}
        KeyedLocks._all.add(self)

    def of(self, key: t.Any) -> threading.Lock:
        """Return the lock of ``key`` (the shared guard is held only to look it up, never while it is held).

        Parameters
        ----------
        key : object
            What the lock protects.

        Returns
        -------
        threading.Lock
            The same lock for the same key.
        """
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock

    def discard(self, key: t.Any) -> None:
        """Forget the lock of ``key`` (the next :meth:`of` makes a new one).

        Parameters
        ----------
        key : object
            The key.
        """
        with self._guard:
            self._locks.pop(key, None)

    def _reset(self) -> None:
        self._guard = threading.Lock()
        self._locks = weakref.WeakKeyDictionary() if self.weak else {}


@after_fork_in_child
def _reset_all_in_child() -> None:
    for locks in list(KeyedLocks._all):
        locks._reset()
