"""A GC-only driver script to kill and resume, its sim, and a fake Globus Compute service.

Run as ``python -m tests.reliability.resume_helpers WORKDIR SIM_MAX [--resume]`` from the repository
root: a persistent uniform sampler on the manager, a local endpoint (real engine, two workers),
four virtual workers, sims that sleep ``SLEEP`` s and log each start to ``WORKDIR/executions.log``,
history saved every ``SAVE_EVERY`` sims.  The final history goes to ``WORKDIR/final.npy``.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import os
import pathlib
import pickle
import sys
import threading
import time
import typing as t
import uuid

import numpy as np

SLEEP = 0.3
SAVE_EVERY = 4
NWORKERS = 4
EXECUTIONS = "executions.log"
TOKEN_ENV = "LIBE_GC_BUNDLE_OWNER"


def logged_sleep(H, persis_info, sim_specs):
    """Log ``sim_id x0 token`` at the start, sleep, return f = x0."""
    user = sim_specs["user"]
    with open(user["log"], "a") as fh:
        fh.write(f"{int(H['sim_id'][0])} {float(H['x'][0, 0])!r} {os.environ.get(TOKEN_ENV, '-')}\n")
    time.sleep(user["sleep"])
    out = np.zeros(len(H), dtype=sim_specs["out"])
    out["f"] = H["x"][:, 0]
    return out, persis_info


def read_executions(workdir: pathlib.Path) -> list[tuple[int, float, str]]:
    """The sims started so far: ``(sim_id, x0, watcher token)`` per line."""
    path = workdir / EXECUTIONS
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            rows.append((int(parts[0]), float(parts[1]), parts[2]))
    return rows


def driver_specs(workdir: pathlib.Path, sim_max: int) -> dict[str, t.Any]:
    """Specs of the driver's ensemble."""
    from tests.gconly.helpers import uniform_specs

    specs = uniform_specs(logged_sleep, NWORKERS, sim_max)
    specs["sim_specs"]["in"] = ["x", "sim_id"]
    specs["gen_specs"]["in"] = ["sim_id"]  # libEnsemble sends H0 to the persistent gen at its start
    # Each result goes back to the generator at once, which sends a new point: sims are always in
    # flight, so every saved history holds some started-but-unfinished rows.
    specs["alloc_specs"]["user"] = {"async_return": True}
    specs["sim_specs"]["user"] = {"sleep": SLEEP, "log": str(workdir / EXECUTIONS)}
    specs["libE_specs"] = {
        "nworkers": NWORKERS,
        "workflow_dir_path": str(workdir),
        "save_every_k_sims": SAVE_EVERY,
    }
    return specs


def main(argv: list[str]) -> int:
    """Run (or resume) the driver's ensemble."""
    from bundle.gconly import GCOnlySpecs
    from bundle.gconly.launch import run_gconly
    from tests.gconly.helpers import PY_ENGINE

    workdir = pathlib.Path(argv[0]).resolve()
    sim_max = int(argv[1])
    resume = "--resume" in argv
    # Import this module by name: sim_f defined in __main__ would travel without its module's globals.
    helpers = importlib.import_module("tests.reliability.resume_helpers")
    specs = helpers.driver_specs(workdir, sim_max)
    gc = GCOnlySpecs(user_endpoint_config=PY_ENGINE, local_options={"run_dir": str(workdir / "engine")}, resume=resume)
    t0 = time.monotonic()
    out = run_gconly(
        specs["sim_specs"],
        specs["gen_specs"],
        specs["exit_criteria"],
        specs["persis_info"],
        specs["alloc_specs"],
        specs["libE_specs"],
        gc_specs=gc,
    )
    np.save(workdir / "final.npy", out.H)
    print(f"DONE flag={out.exit_flag} tasks={out.tasks} seconds={time.monotonic() - t0:.1f}", flush=True)
    return 0


