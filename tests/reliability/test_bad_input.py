"""Bad input gets a clear, early error in both modes, on a real local endpoint: type, message, time, no task sent.

Every case runs against live engines (a GlobusMPIEngine and a GlobusComputeEngine started once for the
module), with a spy on the engines' submit method: the error must name what to change, come within a
bounded time, and no task may reach an engine.  The time to each error is recorded and printed as a table
at the end of the module (``-s`` not needed), and written to ``bad_input_figures.json`` in pytest's
base temporary folder.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import threading
import time
import typing as t
from unittest import mock

import globus_compute_sdk
import numpy as np
import pytest
from libensemble.executors.executor import ExecutorException

from bundle import GlobusComputeExecutor
from bundle.endpoints import python_check
from bundle.endpoints.session import GCSession
from bundle.errors import (
    EndpointPythonWarning,
    ResourceSpecificationError,
    TaskSerializationError,
    TemplateNotFoundError,
    TemplateOptionError,
)
from bundle.gconly import GCOnlyConfigError, SimSerializationError
from tests.reliability import guard_helpers as gh

EP = "0b6c35f4-3c55-4f55-9d4e-7d7f1f0f5a21"
FIGURES: list[gh.Figure] = []


@pytest.fixture(autouse=True)
def _clear_session() -> t.Iterator[None]:
    """Keep the module's engines across its tests (overrides the per-test clear)."""
    yield


