"""GC-only building blocks without an engine: normalization, failed outputs, batch runner, specs, stats."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
import typing as t
from unittest import mock

import numpy as np
import pytest
from globus_compute_sdk.serialize import ComputeSerializer
from libensemble.message_numbers import TASK_FAILED, UNSET_TAG, WORKER_DONE

from bundle.gconly import GCOnlyConfigError, GCOnlySpecs, SimOutputError
from bundle.gconly.normalize import failed_output, normalize_sim_output
from bundle.gconly.records import stats_line
from bundle.gconly.remote import BATCH_FUNCTION_NAME, SIM_FUNCTION_NAME, make_batch_function, make_sim_function
from tests.gconly.helpers import REPO

OUT = np.zeros(2, dtype=[("f", float), ("g", int), ("v", float, (2,))])
PI = {"from": "manager"}


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        ((OUT, {"new": 1}, WORKER_DONE), (OUT, {"new": 1}, WORKER_DONE)),
        ((OUT, {"new": 1}), (OUT, {"new": 1}, UNSET_TAG)),
        ((OUT, WORKER_DONE), (OUT, PI, WORKER_DONE)),
        ((OUT, np.int64(TASK_FAILED)), (OUT, PI, TASK_FAILED)),
        ((OUT, "custom status"), (OUT, PI, "custom status")),
        (OUT, (OUT, PI, UNSET_TAG)),  # bare H_o with two rows stays one H_o
        (None, (None, PI, UNSET_TAG)),
        ((OUT,), (OUT, PI, UNSET_TAG)),
        ((OUT, None, WORKER_DONE), (OUT, PI, WORKER_DONE)),
    ],
    ids=[
        "3-tuple",
        "H_o+persis_info",
        "H_o+status",
        "H_o+np-status",
        "H_o+str-status",
        "bare",
        "None",
        "1-tuple",
        "None-pi",
    ],
)
def test_normalize_mirrors_the_worker(out: object, expected: tuple[object, object, object]) -> None:
    got = normalize_sim_output(out, PI)
    assert got[0] is expected[0]
    assert got[1] == expected[1] and got[2] == expected[2]


def test_dict_output_is_refused_with_the_simulator_hint() -> None:
    with pytest.raises(SimOutputError, match="SimSpecs.simulator"):
        normalize_sim_output(({"f": 1.0}, PI), PI)


def test_failed_output_is_nan_for_floats_only() -> None:
    out = failed_output(OUT.dtype, 3)
    assert out is not None and len(out) == 3
    assert np.all(np.isnan(out["f"])) and np.all(np.isnan(out["v"])) and np.all(out["g"] == 0)
    assert failed_output(None, 3) is None


def _double(H, persis_info, sim_specs):
    if H < 0:
        raise ValueError("negative")
    return H * 2, persis_info


def test_batch_runner_keeps_results_and_errors_per_sim() -> None:
    fn = make_batch_function(_double)
    assert fn.__name__ == BATCH_FUNCTION_NAME
    res = fn([(1, {}, {}), (-1, {}, {}), (3, {"k": 1}, {})])
    assert [r[0] for r in res] == [True, False, True]
    assert res[0][1] == (2, {}) and res[2][1] == (6, {"k": 1})
    assert "ValueError: negative" in res[1][1]
    assert all(r[2] <= r[3] for r in res)


def _run_without_bundle(code: str, cwd: str = "/") -> str:
    done = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['bundle'] = None\n" + code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_batch_runner_is_sent_by_value() -> None:
    """The endpoint needs sim_f's module, not this package: load it with ``bundle`` unimportable."""
    payload = ComputeSerializer().serialize(make_batch_function(np.sqrt))
    code = (
        "from globus_compute_sdk.serialize import ComputeSerializer\n"
        f"fn = ComputeSerializer().deserialize({payload!r})\n"
        "print(fn([(4.0,), (9.0,)])[1][1])\n"
    )
    assert _run_without_bundle(code) == "3.0"


@pytest.mark.parametrize("make", [make_sim_function, make_batch_function])
def test_packed_runners_are_sent_by_value_with_sim_specs_bound(make: t.Any) -> None:
    """A packed call (pickled bytes, no sim_specs) runs where ``bundle`` cannot be imported."""
    from tests.gconly import sims

    payload = ComputeSerializer().serialize(make(sims.trivial, {"out": [("f", float)]}))
    call = (np.zeros(3, dtype=[("x", float)]), {"k": 1}, None)
    packed = pickle.dumps([call] if make is make_batch_function else call, protocol=5)
    code = (
        "import pickle\n"
        "from globus_compute_sdk.serialize import ComputeSerializer\n"
        f"fn = ComputeSerializer().deserialize({payload!r})\n"
        f"answer = fn({packed!r})\n"
        "assert isinstance(answer, bytes)\n"
        "answer = pickle.loads(answer)\n"
        "out, pi = answer[0][1] if isinstance(answer, list) else answer\n"
        "print(out['f'].sum(), pi)\n"
    )
    # sim_f's own module (tests.gconly.sims) is importable from the repository's root
    assert _run_without_bundle(code, cwd=str(REPO)) == "3.0 None"


