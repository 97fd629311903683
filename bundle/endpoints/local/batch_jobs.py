"""Notice a Slurm block job that ended abnormally (a node failed, the job failed or ran out of time).

A block whose node fails is ended by Slurm (``NODE_FAIL``); its worker pool dies with it and Parsl
reports the tasks that ran there only as ``ManagerLost``, once ``heartbeat_threshold`` has passed.
:class:`SlurmJobWatch` reads the block jobs' states with ``squeue`` so that those tasks' errors can
say which job ended, how, and which of its nodes Slurm marked down, and why.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import subprocess
import time

log = logging.getLogger(__name__)

ABNORMAL = frozenset({"NODE_FAIL", "FAILED", "BOOT_FAIL", "OUT_OF_MEMORY", "TIMEOUT", "PREEMPTED", "DEADLINE"})
"""Job states in which a block ended without the engine asking it to."""


@dataclasses.dataclass(frozen=True)
class EndedJob:
    """A block job that ended abnormally.

    Attributes
    ----------
    job_id : str
        Slurm job id.
    state : str
        Its final state (``NODE_FAIL``, ``TIMEOUT``, ...).
    nodes : str
        Its node list.
    reason : str
        Slurm's reason for the state.
    down_nodes : tuple of str
        Its nodes that Slurm shows down, drained or failing, each with Slurm's reason.
    noticed : float
        ``time.monotonic()`` when it was noticed.
    """

    job_id: str
    state: str
    nodes: str
    reason: str
    down_nodes: tuple[str, ...]
    noticed: float

    def describe(self) -> str:
        """One line for error messages."""
        text = f"block job {self.job_id} on {self.nodes or '?'} ended {self.state}"
        if self.down_nodes:
            text += f" (node {', '.join(self.down_nodes)})"
        elif self.reason and self.reason != "None":
            text += f" ({self.reason})"
        return text


def _run(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout if out.returncode == 0 else ""


def _down_nodes(nodelist: str) -> tuple[str, ...]:
    """Nodes of ``nodelist`` that Slurm shows down, drained or failing, with its reason."""
    if not nodelist:
        return ()
    found = []
    for line in _run(["sinfo", "--noheader", "--Node", f"--nodes={nodelist}", "--format=%N|%t|%E"]).splitlines():
        name, _, rest = line.partition("|")
        state, _, reason = rest.partition("|")
        if state.strip("*~#!%$@^-").startswith(("down", "drain", "drng", "fail")):
            found.append(f"{name} {state.strip()}: {reason.strip() or 'no reason given'}")
    return tuple(dict.fromkeys(found))


class SlurmJobWatch:
    """Record block jobs that ended abnormally (see the module docstring)."""

    def __init__(self) -> None:
        self.ended: list[EndedJob] = []
        self._done: set[str] = set()
        self.available = shutil.which("squeue") is not None

    def check(self, job_ids: list[str]) -> list[EndedJob]:
        """Look at ``job_ids`` once; return those newly found ended abnormally.

        Parameters
        ----------
        job_ids : list of str
            The engine's block jobs.

        Returns
        -------
        list of EndedJob
        """
        ids = [j for j in job_ids if j not in self._done]
        if not ids or not self.available:
            return []
        found = []
        out = _run(["squeue", "--noheader", "--states=all", f"--jobs={','.join(ids)}", "--format=%i|%T|%N|%r"])
        for line in out.splitlines():
            parts = line.strip().split("|", 3)
            if len(parts) != 4 or parts[0] not in ids:
                continue
            job_id, state, nodes, reason = parts
            if state in ABNORMAL:
                self._done.add(job_id)
                ended = EndedJob(job_id, state, nodes, reason, _down_nodes(nodes), time.monotonic())
                log.warning("%s; tasks on it fail or are retried once heartbeat_threshold passes", ended.describe())
                self.ended.append(ended)
                found.append(ended)
            elif state in ("COMPLETED", "CANCELLED"):
                self._done.add(job_id)
        return found
