"""SDK Executor options reach globus_compute_sdk.Executor for endpoint UUIDs, checked against the installed SDK."""

from __future__ import annotations

import inspect
import typing as t
from unittest import mock

import globus_compute_sdk
import pytest
import yaml
from globus_compute_endpoint.endpoint.config.utils import load_config_yaml

from bundle import GlobusComputeExecutor
from bundle.endpoints.sdk_options import check_sdk_options, known_sdk_options
from bundle.endpoints.session import GCSession
from bundle.endpoints.templates import get_template, list_templates
from bundle.gconly import GCOnlyConfigError, GCOnlySpecs

EP = "6f3fa8a6-8a3b-4c64-9a8f-0ad4d3f6f1d1"


@pytest.fixture
def sdk(monkeypatch: pytest.MonkeyPatch) -> t.Iterator[mock.Mock]:
    instance = mock.create_autospec(globus_compute_sdk.Executor, instance=True)
    instance.resource_specification = None
    cls = mock.create_autospec(globus_compute_sdk.Executor, return_value=instance)
    monkeypatch.setattr(globus_compute_sdk, "Executor", cls)
    monkeypatch.setattr("bundle.endpoints.python_check.warn_on_python_mismatch", lambda *a, **k: None)
    yield cls


def test_known_options_are_the_installed_sdks():
    params = inspect.signature(globus_compute_sdk.Executor.__init__).parameters
    assert set(known_sdk_options()) <= set(params)
    for name in ("amqp_port", "client", "batch_size", "api_burst_limit", "api_burst_window_s", "result_serializers"):
        assert name in known_sdk_options()
    assert "endpoint_id" not in known_sdk_options()


def test_unknown_and_bundle_set_options_are_refused_with_the_known_list():
    with pytest.raises(TypeError, match=r"unknown Globus Compute Executor option\(s\) \['amqp_prot'\].*'amqp_port'"):
        check_sdk_options({"amqp_prot": 443}, local=False)
    with pytest.raises(TypeError, match="set by the bundle"):
        check_sdk_options({"user_endpoint_config": {}}, local=False)
    with pytest.raises(TypeError, match="local endpoint takes none"):
        check_sdk_options({"amqp_port": 443}, local=True)
    # a non-mapping is named as such (dict() of a list would fail with an unrelated message, or pass pairs)
    for wrong in (["amqp_port"], [("amqp_port", 443)], "amqp_port=443"):
        with pytest.raises(TypeError, match="sdk_options must be a dict of SDK Executor options, not"):
            check_sdk_options(wrong, local=False)  # type: ignore[arg-type]


def test_session_passes_options_and_keys_on_them(sdk):
    client = mock.create_autospec(globus_compute_sdk.Client, instance=True)
    opts = {"amqp_port": 443, "client": client, "batch_size": 16, "api_burst_limit": 2}
    a = GCSession.get_executor(EP, {"account": "x"}, sdk_options=opts)
    sdk.assert_called_once_with(endpoint_id=EP, user_endpoint_config={"account": "x"}, **opts)
    assert GCSession.get_executor(EP, {"account": "x"}, sdk_options=dict(opts)) is a
    GCSession.get_executor(EP, {"account": "x"}, sdk_options={"amqp_port": 5671})
    assert sdk.call_count == 2


def test_executor_passes_options(sdk):
    exctr = GlobusComputeExecutor(EP, sdk_options={"amqp_port": 443, "label": "mine"})
    exctr.gc_executor()
    sdk.assert_called_once_with(endpoint_id=EP, user_endpoint_config={}, amqp_port=443, label="mine")
    with pytest.raises(TypeError, match="known"):
        GlobusComputeExecutor(EP, sdk_options={"amqp": 443})
    with pytest.raises(TypeError, match="local endpoint"):
        GlobusComputeExecutor("local", sdk_options={"amqp_port": 443})


def test_gconly_specs_check_options():
    assert GCOnlySpecs(sdk_options={"amqp_port": 443}).sdk_options == {"amqp_port": 443}
    with pytest.raises(GCOnlyConfigError, match="amqp_prot"):
        GCOnlySpecs(sdk_options={"amqp_prot": 443})
    with pytest.raises(GCOnlyConfigError, match="must be a dict"):
        GCOnlySpecs(sdk_options=["amqp_port"])  # type: ignore[arg-type]


@pytest.mark.parametrize("name", list_templates())
def test_bundled_config_yaml_uses_amqp_port_443(name):
    text = get_template(name).config_path.read_text()
    config = load_config_yaml(text)  # the endpoint's own loader
    assert config.amqp_port == 443
    assert type(config).__name__ == "CoreEndpointConfig"
    assert yaml.safe_load(text)["amqp_port"] == 443
