"""A working directory of the calling thread's own, for libEnsemble's workers on ``threads`` comms.

libEnsemble's workers change directory into their sim directories (``sim_dirs_make``,
``use_worker_dirs``) before they call ``sim_f``.  With ``threads`` comms the workers are threads
of one process, and a process has one working directory: a worker's ``chdir`` moves every other
worker too, so a sim (or the task it submits) reads and writes another sim's folder, and a
relative ``ensemble_dir_path`` nests (``ensemble/sim0001/ensemble/sim0002``).

On Linux a thread can leave the filesystem context it shares with the others
(``unshare(CLONE_FS)``, which needs no privilege and is allowed in a threaded process): from then
on its ``chdir`` and ``os.getcwd()`` are its own, as with ``local`` comms, where each worker is a
process.  Threads it starts later share its directory, as threads of a process share the process's.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading

log = logging.getLogger(__name__)

CLONE_FS = 0x00000200
"""``unshare`` flag: stop sharing the working directory, root and umask with other threads."""

_state = threading.local()
_warned = threading.Event()


def own_working_directory() -> bool:
    """Give the calling thread a working directory of its own (unchanged: the one it has now).

    Idempotent per thread.  Where the system cannot (not Linux, or the call is refused), the thread
    keeps sharing the process's directory and a warning says what that means, once per process.

    Returns
    -------
    bool
        Whether the calling thread now has a working directory of its own.
    """
    if getattr(_state, "own", False):
        return True
    err = "only Linux gives a thread a working directory of its own"
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_FS) == 0:
            _state.own = True
            return True
        err = f"unshare(CLONE_FS) failed: {os.strerror(ctypes.get_errno())}"
    if not _warned.is_set():
        _warned.set()
        log.warning(
            "libEnsemble's threads comms: the workers share this process's working directory (%s); with "
            "sim_dirs_make or use_worker_dirs a sim and its tasks may run in another sim's directory. Use "
            "comms='local' there.",
            err,
        )
    return False
