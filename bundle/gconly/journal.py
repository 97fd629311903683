"""The task journal of a GC-only run: which sims went out in which remote task, and which came back.

A resumed run (:mod:`bundle.gconly.resume`) needs what libEnsemble's saved history does not hold:
the Globus Compute task id and task group id of every sim still in flight when the calling
script died.  The journal is a JSON-lines file in the workflow directory, appended by the
manager thread: one line per submitted task, one when its task id becomes known (the SDK
assigns ids in a background thread), one when it finishes.  Each line is flushed to the
operating system at once, so it survives the calling script being killed (not a crash of the
node itself: there is no ``fsync``).

Lines (``t`` is the task's number within the journal, unique across resumed runs)::

    {"ev": "run", "run": "<uuid>", "endpoint": "...", "time": 1.7e9, "resume": false}
    {"ev": "sub", "t": 7, "sims": [[12], [13]], "b": 1, "id": "<task id or null>"}
    {"ev": "tid", "t": 7, "id": "<task id>", "tg": "<task group id>"}
    {"ev": "done", "t": 7}
"""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib
import time
import typing as t
import uuid

JOURNAL_FILE = "gconly_journal.jsonl"
"""File name of the journal, in the workflow directory."""


@dataclasses.dataclass
class JournalTask:
    """One remote task as the journal recorded it."""

    seq: int
    sims: list[list[int]]
    """The sim ids of each work order the task carried (one order unless batched)."""
    batched: bool
    task_id: str | None = None
    done: bool = False


@dataclasses.dataclass
class JournalState:
    """What a journal file says about earlier runs."""

    tasks: dict[int, JournalTask] = dataclasses.field(default_factory=dict)
    task_group_id: str | None = None
    endpoint: str | None = None
    runs: int = 0

    @property
    def next_seq(self) -> int:
        """The first task number free for a new run."""
        return max(self.tasks, default=-1) + 1

    def done_sims(self) -> set[int]:
        """Sim ids whose task finished (result received by the calling script)."""
        return {i for task in self.tasks.values() if task.done for order in task.sims for i in order}


def load_journal(path: pathlib.Path) -> JournalState:
    """Read a journal; a torn last line (the writer was killed mid-write) is skipped.

    Parameters
    ----------
    path : pathlib.Path
        The journal file; a missing file reads as an empty journal.

    Returns
    -------
    JournalState
    """
    state = JournalState()
    if not path.exists():
        return state
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            ev = rec.get("ev")
            if ev == "run":
                state.runs += 1
                state.endpoint = rec.get("endpoint")
            elif ev == "sub":
                seq = int(rec["t"])
                state.tasks[seq] = JournalTask(seq, [list(map(int, o)) for o in rec["sims"]], bool(rec["b"]), rec["id"])
            elif ev == "tid" and int(rec["t"]) in state.tasks:
                state.tasks[int(rec["t"])].task_id = rec["id"]
                if rec.get("tg"):
                    state.task_group_id = rec["tg"]
            elif ev == "done" and int(rec["t"]) in state.tasks:
                state.tasks[int(rec["t"])].done = True
    return state


class Journal:
    """Append-only writer of a run's task journal (manager thread only).

    Parameters
    ----------
    path : pathlib.Path
        The journal file: a resumed run appends to it, a new run starts it afresh.
    executor : LocalEndpoint or globus_compute_sdk.Executor
        Read for ``task_group_id`` once tasks have ids.
    endpoint : str
        The endpoint, as given in ``sim_specs.globus_compute_endpoint``.
    first_seq : int
        Number of the run's first task (:attr:`JournalState.next_seq` when resuming).
    resume : bool
        Whether this run resumes an earlier one (recorded only).
    """

    def __init__(
        self, path: pathlib.Path, executor: t.Any, endpoint: str, first_seq: int = 0, *, resume: bool = False
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.executor = executor
        torn = False
        if resume and path.exists() and path.stat().st_size > 0:
            with path.open("rb") as fh:
                fh.seek(-1, 2)
                torn = fh.read(1) != b"\n"
        self._fh = path.open("a" if resume else "w", encoding="utf-8")
        if torn:  # the last writer was killed mid-line: end that line so the next record stands alone
            self._fh.write("\n")
        self._seq = first_seq
        self._seq_of: dict[int, int] = {}
        self._unresolved: collections.deque[tuple[int, t.Any]] = collections.deque()
        self._task_group: str | None = None
        self.run_id = str(uuid.uuid4())
        self._write({"ev": "run", "run": self.run_id, "endpoint": endpoint, "time": time.time(), "resume": resume})

    def _write(self, rec: dict[str, t.Any]) -> None:
        self._fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self._fh.flush()

    def submitted(self, sims: list[list[int]], batched: bool, future: t.Any) -> None:
        """Record a task just submitted (``sims``: the sim ids of each order it carries)."""
        seq = self._seq
        self._seq += 1
        self._seq_of[id(future)] = seq
        task_id = getattr(future, "task_id", None)
        self._write({"ev": "sub", "t": seq, "sims": sims, "b": int(batched), "id": task_id})
        if task_id is None:
            self._unresolved.append((seq, future))
        elif self._task_group is None:
            self._note_task_group(seq, task_id)
        self._resolve()

    def done(self, future: t.Any) -> None:
        """Record that the task behind ``future`` finished (its result reached the manager)."""
        seq = self._seq_of.pop(id(future), None)
        if seq is None:
            return
        self._resolve()
        self._write({"ev": "done", "t": seq})

    def _resolve(self) -> None:
        """Write the task ids the SDK has assigned since the last call (oldest first)."""
        while self._unresolved and getattr(self._unresolved[0][1], "task_id", None) is not None:
            seq, future = self._unresolved.popleft()
            tg = getattr(self.executor, "task_group_id", None)
            self._task_group = str(tg) if tg else None
            self._write({"ev": "tid", "t": seq, "id": str(future.task_id), "tg": self._task_group})

    def _note_task_group(self, seq: int, task_id: str) -> None:
        tg = getattr(self.executor, "task_group_id", None)
        if tg:
            self._task_group = str(tg)
            self._write({"ev": "tid", "t": seq, "id": str(task_id), "tg": self._task_group})

    def close(self) -> None:
        """Write the ids still pending and close the file; idempotent."""
        if self._fh.closed:
            return
        self._resolve()
        self._fh.close()
