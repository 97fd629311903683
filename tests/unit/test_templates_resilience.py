"""Every template keeps a site endpoint serving after a lost node, as the endpoint's own loader builds it.

What survives a lost block is set by the templates, not by the local endpoint: Parsl's block error
handler off (``block_error_handler: false``, a YAML bool the endpoint's loader passes to the engine),
heartbeats and retries.  Each template is rendered and loaded with
``globus_compute_endpoint.endpoint.config.utils.load_config_yaml`` (``EndpointTemplate.load``; for the
site presets ``load_offline``, which stands in only for the site's network interface, missing here).
"""

from __future__ import annotations

import typing as t

import pytest
import yaml
from parsl.jobs.error_handlers import noop_error_handler, simple_error_handler

from bundle.endpoints.templates import get_template, list_templates

TEMPLATES = list_templates()


def _required(name: str) -> dict[str, t.Any]:
    return {key: "abc123" for key in get_template(name).schema.get("required", [])}


def _loaded(name: str, options: dict[str, t.Any]) -> t.Any:
    config, _ = get_template(name).load_offline({**_required(name), **options})
    return config.engine


@pytest.mark.parametrize("name", TEMPLATES)
@pytest.mark.parametrize("engine_type", ["GlobusMPIEngine", "GlobusComputeEngine"])
def test_defaults_replace_a_failed_block_with_parsl_heartbeats(name, engine_type):
    engine = _loaded(name, {"engine_type": engine_type})
    executor = engine.executor
    # Parsl's default handler would put the executor in a bad state at the first failed block.
    assert executor.block_error_handler is noop_error_handler
    assert (executor.heartbeat_period, executor.heartbeat_threshold) == (30, 120)
    assert engine.max_retries_on_system_failure == 0
    schema = get_template(name).schema["properties"]
    assert schema["block_error_handler"]["default"] is False
    assert (schema["heartbeat_period"]["default"], schema["heartbeat_threshold"]["default"]) == (30, 120)
    engine.shutdown()


@pytest.mark.parametrize("name", TEMPLATES)
def test_options_reach_the_engine(name):
    options = {"heartbeat_period": 3, "heartbeat_threshold": 15, "max_retries_on_system_failure": 2}
    engine = _loaded(name, {**options, "block_error_handler": True})
    assert engine.executor.block_error_handler is simple_error_handler
    assert (engine.executor.heartbeat_period, engine.executor.heartbeat_threshold) == (3, 15)
    assert engine.max_retries_on_system_failure == 2
    engine.shutdown()


@pytest.mark.parametrize("name", TEMPLATES)
@pytest.mark.parametrize(("threshold", "period"), [(10, 2), (4, 1), (2, 1), (60, 15), (600, 30)])
def test_a_threshold_alone_brings_a_period_that_fits(name, threshold, period):
    engine = _loaded(name, {"heartbeat_threshold": threshold})
    assert (engine.executor.heartbeat_period, engine.executor.heartbeat_threshold) == (period, threshold)
    engine.shutdown()


@pytest.mark.parametrize("name", TEMPLATES)
def test_the_rendered_yaml_carries_a_bool_the_loader_takes(name):
    tmpl = get_template(name)
    text = tmpl.render(_required(name))
    engine = yaml.safe_load(text)["engine"]
    assert engine["block_error_handler"] is False
    if name in ("local", "slurm", "pbs"):  # no site network interface to stand in for: the loader as is
        config = get_template(name).load(_required(name))
        assert config.source_content == text  # what load_config_yaml was given
        assert config.engine.executor.block_error_handler is noop_error_handler
        config.engine.shutdown()
