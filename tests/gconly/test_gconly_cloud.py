"""GC-only mode against a cloud endpoint UUID: the SDK Executor is an autospec mock (no network).

The mock's futures are completed by a thread that runs the registered function on the
deserialized arguments, so what the manager sends is exactly what would cross the wire.
"""

from __future__ import annotations

import concurrent.futures
import pickle
import sys
import threading
import typing as t
from unittest import mock

import globus_compute_sdk
import numpy as np
import pytest
from globus_compute_sdk.serialize import ComputeSerializer

from bundle.errors import TemplateOptionError
from bundle.gconly import SimSerializationError
from bundle.gconly.launch import run_gconly
from bundle.processes.thread_cwd import own_working_directory
from tests.gconly import sims
from tests.gconly.helpers import run_specs, run_with, uniform_specs

EP = "6f3fa8a6-8a3b-4c64-9a8f-0ad4d3f6f1d1"


class FakeCloud:
    """Runs registered functions on serialized-then-deserialized arguments in a small pool.

    Each thread of the pool has a working directory of its own, as an endpoint's worker process has:
    GC-only's runner changes into the sim's directory there.
    """

    def __init__(self, lose: t.Callable[[tuple[t.Any, ...]], bool] = lambda args: False) -> None:
        self.serializer = ComputeSerializer()
        self.functions: dict[str, t.Callable[..., t.Any]] = {}
        self.pool = concurrent.futures.ThreadPoolExecutor(2, initializer=own_working_directory)
        self.lose = lose
        self.submitted = 0
        self.lock = threading.Lock()

    def register(self, fn: t.Callable[..., t.Any], function_id: str | None = None, **_: t.Any) -> str:
        fid = f"fn-{len(self.functions)}"
        self.functions[fid] = self.serializer.deserialize(self.serializer.serialize(fn))
        return fid

    def submit(self, function_id: str, args: tuple[t.Any, ...] | None = None, kwargs: dict[str, t.Any] | None = None):
        wire = self.serializer.serialize(tuple(args or ()))  # what the SDK would send
        with self.lock:
            self.submitted += 1
        fut: concurrent.futures.Future[t.Any] = concurrent.futures.Future()

        def run() -> None:
            call_args = self.serializer.deserialize(wire)
            if self.lose(call_args):
                fut.set_exception(RuntimeError("Task lost: endpoint went away"))
                return
            try:
                fut.set_result(self.functions[function_id](*call_args, **(kwargs or {})))
            except Exception as err:
                fut.set_exception(err)

        self.pool.submit(run)
        return fut


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch, tmp_path: t.Any) -> t.Iterator[tuple[mock.Mock, FakeCloud]]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "endpoint-home"))  # sims run under ~/libe_gc_runs on a UUID endpoint
    fake = FakeCloud()
    instance = mock.create_autospec(globus_compute_sdk.Executor, instance=True)
    instance.register_function.side_effect = fake.register
    instance.submit_to_registered_function.side_effect = fake.submit
    instance.serializer = fake.serializer
    cls = mock.create_autospec(globus_compute_sdk.Executor, return_value=instance)
    monkeypatch.setattr(globus_compute_sdk, "Executor", cls)
    yield cls, fake
    fake.pool.shutdown(wait=True)


def sent_args(call: t.Any) -> tuple[t.Any, ...]:
    """One sim's arguments as ``sim_f`` sees them, from a packed call (``sim_specs`` is bound at registration)."""
    (payload,) = call.kwargs["args"]
    assert isinstance(payload, bytes), "each sim's arguments travel pickled, as one bytes object"
    args: tuple[t.Any, ...] = pickle.loads(payload)
    assert len(args) < 3 or args[2] is None, "sim_specs is not resent with every sim"
    return args


run = run_specs


def test_uuid_endpoint_registers_once_and_submits_packed_arguments_only(cloud: t.Any) -> None:
    cls, _fake = cloud
    specs = uniform_specs(sims.counting, 3, 15, endpoint=EP)
    options = {"engine_type": "GlobusComputeEngine", "max_workers_per_node": 2}
    res = run(specs, 3, user_endpoint_config=options, template="local")
    assert res.exit_flag == 0 and not res.sim_errors
    cls.assert_called_once_with(endpoint_id=EP, user_endpoint_config=options)
    instance = cls.return_value
    instance.register_function.assert_called_once()
    registered = instance.register_function.call_args.args[0]
    assert registered.__name__ == "libe_gconly_sim"
    assert registered.__globals__["sim_f"] is sims.counting
    assert registered.__globals__["sim_specs"]["sim_f"] is sims.counting
    assert instance.submit_to_registered_function.call_count == 15
    for call in instance.submit_to_registered_function.call_args_list:
        assert call.args == ("fn-0",)
        calc_in, _persis_info, _, libE_info = sent_args(call)
        assert calc_in.dtype.names == ("x",) and len(calc_in) == 1
        assert libE_info["comm"] is None and libE_info["executor"] is None
        assert 2 <= libE_info["workerID"] <= 4  # the generator runs on worker 1, as in a stock run
    done = res.H[res.H["sim_ended"]]
    assert np.allclose(done["f"], done["x"][:, 0])
    assert sum(res.persis_info[w]["calls"] for w in (2, 3, 4)) == 15


