"""The real endpoint daemon configured from the bundle's ``slurm`` template, its blocks run by the 3-node Slurm.

A first end-to-end case: one 2-node MPI task (2 ranks on each node) through the raw SDK.  The Slurm cluster is
the one ``tests/slurm`` uses (``.ci/slurm.sh``); every job of this session is gone afterwards.
"""

from __future__ import annotations

import collections
import time
import typing as t

import globus_sdk
import pytest
from globus_compute_sdk import Client, Executor, MPIFunction

from tests.realendpoint.conftest import GCService, RealEndpoint, endpoint_from_template
from tests.slurm.conftest import slurm, wait_no_jobs

__all__ = ["slurm"]  # the Slurm cluster fixture, shared with tests/slurm

SITE_DEFAULTS = ["partition=debug", "walltime=00:10:00", "network_interface=lo"]
"""What the site's administrator sets with ``--option`` (users may override)."""


@pytest.fixture(scope="module")
def slurm_endpoint(
    slurm: None, gc_service: GCService, tmp_path_factory: pytest.TempPathFactory
) -> t.Iterator[RealEndpoint]:
    home = tmp_path_factory.mktemp("slurm-site")
    with endpoint_from_template(gc_service, home, "libe-gc-slurm", "slurm", SITE_DEFAULTS) as endpoint:
        yield endpoint
    assert wait_no_jobs() == [], "Slurm jobs of the endpoint's blocks were left"


def test_a_two_node_mpi_task_runs_in_a_slurm_job_of_the_user_endpoint(
    slurm_endpoint: RealEndpoint, local_services: dict[str, str]
) -> None:
    client = Client(authorizer=globus_sdk.NullAuthorizer())
    started = time.monotonic()
    config = {"nodes_per_block": 2, "mpi_launcher": "srun", "exclusive": True}
    spec = {"num_nodes": 2, "ranks_per_node": 2, "num_ranks": 4}
    with Executor(
        endpoint_id=slurm_endpoint.endpoint_id, client=client, user_endpoint_config=config, resource_specification=spec
    ) as ex:
        res = ex.submit(MPIFunction("sh -c 'echo node=$SLURMD_NODENAME'")).result(timeout=600)
    print(
        f"2-node MPI task: result {time.monotonic() - started:.1f} s after submission, "
        f"{time.monotonic() - slurm_endpoint.started_at:.1f} s after globus-compute-endpoint start"
    )
    assert res.returncode == 0, res.stderr
    nodes = collections.Counter(line for line in res.stdout.splitlines() if line.startswith("node="))
    assert sorted(nodes.values()) == [2, 2] and len(nodes) == 2, res.stdout
