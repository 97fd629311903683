"""GC-only building blocks without an engine: normalization, failed outputs, batch runner, specs, stats."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from globus_compute_sdk.serialize import ComputeSerializer
from libensemble.message_numbers import TASK_FAILED, UNSET_TAG, WORKER_DONE

from bundle.gconly import GCOnlyConfigError, GCOnlySpecs, SimOutputError
from bundle.gconly.normalize import failed_output, normalize_sim_output
from bundle.gconly.remote import BATCH_FUNCTION_NAME, make_batch_function
from bundle.gconly.stats import stats_line

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


def test_batch_runner_is_sent_by_value() -> None:
    """The endpoint needs sim_f's module, not this package: load it with ``bundle`` unimportable."""
    payload = ComputeSerializer().serialize(make_batch_function(np.sqrt))
    code = (
        "import sys; sys.modules['bundle'] = None\n"
        "from globus_compute_sdk.serialize import ComputeSerializer\n"
        f"fn = ComputeSerializer().deserialize({payload!r})\n"
        "print(fn([(4.0,), (9.0,)])[1][1])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3.0"


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
