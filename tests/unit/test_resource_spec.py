import pytest

from bundle.errors import ResourceSpecificationError
from bundle.wire.resource_spec import normalize_mpi_spec


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, (1, 1, 1)),
        (None, (1, 1, 1)),
        ({"num_ranks": 4}, (1, 4, 4)),
        ({"num_nodes": 2}, (2, 1, 2)),
        ({"num_nodes": 2, "num_ranks": 8}, (2, 4, 8)),
        ({"num_ranks": 6, "ranks_per_node": 3}, (2, 3, 6)),
        ({"num_nodes": 1, "num_ranks": 1}, (1, 1, 1)),
        ({"num_nodes": 3, "ranks_per_node": 2}, (3, 2, 6)),
        ({"num_nodes": 2.0, "ranks_per_node": 2, "num_ranks": 4}, (2, 2, 4)),
    ],
)
def test_normalized_counts_are_integers_that_agree(given, expected):
    spec = normalize_mpi_spec(given)
    got = (spec["num_nodes"], spec["ranks_per_node"], spec["num_ranks"])
    assert got == expected
    assert all(type(v) is int for v in got)
    assert spec["num_ranks"] == spec["num_nodes"] * spec["ranks_per_node"]


def test_launcher_options_kept():
    assert normalize_mpi_spec({"num_ranks": 2, "launcher_options": "--bind-to core"})["launcher_options"] == (
        "--bind-to core"
    )


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"num_nodes": 2, "num_ranks": 3}, "divide evenly"),
        ({"num_ranks": 5, "ranks_per_node": 2}, "multiple of ranks_per_node"),
        ({"num_nodes": 2, "ranks_per_node": 2, "num_ranks": 6}, "disagrees"),
        ({"num_nodes": 1.5}, "positive integer"),
        ({"num_nodes": 0}, "positive integer"),
        ({"num_ranks": "4"}, "positive integer"),
        ({"num_ranks": True}, "positive integer"),
        ({"num_procs": 4}, "unknown resource_specification keys"),
        ({"launcher_options": 3}, "must be a string"),
    ],
)
def test_impossible_or_ambiguous_specs_are_refused(given, words):
    with pytest.raises(ResourceSpecificationError, match=words):
        normalize_mpi_spec(given)
