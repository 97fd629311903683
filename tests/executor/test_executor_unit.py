"""GlobusComputeExecutor without an engine: construction, apps, resource words, dry runs, cloud submissions."""

from __future__ import annotations

import pickle
import sys
from unittest import mock

import globus_compute_sdk
import pytest
from libensemble.executors.executor import Executor, ExecutorException

from bundle import GlobusComputeExecutor, GlobusComputeTask
from bundle.endpoints.session import GCSession
from bundle.errors import ResourceSpecificationError, TemplateOptionError

EP = "5f0c6ae5-8d2c-4fb8-9f0a-1b0c7f6f2e11"


def _picklable_func(x: int) -> int:
    return x + 1


def test_becomes_the_libensemble_executor_and_pickles_without_clients():
    exctr = GlobusComputeExecutor("local", user_endpoint_config={"slots_per_node": 2})
    assert Executor.executor is exctr
    exctr.register_app(sys.executable, app_name="py")
    exctr.register_app("adder", app_name="add", pyobj=_picklable_func)
    assert GCSession.cached() == 0, "no endpoint may start before the first submit"
    clone = pickle.loads(pickle.dumps(exctr))
    assert clone.apps.keys() == exctr.apps.keys()
    assert clone.user_endpoint_config == {"slots_per_node": 2}
    assert clone.apps["add"].pyobj is _picklable_func
    # the worker identity travels per thread, and a copy starts with none
    exctr.set_worker_info(comm=None, workerid=3)
    assert exctr.workerID == 3
    assert pickle.loads(pickle.dumps(exctr)).workerID is None


def test_bad_template_option_is_refused_at_construction_naming_it():
    with pytest.raises(TemplateOptionError, match="slots_per_node"):
        GlobusComputeExecutor("local", user_endpoint_config={"slots_per_node": 0})
    with pytest.raises(TemplateOptionError, match="no option 'nodez'"):
        GlobusComputeExecutor(EP, template="local", user_endpoint_config={"nodez": 1})


@pytest.mark.parametrize(
    ("words", "spec"),
    [
        ({}, {"num_nodes": 1, "ranks_per_node": 1, "num_ranks": 1}),
        ({"num_procs": 2}, {"num_nodes": 1, "ranks_per_node": 2, "num_ranks": 2}),
        ({"procs_per_node": 3}, {"num_nodes": 1, "ranks_per_node": 3, "num_ranks": 3}),
        (
            {"extra_args": "-n 2 --bind-to core"},
            {"num_nodes": 1, "ranks_per_node": 2, "num_ranks": 2, "launcher_options": "--bind-to core"},
        ),
        ({"num_procs": 4, "extra_args": "-n 2"}, {"num_nodes": 1, "ranks_per_node": 4, "num_ranks": 4}),
    ],
)
def test_resource_words_map_to_one_integer_spec_and_a_known_launch_line(words, spec):
    exctr = GlobusComputeExecutor("local")
    exctr.register_app("/opt/app/forces.x", app_name="forces")
    task = exctr.submit(app_name="forces", app_args="1000 10", dry_run=True, **words)
    assert isinstance(task, GlobusComputeTask)
    assert task.resource_specification == spec
    assert all(type(task.resource_specification[k]) is int for k in ("num_nodes", "ranks_per_node", "num_ranks"))
    n, ppn = spec["num_ranks"], spec["ranks_per_node"]
    extra = f" {spec['launcher_options']}" if "launcher_options" in spec else ""
    assert task.runline == f"mpiexec -n {n} -ppn {ppn} -hosts localhost{extra} /opt/app/forces.x 1000 10"
    assert task.state == "FINISHED" and task.finished and task.success
    assert GCSession.cached() == 0, "a dry run must not start an endpoint"


def test_default_resource_specification_and_srun_launch_line_for_a_cloud_endpoint():
    exctr = GlobusComputeExecutor(EP, resource_specification={"num_ranks": 4, "ranks_per_node": 2})
    exctr.register_app("/apps/forces.x", app_name="forces")
    task = exctr.submit(app_name="forces", dry_run=True)
    assert task.resource_specification == {"num_nodes": 2, "ranks_per_node": 2, "num_ranks": 4}
    assert task.runline == "mpiexec -n 4 -ppn 2 -hosts <node1>,<node2> /apps/forces.x"
    srun = GlobusComputeExecutor(EP, template="local", user_endpoint_config={"mpi_launcher": "srun"})
    srun.register_app("/apps/forces.x", app_name="forces")
    line = srun.submit(app_name="forces", num_procs=2, dry_run=True).runline
    assert line == "srun --ntasks 2 --ntasks-per-node 2 --nodelist <node1> --nodes 1 /apps/forces.x"


