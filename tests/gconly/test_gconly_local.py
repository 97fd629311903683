"""GC-only mode on the real engine (local endpoint): history, conventions, failures, endings, processes."""

from __future__ import annotations

import itertools
import os
import re
import threading
import time
import typing as t

import numpy as np
import psutil
import pytest
from libensemble.libE import libE as stock_libE

import bundle
from bundle.gconly import ERROR_DIR, GCOnlySpecs, SimSerializationError
from bundle.gconly.launch import run_gconly
from tests.conftest import descendants
from tests.gconly import gens, sims
from tests.gconly.helpers import PY_ENGINE, run_specs, uniform_specs

STATS_LINE = re.compile(
    r"^Worker +(\d+): sim_id +([\d_-]+): sim Time: (\d+\.\d{3}) "
    r"Start: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} End: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} Status: (.+)$"
)


@pytest.fixture
def in_tmp(tmp_path: t.Any, monkeypatch: pytest.MonkeyPatch) -> t.Any:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def gc_run(specs: dict[str, t.Any], nworkers: int, **gc: t.Any) -> t.Any:
    gc.setdefault("user_endpoint_config", PY_ENGINE)
    return run_specs(specs, nworkers, **gc)


def sim_stats(path: t.Any) -> list[tuple[int, str, str]]:
    lines = (path / "libE_stats.txt").read_text().splitlines()
    found = []
    for line in lines:
        m = STATS_LINE.match(line)
        if m:
            found.append((int(m.group(1)), m.group(2), m.group(4)))
    return found


def test_same_history_as_stock_libensemble(in_tmp: t.Any) -> None:
    n, sim_max = 3, 40
    gc_dir, stock_dir = in_tmp / "gc", in_tmp / "stock"
    gc_dir.mkdir()
    stock_dir.mkdir()
    os.chdir(gc_dir)
    specs = uniform_specs(sims.six_hump, n, sim_max)
    H_gc, _, flag_gc, errors, _ = gc_run(specs, n)
    os.chdir(stock_dir)
    specs = uniform_specs(sims.six_hump, n, sim_max, endpoint="")
    H_st, _, flag_st = stock_libE(
        specs["sim_specs"],
        specs["gen_specs"],
        specs["exit_criteria"],
        specs["persis_info"],
        specs["alloc_specs"],
        {"nworkers": n + 1, "comms": "local"},  # the generator on worker 1, as GC-only places it; n sim workers
    )
    assert flag_gc == flag_st == 0 and not errors
    done_gc, done_st = H_gc[H_gc["sim_ended"]], H_st[H_st["sim_ended"]]
    assert len(done_gc) == len(done_st) == sim_max
    assert np.array_equal(np.sort(done_gc["sim_id"]), np.sort(done_st["sim_id"]))
    order_gc, order_st = np.argsort(done_gc["sim_id"]), np.argsort(done_st["sim_id"])
    assert np.array_equal(done_gc["x"][order_gc], done_st["x"][order_st])
    assert np.array_equal(done_gc["f"][order_gc], done_st["f"][order_st])
    # libE_stats.txt: same line format as the stock workers', one line per sim, virtual worker ids 2..n+1
    gc_lines, st_lines = sim_stats(gc_dir), sim_stats(stock_dir)
    assert len(gc_lines) == len(st_lines) == sim_max
    assert {w for w, _, _ in gc_lines} <= set(range(2, n + 2))
    assert {s for _, _, s in gc_lines} == {s for _, _, s in st_lines} == {"Completed"}
    assert (gc_dir / "ensemble.log").exists()


@pytest.mark.parametrize(
    ("sim_f", "expect"),
    [
        (sims.six_hump, None),
        (sims.trivial, lambda x: np.ones(len(x))),
        (sims.bare, lambda x: 2 * x[:, 0]),
        (sims.with_status, lambda x: x[:, 0] + 1),
        (sims.counting, lambda x: x[:, 0]),
    ],
    ids=["3-tuple", "H_o+persis_info", "bare-H_o", "H_o+calc_status", "persis_info-merged"],
)
def test_return_conventions(in_tmp: t.Any, sim_f: t.Any, expect: t.Any) -> None:
    n, sim_max = 2, 12
    H, persis_info, flag, errors, _ = gc_run(uniform_specs(sim_f, n, sim_max), n)
    assert flag == 0 and not errors
    done = H[H["sim_ended"]]
    assert len(done) == sim_max
    if expect is not None:
        assert np.allclose(done["f"], expect(done["x"]))
    else:
        assert np.all(np.isfinite(done["f"]))
    if sim_f is sims.counting:
        # each virtual worker's persis_info came back from the endpoint and was merged
        assert sum(persis_info[w].get("calls", 0) for w in range(2, n + 2)) == sim_max
        for w in range(2, n + 2):
            assert set(persis_info[w].get("workers", [])) <= {w}
    statuses = {s for _, _, s in sim_stats(in_tmp)}
    assert statuses == ({"Completed"} if sim_f in (sims.six_hump, sims.with_status) else {"Not set"})


