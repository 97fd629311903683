"""GC-only's engine choice on every bundled template, and the refusal that ends a run on an unknown MPI endpoint."""

from __future__ import annotations

import typing as t

import pytest
from globus_compute_sdk.errors import TaskExecutionFailed

from bundle.endpoints.templates import get_template, list_templates
from bundle.gconly import GCOnlyConfigError
from bundle.gconly.engine_choice import ONE_RANK, choose_engine, mpi_spec_refusal

PARSL_REFUSAL = (
    "Traceback (most recent call last):\n  ...\nparsl.executors.errors.InvalidResourceSpecification: Invalid Resource "
    "Specification Supplied: set(). MPI mode requires optional parsl_resource_specification keyword argument to be "
    "configured"
)


def required_only(tmpl: t.Any) -> dict[str, t.Any]:
    """The options a site template cannot do without (e.g. ``account``), from the schema's own examples."""
    props = tmpl.schema["properties"]
    return {k: (props[k].get("examples") or ["proj1"])[0] for k in tmpl.schema.get("required", [])}


@pytest.mark.parametrize("name", list_templates())
def test_default_options_get_a_python_engine_that_the_template_renders(name):
    tmpl = get_template(name)
    assert tmpl.schema["properties"]["engine_type"]["default"] == "GlobusMPIEngine"
    defaults = required_only(tmpl) or None
    choice = choose_engine(tmpl, defaults)
    assert choice.user_endpoint_config == {**(defaults or {}), "engine_type": "GlobusComputeEngine"}
    assert choice.resource_specification is None
    tmpl.validate(choice.user_endpoint_config)
    config, _ = tmpl.load_offline(choice.user_endpoint_config)
    try:
        assert type(config.engine).__name__ == "GlobusComputeEngine"
    finally:
        config.engine.shutdown()


@pytest.mark.parametrize("name", list_templates())
@pytest.mark.parametrize(
    "options", [{"engine_type": "GlobusMPIEngine"}, {"max_workers_per_block": 2}, {"slots_per_node": 2}]
)
def test_a_chosen_mpi_engine_is_kept_and_each_sim_gets_one_rank(name, options):
    choice = choose_engine(get_template(name), options)
    assert choice.user_endpoint_config == options
    assert choice.resource_specification == ONE_RANK
    assert "holds one node or slot" in choice.note


def test_a_python_engine_is_left_alone():
    opts = {"engine_type": "GlobusComputeEngine", "max_workers_per_node": 4}
    assert choose_engine(get_template("local"), opts)[:2] == (opts, None)


def test_unknown_template_sends_what_the_user_gave():
    assert choose_engine(None, None)[:2] == (None, None)
    assert choose_engine(None, {"engine_type": "GlobusMPIEngine"})[:2] == ({"engine_type": "GlobusMPIEngine"}, ONE_RANK)


def test_only_the_missing_spec_refusal_ends_the_run():
    err = mpi_spec_refusal(TaskExecutionFailed(PARSL_REFUSAL), "6f3fa8a6-8a3b-4c64-9a8f-0ad4d3f6f1d1")
    assert isinstance(err, GCOnlyConfigError)
    assert "gc_specs.template" in str(err) and "engine_type" in str(err)
    assert mpi_spec_refusal(TaskExecutionFailed("ValueError: sim 3 failed"), "x") is None
    assert mpi_spec_refusal(RuntimeError("InvalidResourceSpecification: only accepts priority"), "x") is None
