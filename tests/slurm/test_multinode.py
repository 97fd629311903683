"""MPI tasks that span the nodes of a real multi-node Slurm, from ``GlobusComputeExecutor`` on ``local:slurm``.

Every node of the test cluster is this machine, so ``hostname`` is the same everywhere: the node
probe app reports ``$SLURMD_NODENAME`` per rank, and the tests check each rank landed on a node
its launch line names, ``ranks_per_node`` to a node.
"""

from __future__ import annotations

import collections
import pathlib
import typing as t

import numpy as np
import pytest
from libensemble import Ensemble
from libensemble.alloc_funcs.give_sim_work_first import give_sim_work_first
from libensemble.specs import AllocSpecs, ExitCriteria, GenSpecs, SimSpecs

import bundle
from bundle import GlobusComputeExecutor
from bundle.endpoints.session import GCSession
from bundle.errors import ResourceSpecificationError
from tests.ensembles import executor_libe_specs
from tests.gconly.helpers import REPO
from tests.slurm import node_sims
from tests.slurm.conftest import wait_no_jobs
from tests.slurm.multinode import HERE, OPTIONS, START_TIMEOUT, check_placement, cluster_nodes, hosts_of, ranks_of

LAUNCHERS = ["mpiexec", "srun"]

# A block of 3 nodes may queue behind other jobs on a shared cluster.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def node_probe(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    from tests.executor.conftest import build

    return build(HERE / "apps" / "node_probe.c", tmp_path_factory.mktemp("apps") / "node_probe")


@pytest.fixture(scope="module")
def three_nodes(slurm: None) -> list[str]:
    nodes = cluster_nodes()
    assert len(nodes) >= 3, f"the multi-node tests need a partition of 3 nodes (.ci/slurm.sh up), found {nodes}"
    return nodes


def _probe_executor(
    run_dir: pathlib.Path, options: dict[str, t.Any], node_probe: pathlib.Path
) -> t.Iterator[GlobusComputeExecutor]:
    """A ``local:slurm`` executor with ``options`` and the node probe registered; its job is gone afterwards."""
    exctr = GlobusComputeExecutor(
        "local:slurm",
        user_endpoint_config={**OPTIONS, **options},
        local_options={"run_dir": run_dir, "start_timeout": START_TIMEOUT},
    )
    exctr.register_app(str(node_probe), app_name="probe")
    try:
        yield exctr
    finally:
        GCSession.clear()
        assert wait_no_jobs() == [], "the endpoint's shutdown left Slurm jobs"


@pytest.fixture(scope="module", params=LAUNCHERS)
def spanning(
    request: pytest.FixtureRequest, three_nodes: list[str], node_probe: pathlib.Path, tmp_path_factory: t.Any
) -> t.Iterator[GlobusComputeExecutor]:
    """An executor on a 3-node block (two tasks at once), one per launcher; its job is gone afterwards."""
    options = {"mpi_launcher": request.param, "nodes_per_block": 3, "max_workers_per_block": 2}
    yield from _probe_executor(tmp_path_factory.mktemp(f"span-{request.param}"), options, node_probe)


@pytest.mark.parametrize(
    ("words", "nodes", "per_node"),
    [
        ({"num_nodes": 2, "procs_per_node": 2}, 2, 2),
        ({"num_procs": 6, "num_nodes": 3}, 3, 2),
        ({"num_procs": 4, "extra_args": "TWO_NODES"}, 2, 2),
    ],
    ids=["2x2", "6-on-3", "extra_args-N2"],
)
def test_task_spans_nodes(spanning, tmp_path, monkeypatch, words, nodes, per_node):
    monkeypatch.chdir(tmp_path)
    if words.get("extra_args") == "TWO_NODES":  # each launcher's own words: srun -N 2, mpiexec -ppn 2 (4 ranks)
        words = {**words, "extra_args": "-N 2" if spanning.mpi_launcher == "srun" else "-ppn 2"}
    task = spanning.submit(app_name="probe", app_args="span", **words)
    task.wait(timeout=240)
    assert task.state == "FINISHED", (task.error, task.read_stderr())
    assert task.resource_specification == {"num_nodes": nodes, "ranks_per_node": per_node, "num_ranks": nodes * 2}
    stdout = task.read_stdout()
    hosts = check_placement(stdout, task.runline, task.app_line, nodes, per_node)
    launcher = spanning.mpi_launcher
    expected = (
        f"mpiexec -n {nodes * per_node} -ppn {per_node} -hosts {','.join(hosts)}"
        if launcher == "mpiexec"
        else f"srun --ntasks {nodes * per_node} --ntasks-per-node {per_node} --nodelist {','.join(hosts)} "
        f"--nodes {nodes}"
    )
    assert task.runline == f"{expected} {task.app_line}"
    assert "argv=span\n" in stdout


def test_more_nodes_than_a_block_is_refused_at_submit(spanning):
    with pytest.raises(ResourceSpecificationError, match="at most 3 node.*nodes_per_block"):
        spanning.submit(app_name="probe", num_nodes=4, procs_per_node=1)
    with pytest.raises(ResourceSpecificationError, match="at most 3 node.*nodes_per_block"):
        four = "--nodes=4" if spanning.mpi_launcher == "srun" else "-ppn 2"
        spanning.submit(app_name="probe", num_procs=8, extra_args=four)