def test_failures_are_task_failed_and_the_run_goes_on(in_tmp: t.Any) -> None:
    n, sim_max = 2, 16
    ens = bundle.Ensemble(
        libE_specs={"nworkers": n},
        gc_specs={"user_endpoint_config": PY_ENGINE},
        **uniform_specs(sims.fails_on_negative, n, sim_max),
    )
    H, _, flag = ens.run()
    assert flag == 0
    done = H[H["sim_ended"]]
    assert len(done) == sim_max
    neg = done["x"][:, 0] < 0
    assert neg.any() and (~neg).any()
    assert np.all(np.isnan(done["f"][neg]))
    assert np.allclose(done["f"][~neg], done["x"][~neg, 0])
    failed_ids = sorted(int(i) for i in done["sim_id"][neg])
    assert sorted(ens.sim_errors) == failed_ids
    for sim_id in failed_ids:
        text = (in_tmp / ERROR_DIR / f"sim_{sim_id}.txt").read_text()
        assert "negative x" in text and "ValueError" in text
        assert text.strip() == ens.sim_errors[sim_id].strip()
    stats = sim_stats(in_tmp)
    assert sum(s == "Task Failed during run" for _, _, s in stats) == len(failed_ids)
    log = (in_tmp / "ensemble.log").read_text()
    assert "failed (TASK_FAILED)" in log and "negative x" in log


def test_dict_return_is_a_failed_sim_with_libensembles_hint(in_tmp: t.Any) -> None:
    H, _, flag, errors, _ = gc_run(uniform_specs(sims.returns_dict, 1, 3), 1)
    assert flag == 0 and len(errors) == 3
    assert all("SimSpecs.simulator" in e for e in errors.values())
    assert np.all(np.isnan(H["f"][H["sim_ended"]]))


def test_self_reported_status_is_kept(in_tmp: t.Any) -> None:
    H, _, flag, errors, _ = gc_run(uniform_specs(sims.self_failed, 2, 10), 2)
    assert flag == 0 and not errors  # the sim returned normally, reporting its own status
    neg = H["x"][H["sim_ended"], 0] < 0
    statuses = [s for _, _, s in sim_stats(in_tmp)]
    assert statuses.count("Task Failed during run") == int(neg.sum())
    assert statuses.count("Completed") == int((~neg).sum())


def test_kill_canceled_sims_cancels_in_flight_futures(in_tmp: t.Any) -> None:
    # sim 0 returns at once, sims 1 and 2 would take 120 s: the generator cancels them when sim 0 returns
    specs = uniform_specs(sims.sleep_if_positive, 3, 10)
    specs["gen_specs"] = {
        "gen_f": gens.cancel_slow,
        "persis_in": ["f", "x", "sim_id"],
        "out": [("x", float, (2,))],
        "user": {"x0": [-1.0, 1.0, 1.0]},
    }
    specs["alloc_specs"]["user"] = {"async_return": True}
    start = time.monotonic()
    H, _, flag, errors, _ = run_gconly(
        specs["sim_specs"],
        specs["gen_specs"],
        specs["exit_criteria"],
        specs["persis_info"],
        specs["alloc_specs"],
        {"nworkers": 4, "kill_canceled_sims": True},
        gc_specs=GCOnlySpecs(user_endpoint_config=PY_ENGINE),
    )
    elapsed = time.monotonic() - start
    assert flag == 0 and not errors
    assert elapsed < 60, "killed sims (120 s each) must not be waited for"
    slow = H["x"][:3, 0] > 0
    assert list(slow) == [False, True, True]
    assert np.all(H["kill_sent"][:3][slow]) and not np.any(H["kill_sent"][:3][~slow])
    assert np.all(H["cancel_requested"][:3][slow]) and np.all(H["sim_ended"][:3])
    assert np.all(np.isnan(H["f"][:3][slow]))
    assert np.allclose(H["f"][:3][~slow], H["x"][:3, 0][~slow])
    statuses = [s for _, _, s in sim_stats(in_tmp)]
    assert statuses.count("Manager killed task") == int(slow.sum())


def test_wallclock_max_with_long_sims_in_flight(in_tmp: t.Any) -> None:
    specs = uniform_specs(sims.sleepy, 2, 100)
    specs["sim_specs"]["user"] = {"sleep": 120.0}
    specs["exit_criteria"] = {"wallclock_max": 8}
    start = time.monotonic()
    H, _, flag, errors, _ = gc_run(specs, 2)
    elapsed = time.monotonic() - start
    assert flag == 2
    assert elapsed < 60, "the run must end at wallclock_max, not when the 120 s sims do"
    assert H["sim_started"].sum() == 2 and H["sim_ended"].sum() == 0 and not errors