@pytest.mark.parametrize(
    ("words", "message"),
    [
        ({"num_procs": 3, "num_nodes": 2}, "does not divide evenly"),
        ({"num_procs": 0}, "positive integer"),
        ({"num_procs": 4, "num_nodes": 1, "procs_per_node": 2}, "disagrees"),
        ({"num_procs": 3, "num_nodes": 2, "procs_per_node": 2}, r"num_procs=3 disagrees with .* procs_per_node=2"),
        ({"num_nodes": 2}, "at most 1 node"),
        ({"extra_args": "-n"}, "needs a value"),
    ],
)
def test_impossible_requests_fail_at_submit_with_what_to_change(words, message):
    exctr = GlobusComputeExecutor("local")
    exctr.register_app("/opt/app/forces.x", app_name="forces")
    with pytest.raises(ResourceSpecificationError, match=message):
        exctr.submit(app_name="forces", **words)
    assert GCSession.cached() == 0


def test_unknown_app_and_unsupported_options_fail_clearly():
    exctr = GlobusComputeExecutor("local")
    exctr.register_app("/opt/app/forces.x", app_name="forces")
    with pytest.raises(ExecutorException, match="not found in registry"):
        exctr.submit(app_name="nope")
    with pytest.raises(ExecutorException, match="Default sim app is not set"):
        exctr.submit(calc_type="sim")
    with pytest.raises(ExecutorException, match="Either app_name, calc_type or func"):
        exctr.submit()
    for opts, word in [
        ({"machinefile": "hosts"}, "machinefile"),
        ({"env_script": "/x.sh"}, "worker_init"),
        ({"mpi_runner_type": "srun"}, "mpi_launcher"),
        ({"walltime": 0}, "walltime"),
    ]:
        with pytest.raises(ExecutorException, match=word):
            exctr.submit(app_name="forces", dry_run=True, **opts)
    for opts in ({"num_gpus": 1}, {"auto_assign_gpus": True}):  # the template declares no GPUs
        with pytest.raises(ResourceSpecificationError, match="declares none; set gpus_per_node"):
            exctr.submit(app_name="forces", dry_run=True, **opts)
    with pytest.raises(ExecutorException, match="does not exist"):
        exctr.submit(app_name="forces")  # the local endpoint shares this filesystem: the path is checked
    with pytest.raises(ExecutorException, match="must be callable"):
        exctr.register_app("x", app_name="x", pyobj=42)  # type: ignore[arg-type]


def test_mpi_app_refused_on_a_globus_compute_engine_and_serial_apps_get_one_rank():
    exctr = GlobusComputeExecutor("local", user_endpoint_config={"engine_type": "GlobusComputeEngine"})
    exctr.register_app("/bin/true", app_name="t")
    with pytest.raises(ResourceSpecificationError, match="cannot launch MPI apps"):
        exctr.submit(app_name="t", dry_run=True)
    exctr.register_app("/bin/true", app_name="serial", mpi=False)
    task = exctr.submit(app_name="serial", dry_run=True)
    assert task.resource_specification is None and task.runline == "/bin/true"
    mpi = GlobusComputeExecutor("local")
    mpi.register_app("/bin/true", app_name="serial", mpi=False)
    task = mpi.submit(app_name="serial", app_args="-x", dry_run=True)
    assert task.resource_specification == {"num_nodes": 1, "ranks_per_node": 1, "num_ranks": 1}
    assert task.runline == "/bin/true -x"
    with pytest.raises(ResourceSpecificationError, match="MPI apps only"):
        mpi.submit(app_name="serial", num_procs=2, dry_run=True)


def test_cloud_endpoint_submissions_match_the_real_sdk_signatures(tmp_path, monkeypatch):
    real = globus_compute_sdk.Executor
    instances: list[mock.Mock] = []

    def make(*a, **k):
        inst = mock.create_autospec(real, instance=True)
        inst.register_function.return_value = "fn-run-app"
        inst.resource_specification = None
        instances.append(inst)
        return inst

    fake = mock.create_autospec(real, side_effect=make)
    monkeypatch.chdir(tmp_path)
    with mock.patch("globus_compute_sdk.Executor", fake):
        exctr = GlobusComputeExecutor(EP, template="local", user_endpoint_config={"mpi_launcher": "mpiexec"})
        exctr.register_app("/apps/forces.x", app_name="forces")
        exctr.submit(app_name="forces", app_args="10 10 10", num_procs=1)
        inst = instances[0]
        seen_specs: list[dict] = []
        inst.submit_to_registered_function.side_effect = lambda *a, **k: seen_specs.append(
            dict(inst.resource_specification)
        )
        task = exctr.submit(app_name="forces", app_args="10 10 10", num_procs=2, walltime=30)
    assert fake.call_count == 1
    fake.assert_called_once_with(endpoint_id=EP, user_endpoint_config={"mpi_launcher": "mpiexec"})
    inst.register_function.assert_called_once()  # the app runner: once per endpoint, not per task
    assert inst.submit_to_registered_function.call_count == 2
    call = inst.submit_to_registered_function.call_args
    assert call.args == ("fn-run-app",)
    cmd, is_mpi, workdir, out, err, walltime, marker, lines, env = call.kwargs["args"]
    assert cmd == "/apps/forces.x 10 10 10" and is_mpi is True
    assert env == {"LIBENSEMBLE_SIM_DIR": "."}
    assert workdir == str(tmp_path) and out == task.stdout and err == task.stderr
    assert walltime == 30 and marker == task.marker and lines == 1000
    assert seen_specs == [{"num_nodes": 1, "ranks_per_node": 2, "num_ranks": 2}]
    assert inst.resource_specification is None, "the shared executor's own spec is restored after each submit"