def test_mixed_one_and_two_node_sims_in_one_ensemble(spanning, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sim_max = 6
    ens = Ensemble(
        executor=spanning,
        libE_specs=executor_libe_specs(3, tmp_path / "ensemble"),
        sim_specs=SimSpecs(
            sim_f=node_sims.span_task,
            inputs=["sim_id", "nodes"],
            outputs=[("state", "U20"), ("runline", "U300"), ("stdout", "U1000"), ("error", "U400")],
            user={"sleep": 1.0, "wait": 120},
        ),
        gen_specs=GenSpecs(
            gen_f=node_sims.sized_nodes,
            outputs=[("x", float, (1,)), ("nodes", int)],
            user={"gen_batch_size": sim_max},
        ),
        alloc_specs=AllocSpecs(alloc_f=give_sim_work_first),
        exit_criteria=ExitCriteria(sim_max=sim_max, wallclock_max=240),
    )
    ens.persis_info = {i: {} for i in range(4)}
    H, _, flag = ens.run()
    assert flag == 0
    done = H[H["sim_ended"]]
    assert len(done) == sim_max, "every sim must end (none may wait forever for nodes another holds)"
    assert sorted(collections.Counter(int(n) for n in done["nodes"]).items()) == [(1, 3), (2, 3)]
    for row in done:
        assert row["state"] == "FINISHED", row["error"]
        runline = str(row["runline"])
        app_line = runline[runline.index(str(spanning.apps["probe"].full_path)) :]
        check_placement(str(row["stdout"]), runline, app_line, int(row["nodes"]), 2)


@pytest.fixture(scope="module", params=LAUNCHERS)
def packed(
    request: pytest.FixtureRequest, three_nodes: list[str], node_probe: pathlib.Path, tmp_path_factory: t.Any
) -> t.Iterator[GlobusComputeExecutor]:
    options = {"mpi_launcher": request.param, "nodes_per_block": 2, "slots_per_node": 2}
    yield from _probe_executor(tmp_path_factory.mktemp(f"packed-{request.param}"), options, node_probe)


def test_slots_pack_one_node_tasks_across_the_nodes_of_a_block(packed, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    nap = 4.0
    tasks = [
        packed.submit(app_name="probe", app_args=f"--sleep {nap}", num_procs=1, stdout=f"t{i}.out") for i in range(4)
    ]
    for task in tasks:
        task.wait(timeout=240)
        assert task.state == "FINISHED", (task.error, task.read_stderr())
    nodes = []
    for task in tasks:
        (host,) = check_placement(task.read_stdout(), task.runline, task.app_line, 1, 1)
        nodes.append(host)
    # Four slots: two on each of the block's two nodes, every task on the node it was given.
    counts = collections.Counter(nodes)
    assert sorted(counts.values()) == [2, 2], counts
    # All four at once: each started before any other ended (never two on one slot: two per node at most).
    # All four ran at once: each wrote its output right after it started and then slept nap seconds.
    starts = sorted(pathlib.Path(tmp_path, f"t{i}.out").stat().st_mtime for i in range(4))
    assert starts[-1] - starts[0] < nap, f"the four tasks did not run at once: outputs written at {starts}"
    with pytest.raises(ResourceSpecificationError, match="slots_per_node to 1"):
        packed.submit(app_name="probe", num_nodes=2, procs_per_node=1)


def test_gconly_sims_run_on_every_node_of_a_three_node_block(three_nodes, tmp_path, monkeypatch):
    from tests.gconly.helpers import run_with, uniform_specs

    monkeypatch.chdir(tmp_path)
    config = {
        **OPTIONS,
        "engine_type": "GlobusComputeEngine",
        "nodes_per_block": 3,
        "max_workers_per_node": 1,
        "worker_init": f"export PYTHONPATH={REPO}${{PYTHONPATH:+:$PYTHONPATH}}",
    }
    nworkers, sim_max = 3, 12
    specs = uniform_specs(node_sims.where, nworkers, sim_max, endpoint="local:slurm")
    specs["sim_specs"]["in"] = ["x", "sim_id"]
    specs["sim_specs"]["out"] = [("f", float), ("node", "U16")]
    specs["sim_specs"]["user"] = {"sleep": 1.0}
    try:
        H, _, flag = run_with(
            bundle.libE,
            specs,
            {"nworkers": nworkers, "workflow_dir_path": str(tmp_path)},
            gc_specs={
                "user_endpoint_config": config,
                "local_options": {"run_dir": tmp_path / "engine", "start_timeout": START_TIMEOUT},
            },
        )
    finally:
        GCSession.clear()
    assert flag == 0
    done = H[H["sim_ended"]]
    assert len(done) == sim_max and np.allclose(done["f"], done["x"][:, 0])
    ran_on = collections.Counter(str(n) for n in done["node"])
    # One worker pool per node of the block: the sims ran on three distinct nodes of the cluster.
    assert len(ran_on) == 3 and set(ran_on) <= set(three_nodes), ran_on
    assert wait_no_jobs() == []


def test_probe_reports_what_the_checks_read():
    # The checks above can fail: a rank on a node the launch line does not name is caught.
    out = "size=2\nrank=0 node=n1\nrank=1 node=n3\nprefix=mpiexec -n 2 -ppn 1 -hosts n1,n2 \nargv=\n"
    assert ranks_of(out) == [(0, "n1"), (1, "n3")] and hosts_of("mpiexec -n 2 -ppn 1 -hosts n1,n2 app") == ["n1", "n2"]
    with pytest.raises(AssertionError, match="ranks landed on"):
        check_placement(out, "mpiexec -n 2 -ppn 1 -hosts n1,n2 app", "app", 2, 1)
    # ... and so is a launch line that is not the one the ranks were started with.
    good = out.replace("n3", "n2")
    assert check_placement(good, "mpiexec -n 2 -ppn 1 -hosts n1,n2 app", "app", 2, 1) == ["n1", "n2"]
    with pytest.raises(AssertionError):
        check_placement(good, "mpiexec -n 2 -ppn 1 -hosts n1,n2 -v app", "app", 2, 1)
