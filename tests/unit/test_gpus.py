"""GPU requests checked on the submitting side, the per-rank wrapper, device claims, and the GPU template options."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid

import pytest
import yaml

from bundle import GlobusComputeExecutor
from bundle.endpoints.templates import get_template
from bundle.errors import BundleError, ResourceSpecificationError
from bundle.executor import gpus
from bundle.executor.gpus import claim_devices, layout_of, plan, portable_claim, wrapper_script

GPU4 = {"gpus_per_node": 4, "max_workers_per_block": 4}


def _exctr(options: dict | None = None, **kw) -> GlobusComputeExecutor:
    ex = GlobusComputeExecutor("local", user_endpoint_config=GPU4 if options is None else options, **kw)
    ex.register_app("/bin/true", app_name="app")
    ex.register_app("/bin/true", app_name="serial", mpi=False)
    return ex


@pytest.mark.parametrize(
    ("kwargs", "ranks", "rpn"),
    [
        ({"num_procs": 4, "num_gpus": 4}, 4, 4),
        ({"num_gpus": 2, "match_procs_to_gpus": True}, 2, 2),
        ({"auto_assign_gpus": True}, 1, 1),
        ({"num_procs": 2, "num_gpus": 4}, 2, 2),
    ],
)
def test_requests_keep_an_integer_mpi_spec_and_bind_through_the_wrapper(kwargs, ranks, rpn):
    task = _exctr().submit(app_name="app", dry_run=True, **kwargs)
    assert task.resource_specification == {"num_nodes": 1, "ranks_per_node": rpn, "num_ranks": ranks}
    assert f"-n {ranks} -ppn {rpn} -hosts localhost sh -c " in task.runline
    assert task.runline.endswith(f"{gpus.WRAPPER_NAME} /bin/true")
    assert 'export CUDA_VISIBLE_DEVICES="$d"' in task.runline


@pytest.mark.parametrize(
    ("options", "kwargs", "says"),
    [
        ({}, {"num_gpus": 1}, "declares none; set gpus_per_node"),
        (GPU4, {"num_gpus": 5}, r"ask for at most 4 GPU\(s\)"),
        (GPU4, {"num_gpus": 3, "num_procs": 2}, r"cannot share 3 GPU\(s\)"),
        (GPU4, {"num_gpus": 2, "num_procs": 3, "match_procs_to_gpus": True}, "drop num_procs or make it equal"),
        (GPU4, {"match_procs_to_gpus": True}, "needs GPUs"),
        (GPU4, {"num_gpus": -1}, "non-negative integer"),
        (GPU4, {"num_gpus": 2, "num_nodes": 2}, r"at most 1 node\(s\)"),
    ],
)
def test_impossible_requests_fail_at_submit_saying_what_to_change(options, kwargs, says):
    with pytest.raises(ResourceSpecificationError, match=says):
        _exctr(options).submit(app_name="app", dry_run=True, **kwargs)


def test_gpus_across_nodes_must_divide_and_fit_each_node():
    layout = gpus.GpuLayout(("0", "1", "2", "3"), "CUDA_VISIBLE_DEVICES", "wrapper")
    spec = {"num_nodes": 2, "ranks_per_node": 2, "num_ranks": 4}
    with pytest.raises(ResourceSpecificationError, match="does not divide across num_nodes=2"):
        plan(layout, "slurm", 3, False, False, spec, True)
    with pytest.raises(ResourceSpecificationError, match="ask for at most 8"):
        plan(layout, "slurm", 10, False, False, spec, True)
    gp, out = plan(layout, "slurm", 4, False, False, spec, True)
    assert gp is not None and (gp.per_node, gp.per_rank) == (2, 1) and out == spec


def test_python_tasks_and_unknown_templates_are_refused_with_the_way_out():
    from libensemble.executors.executor import ExecutorException

    with pytest.raises(ExecutorException, match="GC-only mode"):
        _exctr().submit(func=print, num_gpus=1, dry_run=True)
    cloud = GlobusComputeExecutor(uuid.uuid4())
    cloud.register_app("/bin/true", app_name="app")
    with pytest.raises(ResourceSpecificationError, match="pass template="):
        cloud.submit(app_name="app", num_gpus=1, dry_run=True)


def test_default_num_gpus_comes_from_the_executors_resource_specification():
    ex = _exctr(resource_specification={"num_ranks": 2, "num_gpus": 2})
    task = ex.submit(app_name="app", dry_run=True)
    assert task.resource_specification == {"num_nodes": 1, "ranks_per_node": 2, "num_ranks": 2}
    assert gpus.WRAPPER_NAME in task.runline
    assert gpus.WRAPPER_NAME not in _exctr().submit(app_name="app", dry_run=True).runline


def test_srun_templates_bind_through_the_launcher():
    ex = GlobusComputeExecutor(
        uuid.uuid4(), template="slurm", user_endpoint_config={"gpus_per_node": 4, "slots_per_node": 4}
    )
    ex.register_app("/bin/true", app_name="app")
    task = ex.submit(app_name="app", num_procs=2, num_gpus=2, dry_run=True)
    assert task.resource_specification["launcher_options"] == "--gpus-per-node=2 --gpus-per-task=1"
    assert task.runline.endswith("--gpus-per-node=2 --gpus-per-task=1 /bin/true")
    shared = ex.submit(app_name="app", num_procs=4, num_gpus=2, dry_run=True)
    assert shared.resource_specification["launcher_options"] == "--gpus-per-node=2"


@pytest.mark.parametrize(
    ("name", "options", "count", "env", "bind"),
    [
        (
            "perlmutter",
            {"account": "m1", "constraint": "gpu", "gpus_per_node": 4},
            4,
            "CUDA_VISIBLE_DEVICES",
            "launcher",
        ),
        ("frontier", {"account": "a1"}, 8, "ROCR_VISIBLE_DEVICES", "launcher"),
        ("polaris", {"account": "p1"}, 4, "CUDA_VISIBLE_DEVICES", "wrapper"),
        ("aurora", {"account": "p1"}, 12, "ZE_AFFINITY_MASK", "wrapper"),
    ],
)
def test_site_presets_declare_their_published_gpu_layout(name, options, count, env, bind):
    template = get_template(name)
    template.validate(options)
    launcher = template.schema["properties"]["mpi_launcher"].get("default", "mpiexec")
    layout = layout_of(template, options, launcher)
    assert layout is not None and (layout.gpus_per_node, layout.env, layout.bind) == (count, env, bind)


def test_aurora_binds_tiles_two_per_rank_when_asked():
    layout = layout_of(get_template("aurora"), {"account": "p1"}, "mpiexec")
    assert layout is not None and layout.devices[:3] == ("0.0", "0.1", "1.0")
    gp, _ = plan(layout, "aurora", 12, False, False, {"num_nodes": 1, "ranks_per_node": 6, "num_ranks": 6}, True)
    assert gp is not None and gp.per_rank == 2


def _wrapper_sees(script: str, env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in gpus.LOCAL_RANK_VARS and k != "SLURMD_NODENAME"}
    out = subprocess.run(
        ["sh", "-c", script, gpus.WRAPPER_NAME, "sh", "-c", 'echo "$CUDA_VISIBLE_DEVICES"'],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize(
    ("per_rank", "ranks_per_device", "rank", "expect"),
    [(1, 1, 0, "4"), (1, 1, 3, "7"), (2, 1, 1, "6,7"), (1, 2, 3, "5"), (4, 1, 0, "4,5,6,7")],
)
def test_wrapper_gives_each_local_rank_its_own_devices(per_rank, ranks_per_device, rank, expect):
    script = wrapper_script("CUDA_VISIBLE_DEVICES", per_rank, ranks_per_device)
    assert _wrapper_sees(script, {"MPI_LOCALRANKID": str(rank), "LIBE_GC_GPUS": "4,5,6,7"}) == expect


def test_wrapper_reads_the_launchers_rank_variable_first_and_the_nodes_own_devices():
    script = wrapper_script("CUDA_VISIBLE_DEVICES", 1, 1)
    env = {"PMI_LOCAL_RANK": "1", "SLURM_LOCALID": "0", "LIBE_GC_GPUS": "0,1"}
    assert _wrapper_sees(script, env) == "1"
    multi = {"SLURM_LOCALID": "1", "SLURMD_NODENAME": "n2", "LIBE_GC_GPUS": "0,1", "LIBE_GC_GPU_MAP": "n1=0,1 n2=2,3"}
    assert _wrapper_sees(script, multi) == "3"


def test_wrapper_fails_loudly_when_a_rank_has_no_device():
    script = wrapper_script("CUDA_VISIBLE_DEVICES", 1, 1)
    out = subprocess.run(
        ["sh", "-c", script, gpus.WRAPPER_NAME, "true"],
        env={**os.environ, "MPI_LOCALRANKID": "5", "LIBE_GC_GPUS": "0,1"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1 and "local rank 5" in out.stderr and "no GPU" in out.stderr


def test_claims_are_disjoint_and_a_claim_waits_for_a_release(tmp_path, monkeypatch):
    monkeypatch.setenv(gpus.LOCK_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("PARSL_MPI_NODELIST", "localhost")
    args = {
        "devices": ["0", "1", "2", "3"],
        "per_node": 2,
        "env": "ROCR_VISIBLE_DEVICES",
        "lock_dir_env": gpus.LOCK_DIR_ENV,
    }
    claim = portable_claim()
    env_a, held_a = claim(args)
    env_b, held_b = claim_devices(args)
    assert {env_a["ROCR_VISIBLE_DEVICES"], env_b["ROCR_VISIBLE_DEVICES"]} == {"0,1", "2,3"}
    got: list[str] = []

    def third() -> None:
        env_c, held_c = claim_devices(args)
        got.append(env_c["LIBE_GC_GPUS"])
        for fh in held_c:
            fh.close()

    waiter = threading.Thread(target=third)
    waiter.start()
    time.sleep(0.5)
    assert got == [], "no device is free: the third claim must wait"
    for fh in held_a:
        fh.close()
    waiter.join(timeout=10)
    assert got == [env_a["LIBE_GC_GPUS"]]
    for fh in held_b:
        fh.close()


def _engine(name: str, options: dict) -> dict:
    return yaml.safe_load(get_template(name).render(options))["engine"]


@pytest.mark.parametrize(
    ("name", "options", "expect"),
    [
        ("local", {"engine_type": "GlobusComputeEngine", "gpus_per_node": 2, "pin_workers_to_gpus": True}, 2),
        ("slurm", {"engine_type": "GlobusComputeEngine", "gpus_per_node": 4, "pin_workers_to_gpus": True}, 4),
        (
            "aurora",
            {"engine_type": "GlobusComputeEngine", "account": "p", "pin_workers_to_gpus": True},
            [f"{g}.{t}" for g in range(6) for t in range(2)],
        ),
    ],
)
def test_pin_workers_to_gpus_renders_available_accelerators(name, options, expect):
    assert _engine(name, options)["available_accelerators"] == expect
    assert "available_accelerators" not in _engine(name, {**options, "pin_workers_to_gpus": False})


def test_pin_workers_to_gpus_is_refused_for_the_mpi_engine():
    with pytest.raises((BundleError, ValueError), match="pin_workers_to_gpus"):
        get_template("local").validate({"gpus_per_node": 2, "pin_workers_to_gpus": True})


def test_doctor_reports_the_gpu_layout():
    from bundle.cli.doctor import OK, check_gpus

    found = check_gpus("polaris", {"account": "p", "slots_per_node": 4})
    assert found.status == OK and "4 GPU(s) per node [0,1,2,3] via CUDA_VISIBLE_DEVICES" in found.found
    assert "4 task(s) per node at once, 1 GPU(s) each" in found.found
    assert "no GPUs declared" in check_gpus("local", {}).found
    assert check_gpus("local", {"gpus_per_node": 2, "gpu_ids": ["0", "1", "2"]}).status == "fail"


def test_a_polaris_gpu_task_reaches_the_real_sdk_with_its_claim_and_an_integer_spec(tmp_path, monkeypatch):
    from unittest import mock

    import globus_compute_sdk

    from bundle.endpoints.session import GCSession

    real = globus_compute_sdk.Executor
    inst = mock.create_autospec(real, instance=True)
    inst.register_function.return_value = "fn-run-app"
    inst.resource_specification = None
    seen: list[dict] = []
    inst.submit_to_registered_function.side_effect = lambda *a, **k: seen.append(dict(inst.resource_specification))
    fake = mock.create_autospec(real, return_value=inst)
    monkeypatch.chdir(tmp_path)
    try:
        with mock.patch("globus_compute_sdk.Executor", fake):
            ex = GlobusComputeExecutor(uuid.uuid4(), template="polaris", user_endpoint_config={"account": "P"})
            ex.register_app("/apps/forces_gpu.x", app_name="forces")
            task = ex.submit(app_name="forces", num_gpus=4, match_procs_to_gpus=True)
        assert seen == [{"num_nodes": 1, "ranks_per_node": 4, "num_ranks": 4}], "no GPU key reaches Parsl"
        args = inst.submit_to_registered_function.call_args.kwargs["args"]
        gpu = args[-1]
        assert gpu["devices"] == ["0", "1", "2", "3"] and gpu["per_node"] == 4
        assert gpu["env"] == "CUDA_VISIBLE_DEVICES" and callable(gpu["claim"])
        assert gpu["claim"].__globals__.keys() <= {"__builtins__", "__name__"}, "sent by value"
        assert args[0].startswith("sh -c ") and gpus.WRAPPER_NAME in args[0]
        assert task.runline.startswith("mpiexec -n 4 -ppn 4 ")
    finally:
        GCSession.clear()


def test_multi_node_claims_take_nodes_in_one_order_and_map_each_node(tmp_path, monkeypatch):
    monkeypatch.setenv(gpus.LOCK_DIR_ENV, str(tmp_path))
    args = {
        "devices": ["0", "1", "2", "3"],
        "per_node": 2,
        "env": "CUDA_VISIBLE_DEVICES",
        "lock_dir_env": gpus.LOCK_DIR_ENV,
    }
    monkeypatch.setenv("PARSL_MPI_NODELIST", "n2,n1")
    env_a, held_a = claim_devices(args)
    monkeypatch.setenv("PARSL_MPI_NODELIST", "n1,n2")
    env_b, held_b = claim_devices(args)
    assert env_a["LIBE_GC_GPU_MAP"] == "n1=0,1 n2=0,1" and env_a["LIBE_GC_GPUS"] == "0,1"
    assert env_b["LIBE_GC_GPU_MAP"] == "n1=2,3 n2=2,3"
    for fh in held_a + held_b:
        fh.close()


def _claim_args(**extra) -> dict:
    return {
        "devices": ["0", "1"],
        "per_node": 2,
        "env": "CUDA_VISIBLE_DEVICES",
        "lock_dir_env": gpus.LOCK_DIR_ENV,
        **extra,
    }


def test_lock_folders_are_the_users_own_and_a_foreign_one_is_refused(tmp_path, monkeypatch):
    import stat
    import tempfile

    monkeypatch.delenv(gpus.LOCK_DIR_ENV, raising=False)
    monkeypatch.setenv("PARSL_MPI_NODELIST", "localhost")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the default folder goes under <tmp>
    _, held = claim_devices(_claim_args())
    root = tmp_path / f"libe-gc-gpus-{os.getuid()}"
    (node,) = list(root.iterdir())
    assert stat.S_IMODE(root.stat().st_mode) == 0o700 and stat.S_IMODE(node.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in node.iterdir()} == {0o600}
    for fh in held:
        fh.close()
    # a folder of ours left with wider permissions is narrowed
    root.chmod(0o755)
    _, held = claim_devices(_claim_args())
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for fh in held:
        fh.close()
    # a folder of that name made by someone else (who could hold every lock) is refused, saying what to do
    if os.getuid() != 0:
        pytest.skip("only root can make a folder that belongs to another user")
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o777)
    os.chown(foreign, 65534, 65534)
    monkeypatch.setenv(gpus.LOCK_DIR_ENV, str(foreign))
    with pytest.raises(PermissionError, match=f"not a folder of this user.*{gpus.LOCK_DIR_ENV}"):
        claim_devices(_claim_args())


def _holding_all(tmp_path, monkeypatch) -> list:
    monkeypatch.setenv(gpus.LOCK_DIR_ENV, str(tmp_path / "locks"))
    monkeypatch.setenv("PARSL_MPI_NODELIST", "localhost")
    _, held = claim_devices(_claim_args())
    return held


def test_a_claim_gives_up_after_its_bound_with_an_error_naming_the_node(tmp_path, monkeypatch):
    held = _holding_all(tmp_path, monkeypatch)
    outcome: list[BaseException] = []

    def claim() -> None:
        try:
            claim_devices(_claim_args(timeout=0.5))
        except BaseException as err:
            outcome.append(err)

    waiter = threading.Thread(target=claim, daemon=True)
    t0 = time.monotonic()
    waiter.start()
    waiter.join(timeout=20)
    for fh in held:
        fh.close()
    assert not waiter.is_alive(), "the claim must give up after its bound"
    (err,) = outcome
    assert isinstance(err, TimeoutError) and time.monotonic() - t0 < 5
    assert "no 2 free GPU(s)" in str(err) and "after 0.5 s" in str(err) and "slots_per_node" in str(err)
    ex = GlobusComputeExecutor(uuid.uuid4(), template="polaris", user_endpoint_config={"account": "P"})
    gp, _ = plan(ex.gpu_layout, "polaris", 1, False, False, {"num_nodes": 1, "ranks_per_node": 1, "num_ranks": 1}, True)
    assert gp is not None and gp.runner_args()["timeout"] == gpus.CLAIM_TIMEOUT
    assert gp.runner_args(120)["timeout"] == 120.0


def test_a_task_killed_while_it_waits_for_devices_returns_at_once(tmp_path, monkeypatch):
    """The runner's kill file ends the wait for devices, not only a wait that already succeeded."""
    from bundle.executor.remote import KILL_FILE, portable

    held = _holding_all(tmp_path, monkeypatch)
    run_app = portable("run_app")
    work = tmp_path / "task"
    work.mkdir()
    result: list = []
    args = {**_claim_args(timeout=60), "claim": portable_claim()}
    waiter = threading.Thread(
        target=lambda: result.append(run_app("true", False, str(work), "out", "err", None, "m1", 10, {}, args)),
        daemon=True,
    )
    waiter.start()
    time.sleep(0.5)
    assert not result, "every device is held: the task waits"
    t0 = time.monotonic()
    (work / KILL_FILE.format(marker="m1")).write_text("")
    waiter.join(timeout=20)
    for fh in held:
        fh.close()
    assert not waiter.is_alive() and time.monotonic() - t0 < 5
    assert result[0].returncode == 143 and result[0].exception_name == "KilledBeforeStart"