@pytest.fixture(scope="module", autouse=True)
def live_engines(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[None]:
    """Start both engines once, so each case meets a live endpoint; print the figures at the end."""
    for opts in (gh.PY_OPTS, gh.MPI_OPTS):
        ep = GCSession.get_executor("local", opts)
        assert ep.wait_ready(90), f"local endpoint {opts} did not start"
    yield
    GCSession.clear()
    out = tmp_path_factory.getbasetemp() / "bad_input_figures.json"
    out.write_text(json.dumps([dataclasses.asdict(f) for f in FIGURES], indent=1))
    gh.report(request, f"bad input: time to error ({out})", gh.table(FIGURES))


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input: what to run, and the error it must raise."""

    name: str
    mode: str
    run: t.Callable[[], t.Any]
    error: type[BaseException]
    says: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.mode}: {self.name}"


def _executor(opts: dict[str, t.Any] | None = None, endpoint: str = "local") -> GlobusComputeExecutor:
    exctr = GlobusComputeExecutor(endpoint, user_endpoint_config=gh.MPI_OPTS if opts is None else opts)
    exctr.register_app("/bin/true", app_name="probe")
    exctr.register_app("add", app_name="add", pyobj=gh.add_one)
    return exctr


def _gconly(sim_f: t.Any = gh.six_hump, nworkers: int = 2, **kw: t.Any) -> t.Callable[[], t.Any]:
    def run() -> t.Any:
        specs = gh.gconly_specs(sim_f, nworkers, 4, endpoint=kw.pop("endpoint", "local"))
        for key, value in kw.pop("sim_user", {}).items():
            specs["sim_specs"]["user"][key] = value
        for w, extra in kw.pop("persis", {}).items():
            specs["persis_info"][w].update(extra)
        return gh.run_gconly(specs, nworkers, **kw)

    return run


EXECUTOR_CASES = [
    Case(
        "ranks do not divide across nodes",
        "executor",
        lambda: _executor().submit(app_name="probe", num_procs=3, num_nodes=2),
        ResourceSpecificationError,
        ("divide evenly",),
    ),
    Case(
        "more nodes than a task can get",
        "executor",
        lambda: _executor().submit(app_name="probe", num_nodes=2),
        ResourceSpecificationError,
        ("at most 1 node",),
    ),
    Case(
        "zero ranks",
        "executor",
        lambda: _executor().submit(app_name="probe", num_procs=0),
        ResourceSpecificationError,
        ("positive integer",),
    ),
    Case(
        "MPI app on a GlobusComputeEngine",
        "executor",
        lambda: _executor(gh.PY_OPTS).submit(app_name="probe"),
        ResourceSpecificationError,
        ("cannot launch MPI apps", "GlobusMPIEngine"),
    ),
    Case(
        "template option out of range",
        "executor",
        lambda: _executor({**gh.MPI_OPTS, "slots_per_node": 0}),
        TemplateOptionError,
        ("slots_per_node", "from 1 to 1024"),
    ),
    Case(
        "unknown template option",
        "executor",
        lambda: _executor({"nodez": 2}),
        TemplateOptionError,
        ("no option 'nodez'", "allowed options"),
    ),
    Case(
        "template option of the wrong type",
        "executor",
        lambda: _executor({"max_workers_per_block": "two"}),
        TemplateOptionError,
        ("max_workers_per_block", "integer"),
    ),
    Case(
        "unpicklable function",
        "executor",
        lambda: _executor(gh.PY_OPTS).submit(func=gh.UnpicklableSim()),
        TaskSerializationError,
        ("cannot send the function", "cannot be pickled", "Pass values"),
    ),
    Case(
        "unpicklable argument",
        "executor",
        lambda: _executor(gh.PY_OPTS).submit(app_name="add", args=(gh.Unpicklable(),)),
        TaskSerializationError,
        ("cannot send args[0] of Python app 'add'", "cannot be pickled"),
    ),
    Case(
        "unknown app name",
        "executor",
        lambda: _executor().submit(app_name="nope"),
        ExecutorException,
        ("nope", "not found in registry"),
    ),
    Case(
        "unknown endpoint name",
        "executor",
        lambda: _executor(endpoint="my-endpoint"),
        ValueError,
        ("'local', 'local:<template>' or a Globus Compute endpoint UUID", "my-endpoint"),
    ),
    Case(
        "unknown template name",
        "executor",
        lambda: _executor(endpoint="local:nope"),
        TemplateNotFoundError,
        ("no endpoint template 'nope'", "the bundle ships"),
    ),
]

GCONLY_CASES = [
    Case(
        "template option out of range",
        "gconly",
        _gconly(user_endpoint_config={**gh.PY_OPTS, "max_workers_per_node": 0}),
        TemplateOptionError,
        ("max_workers_per_node", "from 1 to 1024"),
    ),
    Case(
        "unknown template option",
        "gconly",
        _gconly(user_endpoint_config={"nodez": 2}),
        TemplateOptionError,
        ("no option 'nodez'", "allowed options"),
    ),
    Case(
        "option of the other engine",
        "gconly",
        _gconly(user_endpoint_config={**gh.PY_OPTS, "slots_per_node": 2}),
        TemplateOptionError,
        ("slots_per_node", "does not apply", "change engine_type"),
    ),
    Case(
        "unpicklable sim_f",
        "gconly",
        _gconly(gh.UnpicklableSim()),
        SimSerializationError,
        ("cannot send sim_f", "cannot be pickled", "module level"),
    ),
    Case(
        "unpicklable sim_specs['user']",
        "gconly",
        _gconly(sim_user={"db": gh.Unpicklable()}),
        SimSerializationError,
        ("sim_specs['user']", "cannot be pickled", "Keep sim_specs picklable"),
    ),
    Case(
        "unpicklable persis_info",
        "gconly",
        _gconly(persis={2: {"db": gh.Unpicklable()}}),  # virtual sim worker 2 (the generator is worker 1)
        SimSerializationError,
        ("persis_info[2]['db']", "cannot be pickled"),
    ),
    Case(
        "unknown endpoint name",
        "gconly",
        _gconly(endpoint="my-endpoint"),
        ValueError,
        ("'local', 'local:<template>' or a Globus Compute endpoint UUID", "my-endpoint"),
    ),
    Case(
        "unknown template name",
        "gconly",
        _gconly(endpoint="local:nope"),
        TemplateNotFoundError,
        ("no endpoint template 'nope'", "the bundle ships"),
    ),
    Case(
        "batch size that cannot be met",
        "gconly",
        _gconly(batch_size=0),
        GCOnlyConfigError,
        ("batch_size", ">= 1"),
    ),
    Case(
        "copy back from a remote endpoint",
        "gconly",
        _gconly(
            endpoint="3c1a7a0e-2b7d-4b59-8d5e-7f0b0c3d2e10",
            libE_specs={"sim_dirs_make": True, "ensemble_copy_back": True},
        ),
        GCOnlyConfigError,
        ("ensemble_copy_back", "cannot read the endpoint's file system", "Globus Transfer"),
    ),
    Case(
        "remote_workdir on the local endpoint",
        "gconly",
        _gconly(remote_workdir="/scratch/me"),
        GCOnlyConfigError,
        ("remote_workdir applies to remote endpoints",),
    ),
]


@pytest.mark.parametrize("case", EXECUTOR_CASES + GCONLY_CASES, ids=str)
def test_bad_input_fails_early_with_what_to_change(case: Case, tmp_path: t.Any, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    cached = GCSession.cached()
    with gh.engine_submissions() as sent:
        err, seconds, _ = gh.timed(case.run)
    FIGURES.append(gh.Figure(case.name, case.mode, type(err).__name__, seconds, len(sent)))
    assert isinstance(err, case.error), f"expected {case.error.__name__}, got {err!r}"
    for words in case.says:
        assert words in str(err), f"{words!r} not in: {err}"
    assert sent == [], "no task may reach the engine"
    assert GCSession.cached() == cached, "no new endpoint may start for bad input"
    assert seconds < gh.NEVER_HANGS_S
    assert not (tmp_path / "libE_stats.txt").exists() or "sim" not in (tmp_path / "libE_stats.txt").read_text()


@pytest.mark.parametrize(
    ("sim_f", "says"),
    [
        (gh.returns_dict, "SimSpecs.simulator"),
        (gh.returns_text, "returned a str where H_o belongs"),
        (gh.returns_no_rows, "0 rows for a work order of 1 row"),
    ],
    ids=["dict instead of H_o", "text instead of H_o", "no rows"],
)
def test_malformed_sim_output_is_a_failed_sim_with_the_reason(sim_f, says, tmp_path, monkeypatch):
    """GC-only mode: a sim whose output cannot enter the history fails, saying why; the run ends."""
    monkeypatch.chdir(tmp_path)
    err, seconds, result = gh.timed(lambda: gh.run_gconly(gh.gconly_specs(sim_f, 2, 4), 2))
    FIGURES.append(gh.Figure(f"malformed output: {says}", "gconly", "failed sims (TASK_FAILED)", seconds, -1))
    assert err is None, f"the run must end normally, got {err!r}"
    H, _, flag, errors, _ = result
    assert flag == 0 and len(errors) == 4, errors
    assert all(says in text for text in errors.values()), errors
    assert np.all(np.isnan(H["f"][H["sim_ended"]]))
    assert seconds < gh.NEVER_HANGS_S


# --- the endpoint's Python ------------------------------------------------------------------------------------


def _cloud(python: str | None, hang: float = 0.0) -> tuple[mock.Mock, mock.Mock]:
    """An autospec'd SDK Executor class whose instances' client reports ``python`` (None: raises)."""
    client = mock.create_autospec(globus_compute_sdk.Client, instance=True)

    def metadata(endpoint_id: str) -> dict[str, t.Any]:
        if hang:
            time.sleep(hang)
        if python is None:
            raise RuntimeError("403 Forbidden")
        return {"python_version": python, "endpoint_version": "4.19.0"}

    client.get_endpoint_metadata.side_effect = metadata
    client.get_endpoint_status.return_value = {"status": "online"}  # GC-only mode asks before it starts
    instance = mock.create_autospec(globus_compute_sdk.Executor, instance=True)
    instance.client = client
    instance.resource_specification = None
    instance.register_function.return_value = "fn-1"
    cls = mock.create_autospec(globus_compute_sdk.Executor, return_value=instance)
    return cls, instance


def _other_minor() -> str:
    major, minor = platform.python_version_tuple()[:2]
    return f"{major}.{int(minor) + 1}.2"


@pytest.fixture
def fresh_checks() -> t.Iterator[None]:
    python_check.forget_checks()
    yield
    python_check.forget_checks()
    GCSession.clear()


def test_python_mismatch_warns_once_before_the_first_executor_task(fresh_checks, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cls, inst = _cloud(_other_minor())
    order: list[str] = []
    inst.submit_to_registered_function.side_effect = lambda *a, **k: order.append("submit")
    monkeypatch.setattr(globus_compute_sdk, "Executor", cls)
    exctr = GlobusComputeExecutor(EP, template="local")
    exctr.register_app("/apps/forces.x", app_name="forces")
    start = time.monotonic()
    with pytest.warns(EndpointPythonWarning) as caught:
        order.append("warned?")
        exctr.submit(app_name="forces", num_procs=1)
        exctr.submit(app_name="forces", num_procs=1)
    seconds = time.monotonic() - start
    FIGURES.append(gh.Figure("endpoint runs another Python", "executor", "EndpointPythonWarning", seconds, 0))
    assert len(caught) == 1, [str(w.message) for w in caught]
    text = str(caught[0].message)
    assert EP in text and _other_minor() in text and platform.python_version() in text
    assert f"use Python {_other_minor().rsplit('.', 1)[0]} on the submit side" in text
    inst.client.get_endpoint_metadata.assert_called_once_with(EP)
    assert order == ["warned?", "submit", "submit"]


def test_python_mismatch_warns_before_gconly_registers_sim_f(fresh_checks, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cls, inst = _cloud(_other_minor())
    seen: list[int] = []
    caught: list[t.Any] = []

    def register(fn: t.Any, function_id: str | None = None, **_: t.Any) -> str:
        seen.append(len(caught))
        raise RuntimeError("stop here: the check is what this test is about")

    inst.register_function.side_effect = register
    monkeypatch.setattr(globus_compute_sdk, "Executor", cls)
    start = time.monotonic()
    with pytest.warns(EndpointPythonWarning) as rec:
        caught = rec.list
        with pytest.raises(RuntimeError, match="stop here"):
            gh.run_gconly(gh.gconly_specs(gh.six_hump, 2, 4, endpoint=EP), 2, user_endpoint_config={}, template="local")
    FIGURES.append(
        gh.Figure("endpoint runs another Python", "gconly", "EndpointPythonWarning", time.monotonic() - start, 0)
    )
    assert seen == [1], "the warning comes before sim_f is registered"
    assert "To fix: use Python" in str(rec.list[0].message)


@pytest.mark.parametrize(
    ("python", "hang"),
    [(platform.python_version(), 0.0), (None, 0.0), ("", 0.0), ("9.9.9", 10.0)],
    ids=["same Python", "metadata refused", "not reported", "service too slow"],
)
def test_python_check_is_never_fatal_nor_a_hang(fresh_checks, monkeypatch, caplog, python, hang):
    cls, inst = _cloud(python, hang)
    monkeypatch.setattr(globus_compute_sdk, "Executor", cls)
    monkeypatch.setattr(python_check, "METADATA_TIMEOUT", 0.5)
    caplog.set_level("DEBUG", logger="bundle.endpoints.python_check")
    start = time.monotonic()
    assert GCSession.get_executor(EP, {}) is inst  # no warning (filterwarnings=error would raise it)
    seconds = time.monotonic() - start
    assert seconds < 5.0, f"the check took {seconds:.1f} s (its limit is 0.5 s)"
    if python != platform.python_version():
        assert "Python version not checked" in caplog.text or "does not report" in caplog.text
    threads = [th for th in threading.enumerate() if th.name == "libe-gc-endpoint-metadata"]
    assert all(th.daemon for th in threads)