class FakeService:
    """Stands in for the Globus Compute service behind autospec'd SDK Executors (one task group).

    Tasks get ids a moment after submission (as the SDK's submitter thread sets them) and run in
    a small pool on serialized-then-deserialized arguments; tasks whose arguments match ``hold``
    wait until :meth:`release`.  :meth:`reload` answers ``Executor.reload_tasks``: a fresh future
    per task of the group, already set when the task has finished.
    """

    def __init__(self, hold: t.Callable[[tuple[t.Any, ...]], bool] = lambda args: False) -> None:
        from globus_compute_sdk.serialize import ComputeSerializer

        from bundle.processes.thread_cwd import own_working_directory

        self.serializer = ComputeSerializer()
        self.functions: dict[str, t.Callable[..., t.Any]] = {}
        # Each thread has a working directory of its own, as an endpoint's worker process has (GC-only's
        # runner changes into the sim's directory there).
        self.pool = concurrent.futures.ThreadPoolExecutor(8, initializer=own_working_directory)
        self.hold = hold
        self.released = threading.Event()
        self.task_group_id = str(uuid.uuid4())
        self.args_of: dict[str, tuple[t.Any, ...]] = {}
        self.results: dict[str, tuple[bool, t.Any]] = {}
        self.watchers: dict[str, list[t.Any]] = {}
        self.submitted: list[tuple[t.Any, ...]] = []
        self.lock = threading.Lock()

    def register(self, fn: t.Callable[..., t.Any], function_id: str | None = None, **_: t.Any) -> str:
        fid = f"fn-{len(self.functions)}"
        self.functions[fid] = self.serializer.deserialize(self.serializer.serialize(fn))
        return fid

    def submit(self, function_id: str, args: tuple[t.Any, ...] | None = None, kwargs: dict[str, t.Any] | None = None):
        from globus_compute_sdk.sdk.asynchronous.compute_future import ComputeFuture

        call_args = self.serializer.deserialize(self.serializer.serialize(tuple(args or ())))
        fut = ComputeFuture()
        task_id = str(uuid.uuid4())
        with self.lock:
            self.submitted.append(_plain(call_args))
            self.args_of[task_id] = call_args
            self.watchers[task_id] = [fut]

        def run() -> None:
            time.sleep(0.005)
            fut.task_id = task_id  # the SDK sets ids in its submitter thread, after submit() returned
            if self.hold(_plain(call_args)):
                self.released.wait()
            try:
                res: tuple[bool, t.Any] = (True, self.functions[function_id](*call_args, **(kwargs or {})))
            except Exception as err:
                res = (False, err)
            with self.lock:
                self.results[task_id] = res
                watchers = list(self.watchers.pop(task_id, []))
            for watcher in watchers:
                _settle(watcher, res)

        self.pool.submit(run)
        return fut

    def release(self) -> None:
        """Let the held tasks finish."""
        self.released.set()

    def reload(self, task_group_id: t.Any = None) -> list[t.Any]:
        """Answer ``reload_tasks(task_group_id)`` for this service's one task group."""
        from globus_compute_sdk.sdk.asynchronous.compute_future import ComputeFuture

        assert str(task_group_id) == self.task_group_id, f"reload_tasks for unknown group {task_group_id}"
        futures = []
        with self.lock:
            for task_id in self.args_of:
                fut = ComputeFuture(task_id)
                if task_id in self.results:
                    _settle(fut, self.results[task_id])
                else:
                    self.watchers[task_id].append(fut)
                futures.append(fut)
        return futures

    def close(self) -> None:
        self.release()
        self.pool.shutdown(wait=True)


def _plain(call_args: tuple[t.Any, ...]) -> tuple[t.Any, ...]:
    """Return a task's arguments as a plain call: GC-only mode's packed form is one pickled ``bytes``."""
    if len(call_args) == 1 and isinstance(call_args[0], bytes):
        call = pickle.loads(call_args[0])
        return (call,) if isinstance(call, list) else tuple(call)
    return call_args


def _settle(fut: t.Any, res: tuple[bool, t.Any]) -> None:
    if fut.done():  # cancelled by a run that ended meanwhile
        return
    try:
        if res[0]:
            fut.set_result(res[1])
        else:
            fut.set_exception(res[1])
    except concurrent.futures.InvalidStateError:
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
