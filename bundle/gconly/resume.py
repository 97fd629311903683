"""Resume a GC-only run after the calling script died: saved history as H0, in-flight tasks reattached.

libEnsemble 1.6.1 facts this module relies on:

* ``libE_specs.save_every_k_sims = k`` makes the manager write
  ``<workflow_dir_path>/<H_file_prefix>_after_sim_<n>.npy`` (``H_file_prefix`` default
  ``libE_history``; a date inserted when ``save_H_with_date``), ``n`` a multiple of ``k``, deleting
  the previous file of that pattern first.  An exception in the manager writes
  ``libE_history_at_abort_<n>.npy`` (``save_H_and_persis_on_abort``, default on).
* With ``H0``, rows ``sim_started`` are never given to a sim again, and ``sim_max`` counts sims
  started/ended *beyond* those of ``H0`` (``sim_started_offset`` / ``sim_ended_offset``).

So a resumed run marks the rows of the saved history that were started but not ended as not
started (the allocation function gives them out again, under their own ``sim_id``), and lowers
``sim_max`` by the rows already ended, so that ``sim_max`` keeps meaning the whole run.  On a cloud
endpoint the re-given rows are matched, by their sim ids, to the tasks in the journal
(:mod:`bundle.gconly.journal`) and reattached with ``Executor.reload_tasks()`` instead of being
submitted again; on a local endpoint (whose engine died with the calling script) they are
submitted again.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import re
import typing as t
from concurrent.futures import Future

import numpy as np

from bundle.gconly.calls import SimWire
from bundle.gconly.journal import JournalState, JournalTask
from bundle.gconly.specs import GCOnlyConfigError

if t.TYPE_CHECKING:
    import numpy.typing as npt

log = logging.getLogger(__name__)

ABORT_PREFIX = "libE_history_at_abort_"


def find_saved_history(workflow_dir: pathlib.Path, prefix: str = "libE_history") -> pathlib.Path | None:
    """Return the newest history libEnsemble saved in ``workflow_dir``, or None.

    Candidates are ``<prefix>_*after_sim_<n>.npy`` (``save_every_k_sims``) and
    ``libE_history_at_abort_<n>.npy``; the one written last wins (then the larger ``n``).
    """
    pattern = re.compile(rf"^(?:{re.escape(prefix)}_.*after_sim_|{ABORT_PREFIX})(\d+)\.npy$")
    found = []
    for path in workflow_dir.glob("*.npy"):
        match = pattern.match(path.name)
        if match:
            found.append((path.stat().st_mtime_ns, int(match.group(1)), path))
    return max(found)[2] if found else None


@dataclasses.dataclass
class ResumePlan:
    """What a resumed run starts from."""

    H0: npt.NDArray[t.Any]
    history_file: pathlib.Path
    ended: int
    """Rows of the saved history whose sim had ended (kept as they are)."""
    requeued: list[int]
    """Sim ids started but not ended in the saved history: given out again (or reattached)."""
    journal: JournalState


def plan_resume(
    workflow_dir: pathlib.Path, prefix: str, journal: JournalState, *, H0_given: bool = False
) -> ResumePlan:
    """Load the newest saved history and mark its unfinished rows for another go.

    Raises
    ------
    GCOnlyConfigError
        When ``H0`` is given too, or no saved history exists in ``workflow_dir``.
    """
    if H0_given:
        raise GCOnlyConfigError("gc_specs.resume loads H0 from the saved history itself; do not pass H0 as well")
    path = find_saved_history(workflow_dir, prefix)
    if path is None:
        raise GCOnlyConfigError(
            f"gc_specs.resume: no saved history ({prefix}_after_sim_<n>.npy or {ABORT_PREFIX}<n>.npy) in "
            f"{workflow_dir.resolve()}; set libE_specs.save_every_k_sims in the run to resume, and resume from "
            "the same workflow_dir_path (or pass that directory as gc_specs.resume)"
        )
    H0 = np.load(path, allow_pickle=True)
    for name in ("sim_id", "sim_started", "sim_ended"):
        if name not in (H0.dtype.names or ()):
            raise GCOnlyConfigError(f"{path} has no {name!r} field: not a history libEnsemble saved")
    unfinished = H0["sim_started"] & ~H0["sim_ended"]
    requeued = [int(i) for i in H0["sim_id"][unfinished]]
    H0["sim_started"][unfinished] = False
    if "sim_worker" in H0.dtype.names:
        H0["sim_worker"][unfinished] = 0
    if "sim_started_time" in H0.dtype.names:
        H0["sim_started_time"][unfinished] = np.inf
    ended = int(np.sum(H0["sim_ended"]))
    log.info(
        "resuming from %s: %d sims ended, %d unfinished given out again, %d rows not yet started",
        path,
        ended,
        len(requeued),
        len(H0) - ended - len(requeued),
    )
    return ResumePlan(H0, path, ended, requeued, journal)


def remaining_exit_criteria(exit_criteria: dict[str, t.Any], plan: ResumePlan) -> dict[str, t.Any]:
    """Return ``exit_criteria`` with ``sim_max`` counting the whole run (the saved sims included).

    Raises
    ------
    GCOnlyConfigError
        When the saved history already holds ``sim_max`` ended sims.
    """
    out = dict(exit_criteria)
    if "sim_max" in out:
        left = int(out["sim_max"]) - plan.ended
        if left <= 0:
            raise GCOnlyConfigError(
                f"gc_specs.resume: the saved history {plan.history_file} already holds {plan.ended} ended sims "
                f"(sim_max {out['sim_max']}): nothing left to run"
            )
        out["sim_max"] = left
    return out


def _one_of_batch(batch: Future[t.Any], index: int) -> Future[t.Any]:
    """Return a future for order ``index`` of a batched task: a one-item list, as a one-order batch returns.

    The list is plain (not packed), whatever form the batch was sent in.
    """
    single: Future[t.Any] = Future()

    def copy(done: Future[t.Any]) -> None:
        if done.cancelled():
            single.cancel()
            return
        err = done.exception()
        if err is not None:
            single.set_exception(err)
            return
        try:
            # A packed batch answers with its list pickled (bundle.gconly.calls); a plain one with the list.
            result = SimWire.answer(done.result())
        except Exception as exc:
            single.set_exception(exc)
            return
        if isinstance(result, list) and index < len(result):
            single.set_result([result[index]])
        else:
            single.set_exception(ValueError(f"malformed batch result: {result!r:.200}"))

    batch.add_done_callback(copy)
    return single


class Reattach:
    """Futures of tasks from before the crash, by the sim ids of the work order they answer.

    Parameters
    ----------
    executor : globus_compute_sdk.Executor
        The cloud endpoint's executor.
    plan : ResumePlan
        The resumed run's plan; only its ``requeued`` sims are reattached.

    Raises
    ------
    bundle.gconly.EndpointUnavailableError
        When the Globus Compute service does not answer ``reload_tasks``.
    """

    def __init__(self, executor: t.Any, plan: ResumePlan, endpoint: str) -> None:
        self._by_sims: dict[tuple[int, ...], tuple[Future[t.Any], bool]] = {}
        self.reattached = 0
        self.unknown = 0
        wanted = set(plan.requeued)
        latest: dict[tuple[int, ...], tuple[JournalTask, int]] = {}
        for task in sorted(plan.journal.tasks.values(), key=lambda tk: tk.seq):
            for index, sims in enumerate(task.sims):
                if task.task_id and sims and set(sims) <= wanted:
                    latest[tuple(sims)] = (task, index)
        tg = plan.journal.task_group_id
        if not latest or not tg:
            return
        from bundle.gconly.availability import EndpointUnavailableError, is_service_error

        try:
            futures = {str(f.task_id): f for f in executor.reload_tasks(tg)}
        except Exception as err:
            if is_service_error(err):
                raise EndpointUnavailableError(
                    f"gc_specs.resume: the Globus Compute service did not reload task group {tg} of endpoint "
                    f"{endpoint}: {type(err).__name__}: {err}",
                    endpoint=endpoint,
                ) from err
            raise
        for key, (task, index) in latest.items():
            future = futures.get(str(task.task_id))
            if future is None:
                self.unknown += 1  # the service no longer knows it: the sim is submitted again
                continue
            self._by_sims[key] = (_one_of_batch(future, index), True) if task.batched else (future, False)
        log.info(
            "resume: %d in-flight sims reattached from task group %s, %d unknown to the service",
            len(self._by_sims),
            tg,
            self.unknown,
        )

    def take(self, sim_ids: t.Sequence[int]) -> tuple[Future[t.Any], bool] | None:
        """Return ``(future, batched)`` of the earlier task for this work order, once; None to submit anew."""
        if not self._by_sims:
            return None
        found = self._by_sims.pop(tuple(int(i) for i in sim_ids), None)
        if found is not None:
            self.reattached += 1
        return found

    def __len__(self) -> int:
        return len(self._by_sims)


def resume_dir(value: bool | str | os.PathLike[str], workflow_dir: pathlib.Path) -> pathlib.Path:
    """Return the directory a resume reads: ``workflow_dir`` for ``True``, else the path given."""
    return workflow_dir if isinstance(value, bool) else pathlib.Path(value)