@pytest.mark.parametrize("criterion", ["gen_max", "stop_val"])
def test_other_exit_criteria_with_sims_in_flight(in_tmp: t.Any, criterion: str) -> None:
    n = 4
    specs = uniform_specs(sims.sleepy, n, 0)
    specs["sim_specs"]["user"] = {"sleep": 0.3}
    specs["exit_criteria"] = {"gen_max": 10} if criterion == "gen_max" else {"stop_val": ("f", -1.0)}
    H, _, flag, errors, _ = gc_run(specs, n)
    assert flag == 0 and not errors
    if criterion == "gen_max":
        assert len(H) >= 10
    else:
        assert np.any(H["f"][H["sim_ended"]] <= -1.0)
    assert not np.any(H["sim_started"] & ~H["sim_ended"]), "in-flight sims are received before the end"


def test_gest_api_simulator(in_tmp: t.Any) -> None:
    from gest_api.vocs import VOCS
    from libensemble.alloc_funcs.start_only_persistent import only_persistent_gens
    from libensemble.specs import AllocSpecs, ExitCriteria, GenSpecs, LibeSpecs, SimSpecs

    vocs = VOCS(variables={"x0": [-1.0, 1.0], "x1": [-2.0, 2.0]}, objectives={"f": "MINIMIZE"})
    ens = bundle.Ensemble(
        libE_specs=LibeSpecs(nworkers=3),
        gen_specs=GenSpecs(generator=gens.DictSampler(vocs), batch_size=3, vocs=vocs),
        sim_specs=SimSpecs(simulator=sims.gest_simulator, vocs=vocs, globus_compute_endpoint="local"),
        alloc_specs=AllocSpecs(alloc_f=only_persistent_gens),
        exit_criteria=ExitCriteria(sim_max=12),
        gc_specs=GCOnlySpecs(user_endpoint_config=PY_ENGINE),
    )
    H, _, flag = ens.run()
    assert flag == 0 and not ens.sim_errors
    done = H[H["sim_ended"]]
    assert len(done) == 12
    assert np.allclose(done["f"], done["x0"] ** 2 + done["x1"] ** 2)
    assert np.any(done["f"] != 0)