def test_second_run_reuses_the_registration(cloud: t.Any) -> None:
    cls, _ = cloud
    for _ in range(2):
        res = run(uniform_specs(sims.trivial, 2, 4, endpoint=EP), 2)
        assert res.exit_flag == 0
    assert cls.return_value.register_function.call_count == 1


def test_arguments_truncated_to_the_signature(cloud: t.Any) -> None:
    cls, _ = cloud
    res = run(uniform_specs(sims.bare, 1, 2, endpoint=EP), 1)
    assert res.exit_flag == 0
    for call in cls.return_value.submit_to_registered_function.call_args_list:
        assert len(sent_args(call)) == 3  # bare(H, _, sim_specs)


def test_lost_task_is_task_failed_and_the_run_goes_on(cloud: t.Any) -> None:
    _, fake = cloud
    fake.lose = lambda args: pickle.loads(args[0])[0]["x"][0, 0] < 0
    res = run(uniform_specs(sims.trivial, 2, 12, endpoint=EP), 2)
    assert res.exit_flag == 0
    done = res.H[res.H["sim_ended"]]
    lost = done["x"][:, 0] < 0
    assert lost.any() and len(done) == 12
    assert sorted(res.sim_errors) == sorted(int(i) for i in done["sim_id"][lost])
    assert all("Task lost" in text for text in res.sim_errors.values())
    assert np.all(np.isnan(done["f"][lost])) and np.all(done["f"][~lost] == 1)


def test_batching_on_a_cloud_endpoint(cloud: t.Any) -> None:
    cls, fake = cloud
    res = run(uniform_specs(sims.six_hump, 8, 32, endpoint=EP), 8, batch_size=4)
    assert res.exit_flag == 0 and not res.sim_errors
    assert fake.submitted == res.tasks < 32
    registered = cls.return_value.register_function.call_args.args[0]
    assert registered.__name__ == "libe_gconly_sim_batch"
    for call in cls.return_value.submit_to_registered_function.call_args_list:
        (payload,) = call.kwargs["args"]
        calls = pickle.loads(payload)
        assert 1 <= len(calls) <= 4 and all(len(c) == 4 and c[2] is None for c in calls)


def test_unserializable_sim_f_fails_before_registration(cloud: t.Any) -> None:
    cls, _ = cloud
    specs = uniform_specs(sims.trivial, 1, 2, endpoint=EP)
    specs["sim_specs"]["sim_f"] = UnpicklableSim()
    with pytest.raises(SimSerializationError, match=r"sim_f") as info:
        run(specs, 1)
    assert info.value.what.startswith("sim_f")
    cls.return_value.register_function.assert_not_called()
    cls.return_value.submit_to_registered_function.assert_not_called()


def test_unserializable_persis_info_fails_before_submission(cloud: t.Any) -> None:
    cls, _ = cloud
    specs = uniform_specs(sims.trivial, 2, 2, endpoint=EP)
    specs["persis_info"][2]["db"] = sims.Unpicklable()
    with pytest.raises(SimSerializationError, match=r"persis_info\[2\]\['db'\]"):
        run(specs, 2)
    cls.return_value.submit_to_registered_function.assert_not_called()


def test_bad_template_option_fails_before_any_executor(cloud: t.Any) -> None:
    cls, _ = cloud
    with pytest.raises(TemplateOptionError, match="max_workers_per_node"):
        run(
            uniform_specs(sims.trivial, 1, 2, endpoint=EP),
            1,
            user_endpoint_config={"max_workers_per_node": -3},
            template="local",
        )
    cls.assert_not_called()


class UnpicklableSim:
    """A callable sim that cannot be pickled."""

    def __call__(self, H: t.Any, persis_info: t.Any, sim_specs: t.Any) -> t.Any:
        return np.zeros(len(H), dtype=sim_specs["out"]), persis_info

    def __reduce__(self) -> t.Any:
        raise TypeError("holds an open socket")


