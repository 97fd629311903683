"""The real endpoint daemon configured from the bundle's ``slurm`` template, its blocks run by the 3-node Slurm.

Executor mode as a site user writes it (``GlobusComputeExecutor(endpoint=<UUID>, template="slurm")``), and one
2-node MPI task through the raw SDK.  Every case here sends the same ``user_endpoint_config``, so they share one
user endpoint and its one block of two nodes (started by the first case that runs).  The Slurm cluster is the one
``tests/slurm`` uses (``.ci/slurm.sh``); every job of this session is gone afterwards (``slurm_endpoint``).
"""

from __future__ import annotations

import collections
import pathlib
import time
import typing as t
import uuid

import globus_sdk
import pytest
from globus_compute_sdk import Client, Executor, MPIFunction
from libensemble import Ensemble
from libensemble.alloc_funcs.give_sim_work_first import give_sim_work_first
from libensemble.specs import AllocSpecs, ExitCriteria, GenSpecs, SimSpecs

from bundle import GlobusComputeExecutor
from bundle.endpoints.session import GCSession
from bundle.errors import TemplateOptionError, UserEndpointStartError
from tests.ensembles import executor_libe_specs
from tests.polling import wait_for
from tests.realendpoint.conftest import RealEndpoint
from tests.slurm import node_sims
from tests.slurm.multinode import HERE, check_placement