def test_no_worker_processes_during_a_run(in_tmp: t.Any) -> None:
    specs = uniform_specs(sims.sleepy, 3, 12)
    specs["sim_specs"]["user"] = {"sleep": 0.3}
    samples: list[set[tuple[int, str]]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            now = set()
            for proc in descendants(os.getpid()):
                try:
                    now.add((proc.pid, " ".join(proc.cmdline()) + " | " + proc.name()))
                except psutil.Error:
                    continue
            samples.append(now)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        H, _, flag, _, _ = gc_run(specs, 3)
    finally:
        stop.set()
        sampler.join()
    assert flag == 0 and H["sim_ended"].sum() == 12
    seen = {cmd for s in samples for _, cmd in s}
    assert any(re.search(r"interchange|worker_pool", c) for c in seen), "the engine's processes should have been seen"
    # A process seen in two samples in a row lived for 0.1 s or more (a worker lives for the run); shorter
    # ones are the fork-then-exec of subprocess calls (e.g. the `ps -p` Parsl's LocalProvider polls with).
    lasting = {cmd for a, b in itertools.pairwise(samples) for cmd in {c for _, c in a & b}}
    others = {c for c in lasting if not re.search(r"interchange|worker_pool|process_worker_pool|\bps -p\b", c)}
    assert not others, f"unexpected child processes during a GC-only run: {others}"


def test_batching_gives_the_same_history(in_tmp: t.Any) -> None:
    n, sim_max = 8, 48
    one = gc_run(uniform_specs(sims.six_hump, n, sim_max), n)
    os.rename("libE_stats.txt", "libE_stats_1.txt")
    four = gc_run(uniform_specs(sims.six_hump, n, sim_max), n, batch_size=4)
    for res in (one, four):
        assert res.exit_flag == 0 and not res.sim_errors
    a, b = one.H[one.H["sim_ended"]], four.H[four.H["sim_ended"]]
    assert np.array_equal(a["sim_id"], b["sim_id"])
    assert np.array_equal(a["x"], b["x"]) and np.array_equal(a["f"], b["f"])
    assert one.tasks == sim_max
    assert four.tasks < sim_max, "batching must pack several sims into one task"
    assert len(sim_stats(in_tmp)) == sim_max  # still one stats line per sim


def test_batched_failures_stay_per_sim(in_tmp: t.Any) -> None:
    res = gc_run(uniform_specs(sims.fails_on_negative, 6, 24), 6, batch_size=3)
    done = res.H[res.H["sim_ended"]]
    neg = done["x"][:, 0] < 0
    assert neg.any() and (~neg).any()
    assert sorted(res.sim_errors) == sorted(int(i) for i in done["sim_id"][neg])
    assert np.allclose(done["f"][~neg], done["x"][~neg, 0]) and np.all(np.isnan(done["f"][neg]))
    assert all("negative x" in e for e in res.sim_errors.values())


def test_multi_row_work_orders(in_tmp: t.Any) -> None:
    from libensemble.alloc_funcs.give_sim_work_first import give_sim_work_first
    from libensemble.gen_funcs.sampling import uniform_random_sample

    sim_specs = {"sim_f": sims.six_hump, "in": ["x"], "out": [("f", float)], "globus_compute_endpoint": "local"}
    gen_specs = {
        "gen_f": uniform_random_sample,
        "out": [("x", float, (2,)), ("priority", float)],
        "user": {"gen_batch_size": 12, "lb": np.array([-3.0, -2.0]), "ub": np.array([3.0, 2.0])},
    }
    alloc_specs = {"alloc_f": give_sim_work_first, "user": {"give_all_with_same_priority": True}}
    from libensemble.tools import add_unique_random_streams

    H, _, flag = bundle.libE(
        sim_specs,
        gen_specs,
        {"sim_max": 12},
        add_unique_random_streams({}, 3),
        alloc_specs,
        {"nworkers": 2},
        gc_specs={"user_endpoint_config": PY_ENGINE},
    )
    assert flag == 0
    done = H[H["sim_ended"]]
    assert len(done) >= 12 and np.all(np.isfinite(done["f"]))
    labels = [label for _, label, _ in sim_stats(in_tmp)]
    assert any("-" in label for label in labels), f"expected multi-row work orders, got {labels}"


def test_unserializable_input_fails_before_submission(in_tmp: t.Any) -> None:
    specs = uniform_specs(sims.six_hump, 1, 2)
    specs["sim_specs"]["user"] = {"handle": sims.Unpicklable()}
    with pytest.raises(SimSerializationError, match=r"sim_specs\['user'\]") as info:
        gc_run(specs, 1)
    assert info.value.what == "sim_specs['user']"
    assert not (in_tmp / "libE_stats.txt").exists()


@pytest.mark.slow
def test_lost_task_is_task_failed_and_the_run_goes_on(in_tmp: t.Any) -> None:
    # the engine notices a dead worker within about 30 s; with seed 7 sims 2 and 3 die
    res = gc_run(uniform_specs(sims.dies_on_negative, 2, 4), 2)
    assert res.exit_flag == 0
    done = res.H[res.H["sim_ended"]]
    lost = done["x"][:, 0] < 0
    assert len(done) == 4 and lost.any() and (~lost).any()
    assert sorted(res.sim_errors) == sorted(int(i) for i in done["sim_id"][lost])
    assert np.all(np.isnan(done["f"][lost])) and np.allclose(done["f"][~lost], done["x"][~lost, 0])
    statuses = [s for _, _, s in sim_stats(in_tmp)]
    assert statuses.count("Task Failed during run") == int(lost.sum())


def test_the_local_engines_start_up_counts_against_no_exit_criterion(in_tmp: t.Any) -> None:
    """The engine starts (seconds, more under load) before the manager: a short wallclock_max still runs sims."""
    n = 2
    specs = uniform_specs(sims.six_hump, n, 100_000)
    specs["exit_criteria"] = {"wallclock_max": 4}
    H, _, _, errors, _ = gc_run(specs, n)
    assert not errors and H["sim_ended"].sum() > 0


def test_two_persistent_generators_run_on_workers_1_and_2_as_in_a_stock_run(in_tmp: t.Any) -> None:
    """libEnsemble's test_persistent_uniform_gen_decides_stop asks for num_active_gens 2; both must run."""
    from libensemble.alloc_funcs.start_only_persistent import only_persistent_gens
    from libensemble.tools import add_unique_random_streams

    n = 3
    specs = uniform_specs(sims.six_hump, n, 24)
    specs["alloc_specs"] = {"alloc_f": only_persistent_gens, "user": {"num_active_gens": 2, "async_return": True}}
    specs["persis_info"] = add_unique_random_streams({}, n + 3)
    H, _, flag, errors, _ = gc_run(specs, n)
    assert flag == 0 and not errors
    assert set(np.unique(H["gen_worker"]).tolist()) == {1, 2}
    assert set(H["sim_worker"][H["sim_ended"]].tolist()) <= {3, 4, 5}
    assert not [th.name for th in threading.enumerate() if "_qcomm_main" in th.name and th.is_alive()]
