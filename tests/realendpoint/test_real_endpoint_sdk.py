"""The raw Globus Compute SDK against a real endpoint daemon configured from the bundle's ``local`` template.

``globus_compute_sdk.Executor(endpoint_id=UUID, user_endpoint_config=..., client=...)`` submits through the
stand-in service and RabbitMQ to the daemon, which renders the template with the config and forks a user
endpoint whose engine runs the tasks, exactly as at a site.
"""

from __future__ import annotations

import re
import time
import uuid

import globus_sdk
import pytest
from globus_compute_sdk import Client, Executor, MPIFunction, ShellFunction
from globus_compute_sdk.errors import TaskExecutionFailed

from tests.realendpoint import remote
from tests.realendpoint.conftest import ROOT, RealEndpoint

ONE_RANK = {"num_nodes": 1, "ranks_per_node": 1, "num_ranks": 1}
TWO_RANKS = {"num_nodes": 1, "ranks_per_node": 2, "num_ranks": 2}
ON_PATH = {"worker_init": f"export PYTHONPATH={ROOT}"}
"""The tests' own modules are imported on the workers, as a site user's modules must be."""


@pytest.fixture
def client(local_services: dict[str, str]) -> Client:
    """An SDK client of the local services without Globus Auth (``NullAuthorizer``)."""
    return Client(authorizer=globus_sdk.NullAuthorizer())


def _uep_names(endpoint: RealEndpoint) -> set[str]:
    """Names of the user endpoint processes under the daemon (from their process titles)."""
    titles = " ".join(" ".join(p.cmdline()) for p in endpoint.user_endpoints())
    return set(re.findall(rf"uep\.{endpoint.endpoint_id}\.[0-9a-f-]{{36}}", titles))


def test_python_shell_and_mpi_tasks_run_on_a_user_endpoint_from_the_template(
    real_endpoint: RealEndpoint, client: Client
) -> None:
    started = time.monotonic()
    with Executor(
        endpoint_id=real_endpoint.endpoint_id,
        client=client,
        user_endpoint_config=ON_PATH,
        resource_specification=ONE_RANK,
    ) as ex:
        where = ex.submit(remote.where_am_i).result(timeout=300)
        first = time.monotonic() - started
        shell = ex.submit(ShellFunction("echo shell on $GLOBUS_COMPUTE_ENDPOINT_NAME")).result(timeout=120)
        ex.resource_specification = TWO_RANKS
        mpi = ex.submit(MPIFunction("sh -c 'echo rank=$PMI_RANK of $PMI_SIZE'")).result(timeout=120)
    print(f"first result {first:.1f} s after the first submission")
    # The user endpoint the daemon started (its name comes from the service's start command) ran them ...
    assert where["endpoint"].startswith(f"uep.{real_endpoint.endpoint_id}.")
    assert where["endpoint"] in _uep_names(real_endpoint)
    # ... on an engine rendered from the local template: its worker_init wrote the MPI node file.
    assert str(where["nodefile"]).endswith(".nodefile")
    assert shell.returncode == 0 and shell.stdout.strip() == f"shell on {where['endpoint']}"
    assert mpi.returncode == 0
    assert sorted(mpi.stdout.split("\n")[:2]) == ["rank=0 of 2", "rank=1 of 2"], mpi.stdout


def test_another_user_endpoint_config_starts_another_user_endpoint(real_endpoint: RealEndpoint, client: Client) -> None:
    configs = [
        {**ON_PATH, "engine_type": "GlobusComputeEngine"},
        {**ON_PATH, "engine_type": "GlobusComputeEngine", "max_workers_per_node": 2},
    ]
    names = []
    for config in configs:
        with Executor(endpoint_id=real_endpoint.endpoint_id, client=client, user_endpoint_config=config) as ex:
            names.append(ex.submit(remote.where_am_i).result(timeout=300)["endpoint"])
    assert names[0] != names[1]
    # two user endpoint processes under the one daemon, one per config
    assert {names[0], names[1]} <= _uep_names(real_endpoint)
    # the same config again goes to the same user endpoint
    with Executor(endpoint_id=real_endpoint.endpoint_id, client=client, user_endpoint_config=configs[0]) as ex:
        assert ex.submit(remote.where_am_i).result(timeout=120)["endpoint"] == names[0]


def test_a_config_the_templates_schema_refuses_fails_the_task_with_the_endpoints_reason(
    real_endpoint: RealEndpoint, client: Client
) -> None:
    started = time.monotonic()
    with Executor(
        endpoint_id=real_endpoint.endpoint_id, client=client, user_endpoint_config={"no_such_option": 1}
    ) as ex:
        future = ex.submit(remote.where_am_i)
        with pytest.raises(TaskExecutionFailed) as failure:
            future.result(timeout=120)
    waited = time.monotonic() - started
    print(f"refused config: the task failed after {waited:.1f} s with {type(failure.value).__name__}: {failure.value}")
    assert "no_such_option" in str(failure.value)


def test_finished_tasks_are_found_again_through_their_task_group(real_endpoint: RealEndpoint, client: Client) -> None:
    config = {**ON_PATH, "engine_type": "GlobusComputeEngine"}
    # a task group of its own (the SDK's default one is shared by every Executor of this process)
    task_group = uuid.uuid4()
    with Executor(
        endpoint_id=real_endpoint.endpoint_id, client=client, user_endpoint_config=config, task_group_id=task_group
    ) as ex:
        futures = [ex.submit(remote.where_am_i) for _ in range(3)]
        pids = [f.result(timeout=300)["pid"] for f in futures]
        results = {f.task_id: pid for f, pid in zip(futures, pids, strict=True)}
        assert ex.task_group_id == task_group
    # A new submitting process would do this: reattach to the task group and get every result back
    # (task group listing, then batch status), without anything running again.
    with Executor(endpoint_id=real_endpoint.endpoint_id, client=client, task_group_id=task_group) as again:
        reloaded = list(again.reload_tasks())
    assert {f.task_id for f in reloaded} == set(results)
    assert {f.task_id: f.result(timeout=10)["pid"] for f in reloaded} == results
    # and one task's status on its own
    some = next(iter(results))
    assert client.get_result(some)["pid"] == results[some]
