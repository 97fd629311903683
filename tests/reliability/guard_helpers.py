"""Shared pieces of the bad-input and security tests: sims the engine's workers import, timing, counting."""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import time
import typing as t
from unittest import mock

import numpy as np

from bundle.endpoints.local.engine_host import EngineHost

REPO = pathlib.Path(__file__).resolve().parents[2]

# The engine's workers import this repository's ``tests`` package (globus-compute-endpoint installs a
# top-level ``tests`` package of its own), whatever the driver's working directory.
PY_OPTS: dict[str, t.Any] = {
    "engine_type": "GlobusComputeEngine",
    "max_workers_per_node": 2,
    "worker_init": f"export PYTHONPATH={REPO}${{PYTHONPATH:+:$PYTHONPATH}}",
}
MPI_OPTS: dict[str, t.Any] = {"engine_type": "GlobusMPIEngine", "max_workers_per_block": 2, "slots_per_node": 2}

NEVER_HANGS_S = 60.0
"""Generous bound for "the error comes early, never a hang" (the figures recorded are far below it)."""


class Unpicklable:
    """An object no serializer can send (like an open connection)."""

    def __reduce__(self) -> t.Any:
        raise TypeError("this handle cannot be pickled")


class UnpicklableSim:
    """A callable sim that cannot be serialized (holds a handle)."""

    def __init__(self) -> None:
        self.handle = Unpicklable()

    def __call__(self, H: t.Any, persis_info: t.Any, sim_specs: t.Any) -> t.Any:
        return np.zeros(len(H), dtype=sim_specs["out"]), persis_info

    def __reduce__(self) -> t.Any:
        raise TypeError("this sim holds a handle and cannot be pickled")


def add_one(x: float) -> float:
    """A Python app."""
    return x + 1


def returns_dict(H: t.Any, persis_info: t.Any, sim_specs: t.Any) -> t.Any:
    """A gest-api style simulator wrongly given as sim_f: a dict where H_o belongs."""
    return {"f": 1.0}


def fails(H: t.Any, persis_info: t.Any, sim_specs: t.Any) -> t.Any:
    """A sim that always raises."""
    raise RuntimeError(f"sim failed on purpose at x={float(H['x'][0][0]):.3f}")


def six_hump(H: t.Any, persis_info: t.Any, sim_specs: t.Any) -> t.Any:
    """Six-hump camel."""
    x = H["x"]
    out = np.zeros(len(H), dtype=sim_specs["out"])
    x1, x2 = x[:, 0], x[:, 1]
    out["f"] = (4 - 2.1 * x1**2 + x1**4 / 3) * x1**2 + x1 * x2 + (-4 + 4 * x2**2) * x2**2
    return out, persis_info


@dataclasses.dataclass
class Figure:
    """One measured case: how long until the error, and how many tasks reached an engine meanwhile."""

    case: str
    mode: str
    error: str
    seconds: float
    engine_tasks: int


@contextlib.contextmanager
def engine_submissions() -> t.Iterator[list[t.Any]]:
    """Count the tasks handed to any local engine while the block runs (a spy on the real method)."""
    calls: list[t.Any] = []
    real = EngineHost.submit

    def spy(self: EngineHost, *args: t.Any, **kwargs: t.Any) -> t.Any:
        calls.append(args[0] if args else kwargs.get("task_id"))
        return real(self, *args, **kwargs)

    with mock.patch.object(EngineHost, "submit", autospec=True, side_effect=spy):
        yield calls


def timed(fn: t.Callable[[], t.Any]) -> tuple[BaseException | None, float, t.Any]:
    """Run ``fn``; return (the exception it raised or None, seconds taken, its result)."""
    start = time.monotonic()
    try:
        result = fn()
    except BaseException as err:  # the caller asserts on its type
        return err, time.monotonic() - start, None
    return None, time.monotonic() - start, result


