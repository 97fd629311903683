"""Each MPI launcher's resource options, read with that launcher's meaning and checked against Parsl's composer."""

from __future__ import annotations

import shlex

import pytest
from parsl.executors.high_throughput.mpi_prefix_composer import VALID_LAUNCHERS, compose_all

from bundle.errors import ResourceSpecificationError
from bundle.executor.launch import LAUNCHER_FLAGS, launch_prefix, mpi_spec

SPEC = {"num_nodes": 2, "ranks_per_node": 3, "num_ranks": 6}
HOSTS = ["hostA", "hostB"]


def _parsl_words(launcher: str) -> list[str]:
    """Parsl's own prefix for SPEC, without the launcher's name and its host-list option."""
    tokens = shlex.split(compose_all(launcher, dict(SPEC), HOSTS)["PARSL_MPI_PREFIX"])
    assert tokens[0] == launcher
    at = tokens.index(",".join(HOSTS))
    return tokens[1 : at - 1] + tokens[at + 1 :]


def test_every_parsl_launcher_has_a_table():
    assert set(LAUNCHER_FLAGS) == set(VALID_LAUNCHERS)


@pytest.mark.parametrize("launcher", sorted(VALID_LAUNCHERS))
def test_parsl_composer_words_read_back_to_the_same_spec(launcher):
    words = _parsl_words(launcher)
    flags = LAUNCHER_FLAGS[launcher]
    named = {w for w in words if w.startswith("-")}
    assert named <= flags.names(), f"{launcher}: Parsl writes {named - flags.names()} which the table does not read"
    assert mpi_spec(extra_args=" ".join(words), mpi_launcher=launcher) == SPEC
    assert launch_prefix(launcher, SPEC, HOSTS) == " ".join(
        compose_all(launcher, dict(SPEC), HOSTS)["PARSL_MPI_PREFIX"].split()
    )


@pytest.mark.parametrize("launcher", sorted(VALID_LAUNCHERS))
def test_table_words_mean_what_parsl_means(launcher):
    flags = LAUNCHER_FLAGS[launcher]
    for name in flags.ranks:
        assert mpi_spec(num_nodes=2, extra_args=f"{name} 6", mpi_launcher=launcher) == SPEC
    for name in flags.ranks_per_node:
        assert mpi_spec(num_procs=6, extra_args=f"{name}=3", mpi_launcher=launcher) == SPEC
    for name in flags.nodes:
        assert mpi_spec(num_procs=6, extra_args=f"{name} 2", mpi_launcher=launcher) == SPEC


def test_aprun_dash_n_capital_is_ranks_per_node_not_nodes():
    spec = mpi_spec(num_procs=8, extra_args="-N 4", mpi_launcher="aprun")
    assert spec == {"num_nodes": 2, "ranks_per_node": 4, "num_ranks": 8}
    assert launch_prefix("aprun", spec) == "aprun -n 8 -N 4 -node-list <node1>,<node2>"
    assert mpi_spec(num_procs=8, extra_args="-N 4", mpi_launcher="srun") == {
        "num_nodes": 4,
        "ranks_per_node": 2,
        "num_ranks": 8,
    }


@pytest.mark.parametrize(
    ("launcher", "extra_args"),
    [("mpiexec", "-N 2"), ("mpiexec", "--ntasks=4"), ("srun", "-ppn 2"), ("aprun", "--nodes 2")],
)
def test_another_launchers_resource_option_is_refused_naming_it(launcher, extra_args):
    name = extra_args.split()[0].partition("=")[0]
    with pytest.raises(ResourceSpecificationError, match=f"{name} is not a resource option of {launcher}"):
        mpi_spec(num_procs=4, extra_args=extra_args, mpi_launcher=launcher)


def test_unknown_launcher_is_refused():
    with pytest.raises(ResourceSpecificationError, match="unknown mpi_launcher 'jsrun'"):
        mpi_spec(num_procs=2, mpi_launcher="jsrun")