def _scaled(H: t.Any, persis_info: dict[str, t.Any], sim_specs: dict[str, t.Any]) -> t.Any:
    return H * sim_specs["user"]["scale"], dict(persis_info)


def _keeps(H: t.Any, persis_info: dict[str, t.Any], sim_specs: dict[str, t.Any]) -> t.Any:
    return H, persis_info, WORKER_DONE


def _draws(H: t.Any, persis_info: dict[str, t.Any], sim_specs: dict[str, t.Any]) -> t.Any:
    persis_info["rand_stream"].uniform()
    return H, persis_info


def _returns_bytes(H: t.Any, persis_info: dict[str, t.Any], sim_specs: dict[str, t.Any]) -> t.Any:
    return b"raw"


def _returns_lambda(H: t.Any, persis_info: dict[str, t.Any], sim_specs: dict[str, t.Any]) -> t.Any:
    return H, {"f": lambda x: x}


SPECS = {"out": [("f", float)]}


def _packed(call: tuple[t.Any, ...]) -> bytes:
    return pickle.dumps(call, protocol=5)


def test_sim_runner_puts_sim_specs_in_place_and_answers_in_kind() -> None:
    fn = make_sim_function(_scaled, {"user": {"scale": 2.0}})
    assert fn.__name__ == SIM_FUNCTION_NAME
    answer = fn(_packed((np.array([1.5]), {}, None)))
    assert isinstance(answer, bytes)
    out, pi = pickle.loads(answer)
    assert out[0] == 3.0 and pi == {}
    plain = fn((np.array([1.5]), {}, None))  # plain call: plain answer
    assert isinstance(plain, tuple) and plain[0][0] == 3.0
    assert make_sim_function(_returns_bytes, SPECS)((1, {}, None)) == b"raw"  # plain bytes stay as returned
    assert pickle.loads(make_sim_function(_returns_bytes, SPECS)(_packed((1, {}, None)))) == b"raw"


def test_unchanged_persis_info_is_not_sent_back() -> None:
    from libensemble.tools import add_unique_random_streams

    pi = add_unique_random_streams({}, 2, seed=3)[1]
    out = pickle.loads(make_sim_function(_keeps, SPECS)(_packed((1, pi, None))))
    assert out == (1, None, WORKER_DONE)  # the driver keeps its own copy
    normalized = normalize_sim_output(out, pi)
    assert normalized[1] is pi and normalized[2] == WORKER_DONE
    drawn = pickle.loads(make_sim_function(_draws, SPECS)(_packed((1, pi, None))))
    assert drawn[1]["rand_stream"].bit_generator.state != pi["rand_stream"].bit_generator.state
    batch = pickle.loads(make_batch_function(_keeps, SPECS)(_packed([(1, pi, None), (2, {"a": 1}, None)])))
    assert [r[1] for r in batch] == [(1, None, WORKER_DONE), (2, None, WORKER_DONE)]


def test_packed_call_with_an_unpicklable_answer_answers_plain() -> None:
    answer = make_sim_function(_returns_lambda, SPECS)(_packed((1, {}, None)))
    assert isinstance(answer, tuple) and answer[1]["f"](4) == 4
    batch = make_batch_function(_returns_lambda, SPECS)(_packed([(1, {}, None)]))
    assert isinstance(batch, list) and batch[0][0] is True


class MainRef:
    """Stands for a class of the calling script."""


MainRef.__module__ = "__main__"


def _wire(serializer: t.Any = None, batched: bool = False, pack: bool = True) -> t.Any:
    import globus_compute_sdk

    from bundle.gconly.calls import SimWire

    executor = mock.create_autospec(globus_compute_sdk.Executor, instance=True)
    executor.register_function.return_value = "fid"
    return executor, SimWire(executor, serializer or ComputeSerializer(), {"sim_f": _keeps, **SPECS}, batched, pack)


