"""Stop what a lost local block leaves running.

When a local block's worker pool dies while tasks run (killed, out of memory), the pool's workers
and the apps they run (``mpiexec`` and its ranks) are left orphaned: a worker notices its pool is
gone only between two tasks, and an app may run on for its whole length.  A batch scheduler stops
a lost block's processes itself (Slurm ends the job and kills its steps); for blocks that are local
processes (``LocalProvider``) :class:`BlockWatch` does it.

Keeping the endpoint serving is not done here: the templates set the engine's
``block_error_handler: false``, so Parsl replaces the lost block as it would on a site endpoint,
and the tasks that were on it fail with ``ManagerLost`` once the interchange has missed the
pool's heartbeats for ``heartbeat_threshold`` seconds (or run again, up to
``max_retries_on_system_failure`` times).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import typing as t

from bundle.processes import proctree

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LostBlock:
    """A block whose shell exited while the engine was running.

    Attributes
    ----------
    job_id : str
        The provider's job id (the block shell's pid for a ``LocalProvider``).
    noticed : float
        ``time.monotonic()`` when the exit was noticed.
    stopped : int
        Processes of the block (workers, launchers, MPI ranks) left running and then stopped.
    """

    job_id: str
    noticed: float
    stopped: int


class BlockWatch:
    """Stop the processes of local blocks whose shell exited while the engine runs.

    Parameters
    ----------
    provider : parsl.providers.base.ExecutionProvider
        The engine's provider; only jobs with a local ``remote_pid`` are watched.
    """

    def __init__(self, provider: t.Any) -> None:
        self.provider = provider
        self.lost: list[LostBlock] = []
        self._trees: dict[str, dict[int, float | None]] = {}
        self._groups: dict[str, int] = {}
        self._leaders: dict[str, tuple[int, float | None]] = {}
        self._pools: dict[str, dict[int, float | None]] = {}
        self._done: set[str] = set()

    def _jobs(self) -> dict[str, int]:
        jobs = {}
        for job_id, job in list(getattr(self.provider, "resources", {}).items()):
            pid = job.get("remote_pid")
            if pid and not job.get("cancelled") and str(job_id) not in self._done:
                jobs[str(job_id)] = int(pid)
        return jobs

    def check(self) -> list[LostBlock]:
        """Record each live block's process tree; stop what is left of a block whose pool or shell is gone.

        Returns
        -------
        list of LostBlock
            Blocks found lost by this call.
        """
        found = []
        for job_id, pid in self._jobs().items():
            pools = self._pools.get(job_id, {})
            pool_gone = bool(pools) and not any(proctree.same_process(p, start) for p, start in pools.items())
            if proctree.alive(pid) and not pool_gone:
                # Keep what was seen before (still alive): a worker orphaned a moment ago is no
                # longer the block's descendant, but is still the block's.
                tree = {p: start for p, start in self._trees.get(job_id, {}).items() if proctree.same_process(p, start)}
                tree.update({p: proctree.start_time(p) for p in proctree.descendants([pid])})
                self._trees[job_id] = tree
                self._pools[job_id] = pools or {
                    p: start for p, start in tree.items() if proctree.command_mentions(p, "worker_pool")
                }
                group = proctree.process_group(pid)
                if group is not None and group != os.getpgid(0):
                    self._groups[job_id] = group
                    self._leaders.setdefault(job_id, (group, proctree.start_time(group)))
                continue
            seen = self._trees.pop(job_id, None)
            group = self._groups.pop(job_id, None)
            leader = self._leaders.pop(job_id, None)
            if group is not None and leader is not None and proctree.alive(group):
                if not proctree.same_process(*leader):
                    # The group's id is another process's now (its leader ended and the pid was reused, which
                    # Linux allows once the old group has no member left): those are not this block's.
                    group = None
            self._pools.pop(job_id, {})
            if seen is None:
                continue
            self._done.add(job_id)
            left = {p for p, start in seen.items() if proctree.same_process(p, start)}
            # Processes started since the last look (a launcher, its ranks) are in the block's process group.
            left.update(proctree.group_members(group) if group is not None else [])
            left.discard(os.getpid())
            lost = LostBlock(job_id, time.monotonic(), len(left))
            log.warning(
                "worker pool of block job %s exited while the engine was running; stopping %d process(es) it left "
                "(workers, launchers, MPI ranks); tasks on it fail or are retried once heartbeat_threshold passes",
                job_id,
                len(left),
            )
            if left:
                proctree.terminate(sorted(left), grace=2.0)
            self.lost.append(lost)
            found.append(lost)
        return found