def test_ensemble_takes_nworkers_from_the_command_line(cloud: t.Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import bundle

    cls, _ = cloud
    monkeypatch.setattr(sys, "argv", ["calling_script.py", "-n", "3"])
    specs = uniform_specs(sims.counting, 3, 12, endpoint=EP)
    ens = bundle.Ensemble(parse_args=True, **specs)
    assert ens.nworkers == 3
    H, _, flag = ens.run()
    assert flag == 0 and H["sim_ended"].sum() == 12
    ids = {sent_args(c)[3]["workerID"] for c in cls.return_value.submit_to_registered_function.call_args_list}
    assert ids == {2, 3, 4}  # virtual sim workers after the generator's worker 1


def test_without_an_endpoint_the_stock_path_runs(cloud: t.Any) -> None:
    import bundle

    cls, _ = cloud
    specs = uniform_specs(sims.trivial, 2, 6, endpoint="")
    H, _, flag = run_with(bundle.libE, specs, {"nworkers": 2, "comms": "threads"})
    assert flag == 0 and H["sim_ended"].sum() == 6
    cls.assert_not_called()


def test_unserializable_first_work_item_fails_before_submission(cloud: t.Any) -> None:
    from libensemble.alloc_funcs.give_sim_work_first import give_sim_work_first
    from libensemble.tools import add_unique_random_streams

    from tests.gconly import gens

    cls, _ = cloud
    sim_specs = {"sim_f": sims.trivial, "in": ["x", "handle"], "out": [("f", float)], "globus_compute_endpoint": EP}
    gen_specs = {
        "gen_f": gens.with_object_field,
        "out": [("x", float, (2,)), ("handle", object)],
        "user": {"batch": 4, "make": sims.Unpicklable},
    }
    with pytest.raises(SimSerializationError, match=r"first simulation's H rows") as info:
        run_gconly(
            sim_specs,
            gen_specs,
            {"sim_max": 4},
            add_unique_random_streams({}, 3),
            {"alloc_f": give_sim_work_first},
            {"nworkers": 2},
        )
    assert "calc_in" in info.value.what
    cls.return_value.submit_to_registered_function.assert_not_called()


def test_history_saved_every_k_sims_and_at_the_end(cloud: t.Any, tmp_path: t.Any) -> None:
    specs = uniform_specs(sims.trivial, 2, 12, endpoint=EP)
    res = run_with(run_gconly, specs, {"nworkers": 2, "save_every_k_sims": 5})
    assert res.exit_flag == 0
    saved = sorted(p.name for p in tmp_path.glob("libE_history_after_sim_*.npy"))
    assert saved == ["libE_history_after_sim_12.npy"]  # older checkpoints are replaced, the final one stays
    H = np.load(tmp_path / saved[0], allow_pickle=True)
    assert H["sim_ended"].sum() == 12
    lines = (tmp_path / "libE_stats.txt").read_text().splitlines()
    assert sum(": sim_id " in line for line in lines) == 12


def test_dict_specs_get_libensembles_validators(cloud: t.Any) -> None:
    specs = uniform_specs(sims.decorated, 2, 6, endpoint=EP)
    specs["sim_specs"] = {"sim_f": sims.decorated, "globus_compute_endpoint": EP}  # in/out from the decorators
    res = run(specs, 2)
    assert res.exit_flag == 0 and not res.sim_errors
    done = res.H[res.H["sim_ended"]]
    assert np.allclose(done["f"], done["x"][:, 1])


def test_arguments_stdlib_pickle_cannot_send_go_plain(cloud: t.Any) -> None:
    """A lambda in persis_info: dill sends it by value, stdlib pickle cannot; the run goes on plain."""
    cls, _ = cloud
    specs = uniform_specs(sims.counting, 2, 8, endpoint=EP)
    specs["persis_info"][2]["scale"] = lambda x: 2 * x  # virtual sim worker 2 (the generator is worker 1)
    res = run(specs, 2)
    assert res.exit_flag == 0 and not res.sim_errors
    sent = [c.kwargs["args"][0] for c in cls.return_value.submit_to_registered_function.call_args_list]
    plain = [s for s in sent if not isinstance(s, bytes)]
    assert plain and all(s[1]["scale"](2) == 4 and s[2] is None for s in plain)
    assert any(isinstance(s, bytes) for s in sent)  # virtual worker 3's persis_info pickles cleanly
    assert sum(res.persis_info[w]["calls"] for w in (2, 3)) == 8
    assert res.persis_info[2]["scale"](3) == 6


def test_plain_calls_when_packing_is_switched_off(cloud: t.Any) -> None:
    cls, _ = cloud
    res = run(uniform_specs(sims.counting, 2, 6, endpoint=EP), 2, pack_calls=False)
    assert res.exit_flag == 0 and not res.sim_errors
    registered = cls.return_value.register_function.call_args.args[0]
    assert registered.__name__ == "libe_gconly_sim" and registered.__globals__["sim_f"] is sims.counting
    for call in cls.return_value.submit_to_registered_function.call_args_list:
        ((_, _, sim_specs, libE_info),) = call.kwargs["args"]
        assert sim_specs["sim_f"] is sims.counting and 2 <= libE_info["workerID"] <= 3


def test_sdk_options_reach_the_sdk_executor(cloud: t.Any) -> None:
    cls, _ = cloud
    opts = {"amqp_port": 443, "batch_size": 16, "api_burst_limit": 2}
    res = run(uniform_specs(sims.trivial, 2, 4, endpoint=EP), 2, sdk_options=opts)
    assert res.exit_flag == 0
    cls.assert_called_once_with(endpoint_id=EP, user_endpoint_config=None, **opts)


def test_sdk_options_are_refused_for_the_local_endpoint(tmp_path: t.Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from bundle.gconly import GCOnlyConfigError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(GCOnlyConfigError, match="not 'local'"):
        run(uniform_specs(sims.trivial, 1, 1), 1, sdk_options={"amqp_port": 443})