def test_wire_packs_what_pickles_cleanly_and_sends_the_rest_plain() -> None:
    executor, wire = _wire()
    assert wire.packed and wire.function_id == "fid"
    registered = executor.register_function.call_args.args[0]
    assert registered.__name__ == SIM_FUNCTION_NAME and registered.__globals__["sim_specs"]["out"] == SPECS["out"]
    H = np.zeros(1, dtype=[("x", float)])
    (payload,) = wire.request((H, {"w": 1}, {"sim_f": _keeps}, {"workerID": 1}))
    assert isinstance(payload, bytes)
    assert pickle.loads(payload)[2] is None and pickle.loads(payload)[3] == {"workerID": 1}
    for odd in (lambda x: x, MainRef()):  # dill sends these by value; stdlib pickle must not
        (plain,) = wire.request((H, {"odd": odd}, {}, {}))
        assert isinstance(plain, tuple) and plain[1]["odd"] is odd and plain[2] is None
    (calls,) = _wire(batched=True)[1].batch_request([(H, {}, {}, {}), (H, {}, {}, {})])
    assert isinstance(calls, bytes) and [c[2] for c in pickle.loads(calls)] == [None, None]


@pytest.mark.parametrize("strategy", ["JSONData", "DillCodeSource", "PureSourceTextInspect"])
def test_wire_goes_plain_when_the_serializer_cannot_carry_packed_calls(strategy: str) -> None:
    """A data strategy that cannot carry bytes, or a code strategy that sends source only."""
    from globus_compute_sdk import serialize

    cls = getattr(serialize, strategy)
    kind = "strategy_data" if strategy == "JSONData" else "strategy_code"
    executor, wire = _wire(ComputeSerializer(**{kind: cls()}))
    assert not wire.packed
    args = (1, {}, {"sim_f": _keeps}, {})
    if strategy == "JSONData":  # the runner travels (it puts the sim in its directory); its calls go plain
        registered = executor.register_function.call_args.args[0]
        assert registered.__name__ == SIM_FUNCTION_NAME and registered.__globals__["sim_specs"] is None
        assert wire.request(args) == (args,)
    else:  # a source-only code strategy cannot send the runner: sim_f itself, as before packed calls
        executor.register_function.assert_called_once_with(_keeps)
        assert wire.request(args) == args


def test_pack_calls_switch_restores_plain_calls() -> None:
    executor, wire = _wire(pack=False)
    assert not wire.packed
    registered = executor.register_function.call_args.args[0]  # the runner, sim_specs among the arguments
    assert registered.__name__ == SIM_FUNCTION_NAME and registered.__globals__["sim_specs"] is None
    args = (np.zeros(1), {"w": 2}, {"sim_f": _keeps})
    (call,) = wire.request(args)
    assert call is args and registered(call) == _keeps(*args)  # no pickle.loads of arguments on the endpoint


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 0},
        {"batch_size": 2.5},
        {"batch_size": True},
        {"user_endpoint_config": "engine_type=x"},
        {"template": 3},
        {"poll_interval": 0},
        {"endpoint_options": []},
        {"local_options": []},
        {"fail_fast": -1},
        {"fail_fast": True},
    ],
)
def test_gconly_specs_refuse_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(GCOnlyConfigError):
        GCOnlySpecs(**kwargs)  # type: ignore[arg-type]


def test_gconly_specs_from_dict() -> None:
    assert GCOnlySpecs.coerce({"batch_size": 4}).batch_size == 4
    assert GCOnlySpecs.coerce(None) == GCOnlySpecs()
    with pytest.raises(GCOnlyConfigError, match="batchsize"):
        GCOnlySpecs.coerce({"batchsize": 4})


def test_stats_line_has_libensembles_format() -> None:
    work = {"libE_info": {"H_rows": np.array([3, 4, 5, 9])}}
    line = stats_line(work, 1_700_000_000.25, 1_700_000_001.5, WORKER_DONE)
    assert re.fullmatch(
        r"sim_id 3-5_9: sim Time: 1\.250 Start: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.250 "
        r"End: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.500 Status: Completed",
        line,
    ), line
    assert stats_line({"libE_info": {"H_rows": np.array([7])}}, 0, 1, TASK_FAILED).startswith("sim_id     7: sim")
    assert stats_line({"libE_info": {"H_rows": np.array([7])}}, 0, 1, TASK_FAILED).endswith(
        "Status: Task Failed during run"
    )


def test_gc_specs_without_an_endpoint_are_refused() -> None:
    import bundle

    with pytest.raises(GCOnlyConfigError, match="globus_compute_endpoint"):
        bundle.libE({"sim_f": _double, "in": ["x"], "out": [("f", float)]}, None, {"sim_max": 1}, gc_specs={})


