"""GC-only on endpoints rendered from the bundled templates with default options (GlobusMPIEngine by default).

The "cloud" endpoint here is the SDK ``Executor`` (an autospec, no network) in front of a raw engine
rendered from the same template and driven as a real endpoint's interchange drives it
(:class:`tests.contract.interchange.InterchangeEndpoint`): what it refuses, a real endpoint refuses.
"""

from __future__ import annotations

import json
import typing as t
from unittest import mock

import globus_compute_sdk
import pytest

from bundle.endpoints.session import GCSession
from bundle.gconly import GCOnlyConfigError, SimSerializationError
from bundle.gconly.engine_choice import ONE_RANK
from tests.contract.interchange import InterchangeEndpoint
from tests.gconly import sims
from tests.gconly.helpers import run_specs, uniform_specs

EP = "0b7d3c57-3f0e-4a53-9d1c-6a1f8c2e4b90"
SDK_EXECUTOR = globus_compute_sdk.Executor


run = run_specs


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[InterchangeEndpoint]:
    """A template-capable endpoint built from the bundled ``local`` template (one engine per user config)."""
    ep = InterchangeEndpoint("local", tmp_path_factory.mktemp("site"))
    yield ep
    ep.shutdown()


@pytest.fixture
def cloud(site: InterchangeEndpoint, monkeypatch: pytest.MonkeyPatch, tmp_path: t.Any) -> t.Iterator[mock.Mock]:
    """``globus_compute_sdk.Executor`` (autospec) whose tasks reach ``site`` as the service would deliver them."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("bundle.endpoints.python_check.warn_on_python_mismatch", lambda *a, **k: None)
    site.sent_specs.clear()

    def make(**kwargs: t.Any) -> t.Any:
        inst = mock.create_autospec(SDK_EXECUTOR, instance=True)
        inst.serializer = site.serializer
        inst.resource_specification = None

        def submit(function_id: str, args: t.Any = None, kwargs: t.Any = None) -> t.Any:
            # what the SDK batches per task: the executor's spec and user_endpoint_config at submit time
            site.resource_specification = inst.resource_specification
            site.user_endpoint_config = make_kwargs["user_endpoint_config"]
            return site.submit_to_registered_function(function_id, args=args, kwargs=kwargs)

        make_kwargs = kwargs
        inst.register_function.side_effect = lambda fn, **_: (
            site._function_registry.get(fn) or site.register_function(fn)
        )
        inst.submit_to_registered_function.side_effect = submit
        return inst

    cls = mock.create_autospec(SDK_EXECUTOR, side_effect=make)
    monkeypatch.setattr(globus_compute_sdk, "Executor", cls)
    yield cls
    GCSession.clear()


def test_default_options_with_the_template_named_run_as_python_tasks(cloud, site):
    res = run(uniform_specs(sims.trivial, 2, 6, endpoint=EP), 2, template="local", require_online=False)
    assert res.exit_flag == 0 and not res.sim_errors
    assert int(res.H["sim_ended"].sum()) == 6
    cloud.assert_called_once_with(endpoint_id=EP, user_endpoint_config={"engine_type": "GlobusComputeEngine"})
    assert site.sent_specs and set(site.sent_specs) == {None}


def test_a_chosen_mpi_engine_gets_one_rank_per_sim(cloud, site):
    opts = {"engine_type": "GlobusMPIEngine", "max_workers_per_block": 2}
    res = run(uniform_specs(sims.trivial, 2, 4, endpoint=EP), 2, template="local", user_endpoint_config=opts)
    assert res.exit_flag == 0 and not res.sim_errors
    assert site.sent_specs and all(json.loads(s) == ONE_RANK for s in site.sent_specs), site.sent_specs


def test_unknown_template_on_an_mpi_endpoint_ends_at_the_first_refusal(cloud, site):
    specs = uniform_specs(sims.trivial, 2, 40, endpoint=EP)
    with pytest.raises(GCOnlyConfigError, match="GlobusMPIEngine, which refuses Python tasks") as info:
        run(specs, 2, require_online=False)
    assert "gc_specs.template" in str(info.value)
    # ended by the first refused sim, not after all 40 failed one by one
    assert 1 <= len(site.sent_specs) <= 4, site.sent_specs


def test_default_local_endpoint_runs(monkeypatch, tmp_path):
    """``sim_specs.globus_compute_endpoint = "local"`` and no options at all: the template's default engine."""
    monkeypatch.chdir(tmp_path)
    res = run(uniform_specs(sims.trivial, 2, 6), 2, local_options={"start_timeout": 240})
    assert res.exit_flag == 0 and not res.sim_errors
    assert int(res.H["sim_ended"].sum()) == 6
    (ep,) = [e for e in GCSession._executors.values()]
    assert ep.user_endpoint_config == {"engine_type": "GlobusComputeEngine"}
    GCSession.clear()


def reads_an_undefined_name(H: t.Any, persis_info: t.Any, sim_specs: t.Any, libE_info: t.Any) -> t.Any:
    return NOT_DEFINED_ANYWHERE  # type: ignore[name-defined]  # noqa: F821


def test_a_run_refused_before_it_starts_leaves_the_shared_executors_spec_alone(monkeypatch, tmp_path, caplog):
    """The cached executor outlives the run: a refusal at set-up must not leave it the run's one-rank spec."""
    monkeypatch.chdir(tmp_path)
    opts = {"engine_type": "GlobusMPIEngine", "max_workers_per_block": 2}
    try:
        with pytest.raises(SimSerializationError, match="NOT_DEFINED_ANYWHERE"):
            run(uniform_specs(reads_an_undefined_name, 2, 4), 2, user_endpoint_config=opts)
        # the cost of a one-rank task per sim is a warning, seen without configuring logging
        costs = [r for r in caplog.records if "holds one node or slot" in r.getMessage()]
        assert costs and costs[0].levelname == "WARNING", caplog.records
        (ep,) = list(GCSession._executors.values())
        assert ep.user_endpoint_config == opts
        assert ep.resource_specification is None, "the run's per-sim spec stayed on the shared executor"
    finally:
        GCSession.clear()