def test_short_and_fully_qualified_node_names_are_one_host_and_a_mismatch_fails(tmp_path, monkeypatch):
    monkeypatch.setenv(gpus.LOCK_DIR_ENV, str(tmp_path))
    args = {**_claim_args(), "devices": ["0", "1", "2", "3"]}
    monkeypatch.setenv("PARSL_MPI_NODELIST", "x1.cluster.org,x2.cluster.org")
    env_a, held_a = claim_devices(args)
    monkeypatch.setenv("PARSL_MPI_NODELIST", "x1,x2")  # the same nodes, named short: the same locks
    env_b, held_b = claim_devices(args)
    assert env_a["LIBE_GC_GPU_MAP"] == "x1=0,1 x2=0,1" and env_b["LIBE_GC_GPU_MAP"] == "x1=2,3 x2=2,3"
    for fh in held_a + held_b:
        fh.close()
    script = wrapper_script("CUDA_VISIBLE_DEVICES", 1, 1)
    multi = {"MPI_LOCALRANKID": "1", "LIBE_GC_GPUS": "0,1", "LIBE_GC_GPU_MAP": "x1=0,1 x2=2,3"}
    assert _wrapper_sees(script, {**multi, "SLURMD_NODENAME": "x2.cluster.org"}) == "3"
    assert _wrapper_sees(script, {**multi, "SLURMD_NODENAME": "x2"}) == "3"
    clean = {k: v for k, v in os.environ.items() if k not in gpus.LOCAL_RANK_VARS}
    out = subprocess.run(
        ["sh", "-c", script, gpus.WRAPPER_NAME, "true"],
        env={**clean, **multi, "SLURMD_NODENAME": "x9"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1 and "node x9 of local rank 1 is not among the nodes" in out.stderr, out.stderr
    # a one-node task needs no name: its ranks are all on its node
    assert _wrapper_sees(script, {"MPI_LOCALRANKID": "1", "LIBE_GC_GPUS": "4,5", "LIBE_GC_GPU_MAP": "n1=4,5"}) == "5"