def test_errors_that_stop_a_run_are_libensembles_logged_exception() -> None:
    """A script written for stock libEnsemble catches a stopped run with ``except LoggedException``."""
    from libensemble.manager import LoggedException

    from bundle.gconly import EndpointUnavailableError, SimSerializationError, SystematicSimError

    stopped = [
        SystematicSimError("stopped", cause="ValueError: x"),
        EndpointUnavailableError("gone", endpoint="local"),
        GCOnlyConfigError("persistent sims"),
        SimSerializationError("cannot send", what="sim_f"),
    ]
    for err in stopped:
        with pytest.raises(LoggedException):
            raise err


@pytest.mark.parametrize("batched", [False, True], ids=["one-sim", "batch"])
@pytest.mark.parametrize("pack", [True, False], ids=["packed", "plain"])
def test_results_over_the_10_mib_limit_are_refused_before_the_first_sim_goes(batched: bool, pack: bool) -> None:
    """libEnsemble's test_fast_alloc returns an 8 MB row per sim: 10,807,387 bytes once serialized."""
    from bundle.gconly.calls import SimPayloadTooLargeError

    H = np.zeros(1, dtype=[("x", float, (2,))])
    args = (H, {}, {}, {"H_rows": np.array([0])})
    _, wire = _wire(batched=batched, pack=pack)
    big = np.dtype([("f", float), ("large", float, 1_000_000)])
    with pytest.raises(SimPayloadTooLargeError) as info:
        wire.check_first_task(args, 1, big, 1)
    assert 10_485_760 < info.value.size < 11_000_000 and info.value.limit == 10_485_760
    assert "10,485,760 bytes (10 MiB)" in str(info.value) and f"{info.value.size:,} bytes" in str(info.value)
    assert "files" in str(info.value)
    under = np.dtype([("f", float), ("large", float, 700_000)])  # 5.6 MB raw, about 7.5 MB serialized
    wire.check_first_task(args, 1, under, 1)
    if batched:  # two such sims in one task are too many: fewer per task is the fix
        with pytest.raises(SimPayloadTooLargeError, match=r"lower gc_specs\.batch_size"):
            wire.check_first_task(args, 1, under, 2)


def test_arguments_and_registered_runners_over_the_limit_are_refused() -> None:
    import globus_compute_sdk

    from bundle.gconly.calls import SimPayloadTooLargeError, SimWire

    _, wire = _wire()
    big_rows = np.zeros(1, dtype=[("x", float, (1_000_000,))])
    with pytest.raises(SimPayloadTooLargeError, match="the arguments of one task") as info:
        wire.check_first_task((big_rows, {}, {}, {}), 1, None, 1)
    assert info.value.size > 10_485_760
    executor = mock.create_autospec(globus_compute_sdk.Executor, instance=True)
    specs = {"sim_f": _keeps, **SPECS, "user": {"table": np.ones(1_400_000)}}  # 11.2 MB bound into the runner
    with pytest.raises(SimPayloadTooLargeError, match="sim_f with sim_specs bound"):
        SimWire(executor, ComputeSerializer(), specs, False)
    executor.register_function.assert_not_called()


def test_generators_are_numbered_first_as_a_stock_run_places_them() -> None:
    from bundle.gconly.gen_workers import plan_layout

    gen = {"gen_f": print}
    one = plan_layout(gen, {"user": {"num_active_gens": 1}}, {}, 3)
    assert (one.gen_ids, one.sim_ids, one.total) == ((1,), (2, 3, 4), 4)
    two = plan_layout(gen, {"user": {"num_active_gens": 2, "async_return": True}}, {}, 3)
    assert (two.gen_ids, two.sim_ids) == ((1, 2), (3, 4, 5))
    assert plan_layout(gen, {"user": {}}, {}, 2).gen_ids == (1,)  # libEnsemble's default: one active generator
    named = plan_layout(gen, {}, {"gen_workers": [3]}, 3)
    assert (named.gen_ids, named.sim_ids) == ((3,), (1, 2, 4))
    manager = plan_layout(gen, {"user": {"num_active_gens": 2}}, {"gen_on_manager": True}, 3)
    assert (manager.gen_ids, manager.sim_ids, manager.on_manager) == ((), (1, 2, 3), True)
    assert plan_layout({"gen_f": None}, {}, {}, 2).sim_ids == (1, 2)  # no generator: given rows only
    with pytest.raises(GCOnlyConfigError, match=r"numbers its workers 1\.\.4"):
        plan_layout(gen, {}, {"gen_workers": [7]}, 3)
    with pytest.raises(GCOnlyConfigError, match="with gen_on_manager"):
        plan_layout(gen, {}, {"gen_workers": [1], "gen_on_manager": True}, 3)