def test_remote_workdir_mirrors_the_sim_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exctr = GlobusComputeExecutor(EP, remote_workdir="/scratch/run1")
    exctr.register_app("/apps/forces.x", app_name="forces")
    (tmp_path / "sim3").mkdir()
    monkeypatch.chdir(tmp_path / "sim3")
    assert exctr.submit(app_name="forces", dry_run=True).workdir == "/scratch/run1/sim3"
    assert exctr.submit(app_name="forces", dry_run=True, workdir="/elsewhere").workdir == "/elsewhere"


def test_app_arguments_are_split_on_whitespace_as_mpiexecutor_does_with_no_shell_in_between():
    exctr = GlobusComputeExecutor(EP)
    exctr.register_app("/apps/a.x", app_name="a")
    task = exctr.submit(app_name="a", app_args='{"k": 1} x*y;z $HOME', dry_run=True)
    assert task.runline == 'mpiexec -n 1 -ppn 1 -hosts <node1> /apps/a.x {"k": 1} x*y;z $HOME'


def test_python_apps_on_a_cloud_endpoint_use_the_endpoints_python(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exctr = GlobusComputeExecutor(EP)
    exctr.register_app("/home/me/sim.py", app_name="sim")
    assert exctr.submit(app_name="sim", dry_run=True).runline.endswith(" python3 /home/me/sim.py")
    local = GlobusComputeExecutor("local")
    local.register_app("/home/me/sim.py", app_name="sim")
    assert local.submit(app_name="sim", dry_run=True).runline.endswith(f" {sys.executable} /home/me/sim.py")


def test_remote_workdir_never_escapes_its_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exctr = GlobusComputeExecutor(EP, remote_workdir="/remote/run1")
    exctr.register_app("/apps/a.x", app_name="a")
    outside = tmp_path.parent / "elsewhere-sim7"
    outside.mkdir(exist_ok=True)
    monkeypatch.chdir(outside)
    assert exctr.submit(app_name="a", dry_run=True).workdir == "/remote/run1/elsewhere-sim7"


def _script_function(source: str, name: str, **globals_: object):
    """A function whose module is __main__, as the calling script's are."""
    namespace: dict[str, object] = {"__name__": "__main__", **globals_}
    exec(source, namespace)
    return namespace[name]


def test_a_python_task_is_fixed_at_submit_and_a_shipping_failure_is_a_submit_time_error(tmp_path, monkeypatch):
    """The SDK serializes later, in its own thread: it gets a copy made in submit; what cannot go raises there."""
    from bundle.errors import TaskSerializationError

    real = globus_compute_sdk.Executor
    inst = mock.create_autospec(real, instance=True)
    inst.register_function.return_value = "fn-run-python"
    inst.resource_specification = None
    fake = mock.create_autospec(real, return_value=inst)
    monkeypatch.chdir(tmp_path)
    table = [1.0, 2.0]
    scaled = _script_function("def scaled(x, extra):\n    return sum(TABLE) * x + sum(extra)\n", "scaled", TABLE=table)
    fact = _script_function(
        "def make():\n    def fact(n):\n        return 1 if n < 2 else n * fact(n - 1)\n    return fact\n", "make"
    )()
    unbound = _script_function("def make():\n    def f(x):\n        return g(x)\n    return f\n    g = abs\n", "make")()
    try:
        with mock.patch("globus_compute_sdk.Executor", fake):
            exctr = GlobusComputeExecutor(EP, template="local")
            extra = [10.0]
            task = exctr.submit(func=scaled, args=(2.0, extra))
            table.append(100.0)  # after submit, before the SDK's thread would serialize
            extra.append(100.0)
            fn, args, kwargs, _ = inst.submit_to_registered_function.call_args.kwargs["args"]
            assert fn(*args, **kwargs) == 3.0 * 2.0 + 10.0, "the task sees the values of submit time"
            assert task.state != "FAILED_TO_START"
            # a nested recursive function travels (it once ran out of stack here and failed to start)
            rec = exctr.submit(func=fact, args=(5,))
            fn, args, kwargs, _ = inst.submit_to_registered_function.call_args.kwargs["args"]
            assert rec.state != "FAILED_TO_START" and fn(*args) == 120
            # what cannot be shipped is the caller's error at submit: no task, fail-fast untouched
            before = len(exctr.list_of_tasks)
            with pytest.raises(TaskSerializationError, match=r"reads 'g' from its enclosing function.*no value yet"):
                exctr.submit(func=unbound, args=(1,))
            assert len(exctr.list_of_tasks) == before
            assert inst.submit_to_registered_function.call_count == 2
    finally:
        GCSession.clear()


SCRIPT = "set -e\nmkdir -p run_{n}\ncd run_{n}\nexport OMP_NUM_THREADS=2\n$PARSL_MPI_PREFIX /apps/forces.x 10\n"


def test_a_multi_line_mpi_script_goes_as_written_with_the_launch_where_the_prefix_is(tmp_path, monkeypatch):
    real = globus_compute_sdk.Executor
    inst = mock.create_autospec(real, instance=True)
    inst.register_function.return_value = "fn-run-app"
    inst.resource_specification = None
    monkeypatch.chdir(tmp_path)
    GCSession.clear()  # this module keeps endpoints across tests: an earlier test's stand-in may be cached
    with mock.patch("globus_compute_sdk.Executor", mock.create_autospec(real, side_effect=lambda *a, **k: inst)):
        exctr = GlobusComputeExecutor(EP, template="local", user_endpoint_config={"mpi_launcher": "mpiexec"})
        dry = exctr.submit(func=globus_compute_sdk.MPIFunction(SCRIPT), num_procs=4, dry_run=True)
        assert dry.runline == SCRIPT.replace("$PARSL_MPI_PREFIX", "mpiexec -n 4 -ppn 4 -hosts <node1>")
        task = exctr.submit(func=globus_compute_sdk.MPIFunction(SCRIPT), num_procs=4, walltime=60)
    cmd, is_mpi, _, out, _, walltime, _, _, env, gpus, script = inst.submit_to_registered_function.call_args.kwargs[
        "args"
    ]
    # ShellFunction formats its command with str.format: the braces travel doubled, the script otherwise as written
    assert cmd == SCRIPT.replace("{", "{{").replace("}", "}}") and cmd.format() == SCRIPT
    assert (is_mpi, script, gpus, walltime, out) == (True, True, None, 60, task.stdout)
    assert env == {"LIBENSEMBLE_SIM_DIR": "."} and task.kind == "mpi" and task.app_line == SCRIPT


def test_scripts_without_a_launch_place_or_with_app_words_are_refused():
    exctr = GlobusComputeExecutor("local")
    with pytest.raises(ExecutorException, match=r"write \$PARSL_MPI_PREFIX before the app"):
        exctr.submit(func=globus_compute_sdk.MPIFunction("cd run\n./app"), dry_run=True)
    with pytest.raises(ExecutorException, match="put its arguments in the script"):
        exctr.submit(func=globus_compute_sdk.MPIFunction(SCRIPT), app_args="1 2", dry_run=True)
    serial = exctr.submit(func=globus_compute_sdk.ShellFunction("cd /tmp && ls"), dry_run=True)
    assert (serial.kind, serial.runline, serial.resource_specification) == (
        "shell",
        "cd /tmp && ls",
        {"num_nodes": 1, "ranks_per_node": 1, "num_ranks": 1},
    )


def _size_probe(data: object) -> int:
    return 0


def test_python_task_arguments_over_the_10_mib_limit_are_refused_before_submitting(tmp_path, monkeypatch):
    import numpy as np

    from bundle.errors import PayloadTooLargeError

    real = globus_compute_sdk.Executor
    inst = mock.create_autospec(real, instance=True)
    inst.register_function.return_value = "fn-run-python"
    inst.resource_specification = None
    inst.serializer = globus_compute_sdk.serialize.ComputeSerializer()
    monkeypatch.chdir(tmp_path)
    GCSession.clear()  # this module keeps endpoints across tests: an earlier test's stand-in may be cached
    with mock.patch("globus_compute_sdk.Executor", mock.create_autospec(real, side_effect=lambda *a, **k: inst)):
        exctr = GlobusComputeExecutor(EP, template="local", user_endpoint_config={"engine_type": "GlobusComputeEngine"})
        with pytest.raises(PayloadTooLargeError) as info:
            exctr.submit(func=_size_probe, args=(np.zeros(1_000_000),))  # 8 MB raw, 10.7 MB serialized
        assert info.value.size > info.value.limit == 10_485_760 and "_size_probe" in str(info.value)
        inst.submit_to_registered_function.assert_not_called()
        exctr.submit(func=_size_probe, args=(np.zeros(700_000),))
        inst.submit_to_registered_function.assert_called_once()
