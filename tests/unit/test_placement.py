"""Multi-node requests a block cannot place are refused at submit, naming the option to change."""

from __future__ import annotations

import typing as t

import pytest

from bundle import GlobusComputeExecutor
from bundle.endpoints.session import GCSession
from bundle.endpoints.templates import get_template
from bundle.errors import ResourceSpecificationError
from bundle.executor.placement import BlockShape, block_shape

EP = "2f0a3c8e-31b1-4d7a-9a34-8d0c5e8b6a11"


def _executor(template: str, **options: t.Any) -> GlobusComputeExecutor:
    exctr = GlobusComputeExecutor(EP, template=template, user_endpoint_config=options)
    exctr.register_app("/apps/forces.x", app_name="forces")
    return exctr


@pytest.mark.parametrize("template", ["slurm", "pbs", "perlmutter", "frontier", "polaris", "aurora"])
def test_block_shape_reads_the_templates_defaults(template):
    assert block_shape(get_template(template), {}) == BlockShape(1, 1, 1, True)
    shape = block_shape(get_template(template), {"nodes_per_block": 3, "slots_per_node": 2})
    assert shape == BlockShape(3, 2, 6, True) and shape.entries == 6


def test_local_template_outside_an_allocation_is_one_node(monkeypatch):
    for var in ("PBS_NODEFILE", "SLURM_JOB_NODELIST", "SLURM_NODELIST"):
        monkeypatch.delenv(var, raising=False)
    assert block_shape(get_template("local"), {"max_workers_per_block": 4}) == BlockShape(1, 4, 4, False)
    # slots_per_node alone: this host listed k times, k tasks at once
    assert block_shape(get_template("local"), {"slots_per_node": 3}) == BlockShape(1, 3, 3, False)


def test_local_template_inside_an_allocation_uses_its_nodes(monkeypatch, tmp_path):
    nodefile = tmp_path / "nodes"
    nodefile.write_text("a\na\nb\nc\n")
    monkeypatch.setenv("PBS_NODEFILE", str(nodefile))
    assert block_shape(get_template("local"), {"max_workers_per_block": 2}) == BlockShape(3, 1, 2, False)
    assert block_shape(get_template("local"), {"slots_per_node": 2}) == BlockShape(3, 2, 2, False)
    exctr = GlobusComputeExecutor("local", user_endpoint_config={"max_workers_per_block": 2})
    exctr.register_app("/apps/forces.x", app_name="forces")
    task = exctr.submit(app_name="forces", num_nodes=3, procs_per_node=1, dry_run=True)
    assert task.runline == "mpiexec -n 3 -ppn 1 -hosts a,b,c /apps/forces.x"
    with pytest.raises(ResourceSpecificationError, match="at most 3 node"):
        exctr.submit(app_name="forces", num_nodes=4, dry_run=True)
    assert GCSession.cached() == 0


@pytest.mark.parametrize(
    ("options", "words", "message"),
    [
        ({"nodes_per_block": 2}, {"num_nodes": 3}, "at most 2 node.*raise the template's nodes_per_block"),
        ({"nodes_per_block": 2}, {"num_procs": 6, "extra_args": "-N 3"}, "at most 2 node"),
        ({"nodes_per_block": 2, "slots_per_node": 2}, {"num_nodes": 2}, "set slots_per_node to 1"),
        # three 2-node tasks on 3 nodes: one waits, and Parsl's scheduler can loop on it
        ({"nodes_per_block": 3}, {"num_nodes": 2}, "max_workers_per_block to at most 2"),
        ({"nodes_per_block": 4, "max_workers_per_block": 4}, {"num_nodes": 2}, "max_workers_per_block to at most 2"),
        ({"nodes_per_block": 8, "max_workers_per_block": 5}, {"num_nodes": 2}, "max_workers_per_block to at most 4"),
        ({"nodes_per_block": 1, "max_workers_per_block": 3}, {"num_nodes": 1}, "max_workers_per_block to at most 2"),
    ],
)
def test_requests_a_block_cannot_place_are_refused(options, words, message):
    with pytest.raises(ResourceSpecificationError, match=message):
        _executor("slurm", **options).submit(app_name="forces", dry_run=True, **words)
    assert GCSession.cached() == 0


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"nodes_per_block": 2}, {"num_nodes": 2}),
        ({"nodes_per_block": 3, "max_workers_per_block": 2}, {"num_nodes": 2}),
        ({"nodes_per_block": 3, "max_workers_per_block": 2}, {"num_nodes": 3}),
        ({"nodes_per_block": 3}, {"num_nodes": 1}),
        ({"nodes_per_block": 4}, {"num_nodes": 1}),
        ({"nodes_per_block": 8, "max_workers_per_block": 4}, {"num_nodes": 2}),
        ({"nodes_per_block": 3, "slots_per_node": 2}, {"num_nodes": 1}),
    ],
)
def test_requests_a_block_can_place_are_accepted(options, words):
    task = _executor("slurm", **options).submit(app_name="forces", dry_run=True, **words)
    assert task.resource_specification["num_nodes"] == words["num_nodes"]
