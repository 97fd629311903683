import threading
import uuid
from unittest import mock

import globus_compute_sdk
import pytest

from bundle.endpoints.local import LocalEndpoint
from bundle.endpoints.session import GCSession, parse_endpoint

EP = "5f0c6ae5-8d2c-4fb8-9f0a-1b0c7f6f2e11"


def test_parse_endpoint():
    assert parse_endpoint("local") == ("local", "local")
    assert parse_endpoint("local:local") == ("local", "local")
    assert parse_endpoint("local", template="local") == ("local", "local")
    assert parse_endpoint(uuid.UUID(EP)) == (EP, None)
    assert parse_endpoint(EP.upper()) == (EP, None)
    with pytest.raises(ValueError, match="'local', 'local:<template>' or a Globus Compute endpoint UUID"):
        parse_endpoint("my-endpoint")
    # with a cloud endpoint the template only names what the endpoint was configured from
    assert parse_endpoint(EP, template="local") == (EP, "local")
    with pytest.raises(ValueError, match="names template 'local'"):
        parse_endpoint("local:local", template="other")


def test_one_local_executor_per_key_from_many_threads():
    got: list[object] = []
    barrier = threading.Barrier(16)

    def grab(cfg):
        barrier.wait()
        got.append(GCSession.get_executor("local", cfg))

    cfgs = [{"max_workers_per_block": 2}] * 8 + [{"max_workers_per_block": 3}] * 8
    threads = [threading.Thread(target=grab, args=(c,)) for c in cfgs]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(got) == 16
    assert all(isinstance(e, LocalEndpoint) for e in got)
    assert len({id(e) for e in got}) == 2
    assert GCSession.cached() == 2
    # key order inside the config does not matter; the template does
    a = GCSession.get_executor("local", {"max_workers_per_block": 2, "mpi_launcher": "mpiexec"})
    b = GCSession.get_executor("local:local", {"mpi_launcher": "mpiexec", "max_workers_per_block": 2})
    assert a is b
    GCSession.clear()
    assert GCSession.cached() == 0
    assert GCSession.get_executor("local", {"max_workers_per_block": 2}) not in got


def test_bad_local_options_fail_before_caching():
    with pytest.raises(ValueError, match="no option 'nodes'"):
        GCSession.get_executor("local", {"nodes": 2})
    assert GCSession.cached() == 0


def test_uuid_endpoint_builds_sdk_executor_lazily_with_expected_arguments():
    real = globus_compute_sdk.Executor
    fake = mock.create_autospec(real)
    fake.side_effect = lambda *a, **k: mock.create_autospec(real, instance=True)
    cfg = {"account": "abc123", "walltime": "00:30:00"}
    with mock.patch("globus_compute_sdk.Executor", fake):
        assert not fake.called
        first = GCSession.get_executor(EP, cfg)
        again = GCSession.get_executor(uuid.UUID(EP), dict(reversed(cfg.items())))
        other = GCSession.get_executor(EP, {"account": "other"})
    assert first is again
    assert other is not first
    assert fake.call_count == 2
    # create_autospec checks these against the real signature: a renamed argument fails here
    fake.assert_any_call(endpoint_id=EP, user_endpoint_config=cfg)
    fake.assert_any_call(endpoint_id=EP, user_endpoint_config={"account": "other"})
    GCSession.clear()
    first.shutdown.assert_called_once_with(wait=False, cancel_futures=True)


def test_local_only_options_refused_for_uuid():
    with pytest.raises(TypeError, match="local endpoints only"):
        GCSession.get_executor(EP, None, local_options={"run_dir": "/tmp/x"})


def test_old_names_of_local_options_still_work_and_warn(tmp_path):
    """One name (local_options) for the executor, GCOnlySpecs and GCSession; the old spellings warn."""
    from bundle import GCOnlySpecs

    with pytest.warns(DeprecationWarning, match="local_options"):
        specs = GCOnlySpecs(endpoint_options={"start_timeout": 7})
    assert specs.local_options == {"start_timeout": 7} and specs.endpoint_options is None
    with pytest.warns(DeprecationWarning, match="local_options"):
        both = GCOnlySpecs(endpoint_options={"start_timeout": 7, "run_dir": "a"}, local_options={"run_dir": "b"})
    assert both.local_options == {"start_timeout": 7, "run_dir": "b"}
    with pytest.warns(DeprecationWarning, match=r"get_executor\(\*\*kwargs\)"):
        with pytest.raises(TypeError, match="local endpoints only"):
            GCSession.get_executor(EP, None, run_dir="/tmp/x")
    assert GCSession.cached() == 0


def test_uuid_endpoint_options_checked_against_named_template_before_any_client():
    real = globus_compute_sdk.Executor
    fake = mock.create_autospec(real)
    with mock.patch("globus_compute_sdk.Executor", fake):
        with pytest.raises(ValueError, match="no option 'nodes'"):
            GCSession.get_executor(EP, {"nodes": 2}, template="local")
        assert not fake.called
        assert GCSession.cached() == 0
        GCSession.get_executor(EP, {"max_workers_per_block": 2}, template="local")
    fake.assert_called_once_with(endpoint_id=EP, user_endpoint_config={"max_workers_per_block": 2})
