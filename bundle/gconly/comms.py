"""Virtual worker comms: what libEnsemble's stock ``Manager`` talks to in GC-only mode.

The manager only calls ``send``, ``recv`` and ``mail_flag`` on a worker's comm.  A
:class:`VirtualWorkerComm` forwards them to the run's
:class:`~bundle.gconly.dispatch.SimDispatcher`, which turns a sim work order (the Work dict,
then its history rows) into an endpoint task and later answers ``recv`` with the dict a
libEnsemble worker would have sent.  No process or thread is started per worker.
"""

from __future__ import annotations

import typing as t

from libensemble.comms.comms import Comm

if t.TYPE_CHECKING:
    from bundle.gconly.dispatch import SimDispatcher


class VirtualWorkerComm(Comm):  # type: ignore[misc]
    """The comm of virtual worker ``w``.

    Parameters
    ----------
    dispatcher : SimDispatcher
        Shared by all virtual workers of a run.
    w : int
        Worker id (1..nworkers).
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
        """Return the number of virtual workers."""
        return self.dispatcher.nworkers

    def kill_pending(self) -> None:
        """Nothing is pending on the manager side of a virtual comm."""
