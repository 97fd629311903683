"""One contract, two implementations: the local endpoint and the real endpoint interchange.

Each case sends one task with one ``resource_specification`` to both sides, rendered from the
same template with the same options.  The real side is a user endpoint process as a template-capable
endpoint starts one (``EndpointInterchange`` and its engine), fed ``Task`` messages over RabbitMQ
with the headers the service sends, its ``Result`` messages read back as the SDK reads them
(:mod:`tests.contract.real_interchange`).  The outcomes must agree: the same value (so the local
endpoint changed nothing on the way), or the same failure (``TaskExecutionFailed`` with the same
remote error line).  Where a real endpoint accepts a task and never answers, the local endpoint
refuses it at submit (``ResourceSpecificationError``) and the interchange is shown not to answer;
those cases run last, since they leave the interchange's worker pool stuck.
"""

from __future__ import annotations

import os
import re
import time
import typing as t

import pytest
from globus_compute_sdk.errors import TaskExecutionFailed

from bundle.endpoints.local import LocalEndpoint
from bundle.errors import ResourceSpecificationError
from tests.broker import Broker
from tests.contract.real_interchange import InterchangeOverRabbit

MPI = {"engine_type": "GlobusMPIEngine", "max_workers_per_block": 2}
PY = {"engine_type": "GlobusComputeEngine", "max_workers_per_node": 2}
ONE_RANK = {"num_nodes": 1, "ranks_per_node": 1, "num_ranks": 1}
NO_ANSWER_S = 6.0
STRING_SET = re.compile(r"\{('[^'{}]*'(?:, '[^'{}]*')*)\}")


def mpi_env() -> tuple[str | None, str | None]:
    """What the engine told the task about its MPI resources."""
    return os.environ.get("PARSL_MPI_PREFIX"), os.environ.get("PARSL_NUM_RANKS")


def fails(x: int) -> int:
    raise ValueError(f"sim {x} failed")


def sorted_sets(line: str) -> str:
    """``line`` with each set of strings in it sorted: their order differs between processes (string hashing)."""
    return STRING_SET.sub(lambda m: "{" + ", ".join(sorted(m.group(1).split(", "))) + "}", line)


def outcome(side: t.Any, spec: dict[str, t.Any] | None, fn: t.Callable[..., t.Any], *args: t.Any) -> tuple[t.Any, ...]:
    """Submit ``fn(*args)`` with ``spec``; describe what came back in a form both sides can share."""
    side.resource_specification = spec
    try:
        fut = side.submit(fn, *args)
    except ResourceSpecificationError as err:
        return ("refused at submit", type(err).__name__)
    finally:
        side.resource_specification = None
    try:
        return ("ok", fut.result(timeout=120))
    except TaskExecutionFailed as err:
        lines = [ln for ln in err.remote_data.strip().splitlines() if ln.strip() and not set(ln.strip()) <= set("-+")]
        assert err.completion_t and float(err.completion_t) <= time.time() + 1
        return ("TaskExecutionFailed", sorted_sets(lines[-1].strip()))


@pytest.fixture(scope="module")
def sides(rabbitmq: Broker, tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[dict[str, tuple[t.Any, t.Any]]]:
    """Per engine: a local endpoint and a real one (a user endpoint starts with its first task), from ``local``."""
    run = tmp_path_factory.mktemp("contract")
    local_mpi = LocalEndpoint(user_endpoint_config=MPI, run_dir=run / "local-mpi", start_timeout=240)
    local_py = LocalEndpoint(user_endpoint_config=PY, run_dir=run / "local-py", start_timeout=240)
    real_mpi = InterchangeOverRabbit(rabbitmq.url, "local", run / "real-mpi", MPI)
    real_py = InterchangeOverRabbit(rabbitmq.url, "local", run / "real-py", PY)
    ueps = []
    left: dict[str, list[str]] = {}
    try:
        yield {"mpi": (local_mpi, real_mpi), "py": (local_py, real_py)}
    finally:
        for local in (local_mpi, local_py):
            local.shutdown(wait=False, cancel_futures=True)
        for real in (real_mpi, real_py):
            ueps += real.user_endpoints.values()
            left.update(real.shutdown())
    # SIGTERM stops each interchange as its parent stops it: engine shut down, process exited 0, nothing left
    assert len(ueps) == 2 and [uep.proc.returncode for uep in ueps] == [0, 0], [uep.log for uep in ueps]
    assert not any(left.values()), f"processes of the user endpoints left after SIGTERM: {left}"
    assert all(uep.task_queue_consumers == 0 for uep in ueps), "a task queue still had a consumer"


CASES = [
    # (engine, spec, function, args, what a real endpoint does)
    ("mpi", None, mpi_env, (), "TaskExecutionFailed"),  # Parsl's MPI mode: "MPI mode requires ..."
    ("mpi", {}, mpi_env, (), "TaskExecutionFailed"),
    ("mpi", ONE_RANK, mpi_env, (), "ok"),
    ("mpi", {"num_nodes": 1, "num_ranks": 1}, mpi_env, (), "ok"),  # "-ppn 1.0": passed on, not repaired
    ("mpi", {"num_nodes": 1, "bogus": 2}, mpi_env, (), "TaskExecutionFailed"),
    ("mpi", ONE_RANK, fails, (3,), "TaskExecutionFailed"),
    ("py", None, mpi_env, (), "ok"),
    ("py", {"priority": 1}, mpi_env, (), "ok"),
    ("py", ONE_RANK, mpi_env, (), "TaskExecutionFailed"),  # HTEX takes no MPI keys
    ("py", None, fails, (4,), "TaskExecutionFailed"),
]


@pytest.mark.parametrize(
    ("engine", "spec", "fn", "args", "expected"),
    CASES,
    ids=[f"{c[0]}-{c[1]}-{c[2].__name__}" for c in CASES],
)
def test_local_and_interchange_agree(sides, engine, spec, fn, args, expected):
    local, real = sides[engine]
    theirs = outcome(real, spec, fn, *args)
    ours = outcome(local, spec, fn, *args)
    assert theirs[0] == expected, theirs
    assert ours == theirs


def test_task_id_arrives_after_submit_and_before_the_result(sides):
    local, _ = sides["py"]
    futs, early = [], []
    for _ in range(50):
        futs.append(local.submit(mpi_env))
        early.append(futs[-1].task_id)  # read at once, as code right after submit would
    results = [f.result(timeout=60) for f in futs]
    assert results == [(None, None)] * 50
    assert all(f.task_id for f in futs), "every id is known once the result is"
    assert len({f.task_id for f in futs}) == 50
    # as with the SDK the id is set by another thread; right after submit most are still unknown
    assert early.count(None) > 0, early


@pytest.mark.parametrize(
    "spec",
    [{"num_ranks": 2}, {"num_nodes": 3, "ranks_per_node": 1, "num_ranks": 3}],
    ids=["no num_nodes (Parsl issue 3427)", "more nodes than the pool has"],
)
def test_specs_a_real_endpoint_never_answers_are_refused_early(sides, spec):
    """Defined last: these leave the interchange's worker pool waiting for ever."""
    local, real = sides["mpi"]
    assert outcome(local, spec, mpi_env) == ("refused at submit", "ResourceSpecificationError")
    real.resource_specification = spec
    try:
        fut = real.submit(mpi_env)
    finally:
        real.resource_specification = None
    time.sleep(NO_ANSWER_S)
    assert not fut.done(), f"the interchange answered {spec}: the local endpoint should pass it on, not refuse it"
    # the local endpoint is unharmed: a good task still runs
    assert outcome(local, ONE_RANK, mpi_env)[0] == "ok"