MPI_CONFIG = {"nodes_per_block": 2, "mpi_launcher": "srun", "exclusive": True}
"""The one ``user_endpoint_config`` of this module: a block of two whole nodes, ranks started by ``srun``."""

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def node_probe(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The node probe app of ``tests/slurm`` (prints each rank's Slurm node and the launch line)."""
    from tests.executor.conftest import build

    return build(HERE / "apps" / "node_probe.c", tmp_path_factory.mktemp("apps") / "node_probe")


@pytest.fixture
def clean_session(local_services: dict[str, str]) -> t.Iterator[None]:
    """The bundle's cached SDK executors are shut down after each test."""
    yield
    GCSession.clear(wait=True)


def test_a_two_node_mpi_task_runs_in_a_slurm_job_of_the_user_endpoint(
    slurm_endpoint: RealEndpoint, local_services: dict[str, str]
) -> None:
    client = Client(authorizer=globus_sdk.NullAuthorizer())
    started = time.monotonic()
    spec = {"num_nodes": 2, "ranks_per_node": 2, "num_ranks": 4}
    with Executor(
        endpoint_id=slurm_endpoint.endpoint_id,
        client=client,
        user_endpoint_config=MPI_CONFIG,
        resource_specification=spec,
    ) as ex:
        res = ex.submit(MPIFunction("sh -c 'echo node=$SLURMD_NODENAME'")).result(timeout=600)
    print(
        f"2-node MPI task: result {time.monotonic() - started:.1f} s after submission, "
        f"{time.monotonic() - slurm_endpoint.started_at:.1f} s after globus-compute-endpoint start"
    )
    assert res.returncode == 0, res.stderr
    nodes = collections.Counter(line for line in res.stdout.splitlines() if line.startswith("node="))
    assert sorted(nodes.values()) == [2, 2] and len(nodes) == 2, res.stdout


def test_executor_mode_one_and_two_node_sims_place_their_ranks_per_node(
    slurm_endpoint: RealEndpoint,
    clean_session: None,
    node_probe: pathlib.Path,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    exctr = GlobusComputeExecutor(
        endpoint=slurm_endpoint.endpoint_id, template="slurm", user_endpoint_config=dict(MPI_CONFIG)
    )
    exctr.register_app(str(node_probe), app_name="probe")
    sim_max = 4
    ens = Ensemble(
        executor=exctr,
        libE_specs=executor_libe_specs(2, tmp_path / "ensemble"),
        sim_specs=SimSpecs(
            sim_f=node_sims.span_task,
            inputs=["sim_id", "nodes"],
            outputs=[("state", "U20"), ("runline", "U300"), ("stdout", "U1000"), ("error", "U400")],
            user={"sleep": 0.5, "wait": 300},
        ),
        gen_specs=GenSpecs(
            gen_f=node_sims.sized_nodes,
            outputs=[("x", float, (1,)), ("nodes", int)],
            user={"gen_batch_size": sim_max},
        ),
        alloc_specs=AllocSpecs(alloc_f=give_sim_work_first),
        exit_criteria=ExitCriteria(sim_max=sim_max, wallclock_max=400),
    )
    ens.persis_info = {i: {} for i in range(3)}
    started = time.monotonic()
    H, _, flag = ens.run()
    print(f"executor mode, {sim_max} sims of 1 and 2 nodes: {time.monotonic() - started:.1f} s")
    assert flag == 0
    done = H[H["sim_ended"]]
    assert len(done) == sim_max
    assert sorted(collections.Counter(int(n) for n in done["nodes"]).items()) == [(1, 2), (2, 2)]
    probe = str(exctr.apps["probe"].full_path)
    for row in done:
        assert row["state"] == "FINISHED", row["error"]
        runline = str(row["runline"])
        # The launch line the endpoint composed for the nodes it gave the task (srun), two ranks on each node.
        assert runline.startswith("srun ") and "<node" not in runline, runline
        check_placement(str(row["stdout"]), runline, runline[runline.index(probe) :], int(row["nodes"]), 2)
    # Through the SDK Executor of the endpoint UUID, not a local endpoint.
    cached = list(GCSession._executors.values())
    assert cached and all(isinstance(e, Executor) for e in cached)
    assert {str(e.endpoint_id) for e in cached} == {slurm_endpoint.endpoint_id}


def test_a_task_killed_before_the_sdk_sends_it_never_reaches_the_endpoint(
    slurm_endpoint: RealEndpoint,
    clean_session: None,
    node_probe: pathlib.Path,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    group = uuid.uuid4()
    # The SDK's own rate limit keeps tasks in its send queue: after two sends within 8 s it waits about 4 s
    # before the next one (the defaults, 4 sends per 16 s, do the same after four).
    exctr = GlobusComputeExecutor(
        endpoint=slurm_endpoint.endpoint_id,
        template="slurm",
        user_endpoint_config=dict(MPI_CONFIG),
        sdk_options={"task_group_id": str(group), "api_burst_limit": 2, "api_burst_window_s": 8},
    )
    exctr.register_app(str(node_probe), app_name="probe")
    sent = []
    for i in range(3):
        sent.append(exctr.submit(app_name="probe", app_args=f"t{i}", num_procs=1, stdout=f"t{i}.out"))
        if i < 2:  # one send each; the third waits out the rate limit in the SDK's submitter
            assert wait_for(lambda: sent[-1].gc_task_id is not None, 60), "the SDK did not send the task"
    time.sleep(0.5)
    held = exctr.submit(app_name="probe", app_args="held", num_procs=1, stdout="held.out")
    assert held.gc_task_id is None and held.state == "WAITING"
    held.kill()
    assert (held.state, held.finished, held.success) == ("USER_KILLED", True, False)
    assert held.future is not None and held.future.cancelled()
    for task in sent:
        task.wait(timeout=300)
        assert task.state == "FINISHED", (task.error, task.read_stderr())
    # The service never saw it: the task group holds the three others, and the app never ran.
    listed = {task["id"] for task in slurm_endpoint.service.get(f"/v2/taskgroup/{group}")["tasks"]}
    assert listed == {task.gc_task_id for task in sent}
    assert not (tmp_path / "held.out").exists()
    held.wait(timeout=1)
    assert held.state == "USER_KILLED"


REFUSED = {**MPI_CONFIG, "node_per_block": 2}
"""A misspelt option (``nodes_per_block``): the template's schema allows no other keys."""


def test_a_config_the_templates_schema_refuses_is_a_clear_error_within_seconds(
    slurm_endpoint: RealEndpoint, clean_session: None, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # With the template named, the bundle refuses it before anything is sent.
    started = time.monotonic()
    with pytest.raises(TemplateOptionError, match="node_per_block") as early:
        GlobusComputeExecutor(endpoint=slurm_endpoint.endpoint_id, template="slurm", user_endpoint_config=REFUSED)
    named = time.monotonic() - started
    # Without it, the endpoint refuses to start a user endpoint: the task fails with the endpoint's reason, and
    # later tasks of that configuration are not sent (they would wait for a user endpoint that never starts).
    group = uuid.uuid4()
    exctr = GlobusComputeExecutor(
        endpoint=slurm_endpoint.endpoint_id, user_endpoint_config=REFUSED, sdk_options={"task_group_id": str(group)}
    )
    exctr.register_app("/bin/hostname", app_name="hostname", mpi=False)
    started = time.monotonic()
    task = exctr.submit(app_name="hostname")
    task.wait(timeout=120)
    refused = time.monotonic() - started
    print(f"refused config: template named {named * 1000:.0f} ms ({early.value}); by the endpoint {refused:.1f} s")
    print(f"  {type(task.error).__name__}: {task.error}")
    assert task.state == "FAILED" and isinstance(task.error, UserEndpointStartError)
    assert "(ValidationError) Additional properties are not allowed ('node_per_block' was unexpected)" in str(
        task.error
    )
    assert "template=" in str(task.error), "the message says how to have options checked before sending"
    with pytest.raises(UserEndpointStartError):
        exctr.submit(app_name="hostname")
    assert len(slurm_endpoint.service.get(f"/v2/taskgroup/{group}")["tasks"]) == 1
    assert named < 1 and refused < 30