def table(figures: t.Sequence[Figure]) -> str:
    """Figures as a markdown table (printed at the end of the module, kept for the issue note)."""
    rows = ["| case | mode | error | time to error (s) | tasks reaching the engine |", "|---|---|---|---|---|"]
    rows += [f"| {f.case} | {f.mode} | {f.error} | {f.seconds:.3f} | {f.engine_tasks} |" for f in figures]
    return "\n".join(rows)


def gconly_specs(sim_f: t.Any, nworkers: int, sim_max: int, endpoint: str = "local") -> dict[str, t.Any]:
    """Specs of a small GC-only run: a persistent uniform sampler on the manager feeding ``sim_f``."""
    from tests.gconly.helpers import uniform_specs

    return uniform_specs(sim_f, nworkers, sim_max, endpoint=endpoint, seed=11)


def run_gconly(
    specs: dict[str, t.Any], nworkers: int, libE_specs: dict[str, t.Any] | None = None, **gc: t.Any
) -> t.Any:
    """Run GC-only mode as ``bundle.libE`` does; return ``(H, persis_info, flag, sim_errors, tasks)``."""
    from bundle.gconly import GCOnlySpecs
    from bundle.gconly.launch import run_gconly as _run

    gc.setdefault("user_endpoint_config", PY_OPTS)
    return _run(
        specs["sim_specs"],
        specs["gen_specs"],
        specs["exit_criteria"],
        specs["persis_info"],
        specs["alloc_specs"],
        {"nworkers": nworkers, **(libE_specs or {})},
        gc_specs=GCOnlySpecs(**gc),
    )


def returns_no_rows(H: t.Any, persis_info: t.Any, sim_specs: t.Any) -> t.Any:
    """Return fewer rows than the work order has."""
    return np.zeros(0, dtype=sim_specs["out"]), persis_info


def returns_text(H: t.Any, persis_info: t.Any, sim_specs: t.Any) -> t.Any:
    """Return a string where H_o belongs."""
    return "f=1.0", persis_info


def report(request: t.Any, title: str, text: str) -> None:
    """Write ``text`` to the terminal past pytest's output capture (figures for the issue note)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or not text:
        return
    with capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext():
        reporter.write_line("")
        reporter.write_line(title)
        for line in text.splitlines():
            reporter.write_line(line)


def fails_on_negative(H: t.Any, persis_info: t.Any, sim_specs: t.Any) -> t.Any:
    """A pure-Python sim that raises for negative x[0] (GC-only mode's failing sim)."""
    if H["x"][0, 0] < 0:
        raise ValueError(f"negative x {H['x'][0, 0]:.6f} refused")
    out = np.zeros(len(H), dtype=sim_specs["out"])
    out["f"] = H["x"][:, 0]
    return out, persis_info


def mpi_app_sim(H: t.Any, persis_info: t.Any, sim_specs: t.Any, libE_info: t.Any) -> t.Any:
    """Executor mode: launch the MPI app, which fails (exit 3) for odd sim ids."""
    from libensemble.message_numbers import TASK_FAILED, WORKER_DONE

    code = 3 if int(H["sim_id"][0]) % 2 else 0
    task = libE_info["executor"].submit(app_name="app", app_args=str(code), num_procs=1)
    task.wait()
    out = np.zeros(len(H), dtype=sim_specs["out"])
    out["f"] = float(task.errcode or 0)
    return out, persis_info, WORKER_DONE if task.state == "FINISHED" else TASK_FAILED


def raising_sim(H: t.Any, persis_info: t.Any, sim_specs: t.Any, libE_info: t.Any) -> t.Any:
    """Executor mode: a sim that raises after its MPI app ran (libEnsemble aborts the run)."""
    task = libE_info["executor"].submit(app_name="app", app_args="0", num_procs=1)
    task.wait()
    raise RuntimeError(f"sim {int(H['sim_id'][0])} failed on purpose after its app ran")


def double(x: float) -> float:
    """A Python function not registered elsewhere (so it is serialized afresh)."""
    return 2 * x
