"""The local endpoint on the real engine: Python, ShellFunction and MPIFunction tasks."""

import ipaddress
import os
import socket

import psutil
import pytest
from globus_compute_sdk import MPIFunction, ShellFunction
from globus_compute_sdk.errors import TaskExecutionFailed
from globus_compute_sdk.serialize import ComputeSerializer

from bundle.endpoints.local import LocalEndpoint
from bundle.errors import ResourceSpecificationError
from bundle.wire.resource_spec import normalize_mpi_spec

ONE_RANK = {"num_nodes": 1, "ranks_per_node": 1, "num_ranks": 1}


def square_plus(x, *, plus=0):
    return x * x + plus


def where_am_i():
    import os
    import socket

    return socket.gethostname(), os.getpid(), os.environ.get("PARSL_MPI_PREFIX", "")


class Unpicklable:
    def __reduce__(self):
        raise TypeError("this object refuses to be pickled")


def raises_key_error(key):
    return {}[key]


def test_python_function_results(py_endpoint):
    futs = [py_endpoint.submit(square_plus, i, plus=1) for i in range(20)]
    assert [f.result(timeout=60) for f in futs] == [i * i + 1 for i in range(20)]
    assert all(f.task_id for f in futs)
    host, pid, _ = py_endpoint.submit(where_am_i).result(timeout=60)
    assert host == socket.gethostname()
    assert pid != os.getpid()


def cube(x, *, plus=0):
    return x**3 + plus


def test_registered_function_reuses_the_function_id(py_endpoint):
    fid = py_endpoint.register_function(cube)
    assert py_endpoint.submit_to_registered_function(fid, args=(3,), kwargs={"plus": 2}).result(timeout=60) == 29
    # submit() finds the same registration; a second registration is refused as the SDK does
    assert py_endpoint.submit(cube, 2).result(timeout=60) == 8
    assert py_endpoint.register_function(cube, function_id=fid) == fid
    with pytest.raises(ValueError, match="already registered"):
        py_endpoint.register_function(cube)
    with pytest.raises(ValueError, match="unknown function id"):
        py_endpoint.submit_to_registered_function("not-registered")


def test_remote_exception_surfaces_like_the_sdk(py_endpoint):
    fut = py_endpoint.submit(raises_key_error, "missing-key")
    with pytest.raises(TaskExecutionFailed) as ei:
        fut.result(timeout=60)
    text = str(ei.value)
    assert "KeyError: 'missing-key'" in text
    assert "Traceback (most recent call last)" in text
    assert "raises_key_error" in text


def test_shell_function(py_endpoint):
    res = py_endpoint.submit(ShellFunction("echo out-{word}; echo err-{word} >&2; exit 3"), word="zz").result(
        timeout=60
    )
    assert res.returncode == 3
    assert res.stdout.strip() == "out-zz"
    assert "err-zz" in res.stderr


def test_unpicklable_arguments_fail_at_submit(py_endpoint):
    from globus_compute_sdk.errors import SerializationError

    with pytest.raises(SerializationError):
        py_endpoint.submit(square_plus, Unpicklable())


def test_python_engine_fails_an_mpi_spec_as_a_real_endpoint_does(py_endpoint):
    """HTEX takes no MPI keys: the task fails on the engine, as on an endpoint, not at submit."""
    py_endpoint.resource_specification = {"num_ranks": 2}
    try:
        fut = py_endpoint.submit(square_plus, 1)
    finally:
        py_endpoint.resource_specification = None
    with pytest.raises(TaskExecutionFailed, match="InvalidResourceSpecification"):
        fut.result(timeout=60)


@pytest.mark.parametrize("ranks", [1, 2])
def test_mpi_function_ranks_and_hosts(mpi_endpoint, ranks):
    mpi_endpoint.resource_specification = normalize_mpi_spec({"num_ranks": ranks})
    # ranks report to rank 0 over MPI, which prints alone: output of several ranks can interleave mid-line
    program = (
        "from mpi4py import MPI; c = MPI.COMM_WORLD; "
        "rows = c.gather((c.rank, c.size, MPI.Get_processor_name())); "
        "[print('rank', r, 'of', n, h) for r, n, h in (rows or [])]"
    )
    cmd = f'python -c "{program}"'
    try:
        res = mpi_endpoint.submit(MPIFunction(cmd)).result(timeout=120)
    finally:
        mpi_endpoint.resource_specification = None
    assert res.returncode == 0, res.stderr
    lines = sorted(ln for ln in res.stdout.splitlines() if ln.startswith("rank"))
    assert lines == [f"rank {r} of {ranks} {socket.gethostname()}" for r in range(ranks)]


def test_spec_reaches_the_engine_unchanged_and_normalizing_is_the_submitters_job(mpi_endpoint):
    """``{"num_nodes": 1, "num_ranks": 2}`` gets Parsl's float ``-ppn 2.0`` on a real endpoint, so here too."""
    try:
        mpi_endpoint.resource_specification = {"num_nodes": 1, "num_ranks": 2}
        raw = mpi_endpoint.submit(MPIFunction("true; echo $PARSL_MPI_PREFIX")).result(timeout=120)
        mpi_endpoint.resource_specification = normalize_mpi_spec({"num_nodes": 1, "num_ranks": 2})
        normal = mpi_endpoint.submit(MPIFunction("true; echo $PARSL_MPI_PREFIX")).result(timeout=120)
    finally:
        mpi_endpoint.resource_specification = None
    assert raw.stdout.strip() == "mpiexec -n 2 -ppn 2.0 -hosts localhost"
    assert normal.stdout.strip() == "mpiexec -n 2 -ppn 2 -hosts localhost"


def test_python_and_shell_on_mpi_engine_need_a_spec(mpi_endpoint):
    mpi_endpoint.resource_specification = None
    with pytest.raises(TaskExecutionFailed, match="MPI mode requires"):
        mpi_endpoint.submit(where_am_i).result(timeout=120)
    mpi_endpoint.resource_specification = ONE_RANK
    try:
        host, _, prefix = mpi_endpoint.submit(where_am_i).result(timeout=120)
        res = mpi_endpoint.submit(ShellFunction("echo $PARSL_NUM_RANKS")).result(timeout=120)
    finally:
        mpi_endpoint.resource_specification = None
    assert host == socket.gethostname()
    assert prefix.strip() == "mpiexec -n 1 -ppn 1 -hosts localhost"
    assert res.stdout.strip() == "1"


def test_uneven_ranks_are_refused_on_the_submitting_side():
    with pytest.raises(ResourceSpecificationError, match="divide evenly"):
        normalize_mpi_spec({"num_nodes": 2, "num_ranks": 3})


def test_interchange_listens_on_loopback_only(mpi_endpoint):
    host = next(iter(mpi_endpoint._hosts.values()))
    pid = host.engine.executor.interchange_proc.pid
    listening = [c for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening, "the interchange should listen for workers"
    for conn in listening:
        addr = ipaddress.ip_address(conn.laddr.ip)
        addr = getattr(addr, "ipv4_mapped", None) or addr
        assert addr.is_loopback, f"interchange listens on {conn.laddr.ip}:{conn.laddr.port}"
    assert host.engine.encrypted


def test_sdk_surface_properties():
    ep = LocalEndpoint(user_endpoint_config={"engine_type": "GlobusComputeEngine"})
    try:
        assert ep.task_group_id
        with pytest.raises(TypeError, match="JSON-serializable"):
            ep.resource_specification = {"x": object()}
        with pytest.raises(TypeError, match="must be of type dict"):
            ep.user_endpoint_config = "max_workers=2"  # type: ignore[assignment]
        with pytest.raises(ValueError, match="no option"):
            ep.user_endpoint_config = {"bogus": 1}
        assert isinstance(ep.serializer, ComputeSerializer)
    finally:
        ep.shutdown()
    with pytest.raises(RuntimeError, match="shutdown"):
        ep.submit(square_plus, 1)


def test_allocation_node_file_is_used_instead_of_the_generated_one(tmp_path, monkeypatch):
    """Inside a PBS allocation the scheduler's node file decides the hosts (here: this host three times)."""
    nodefile = tmp_path / "PBS_NODEFILE"
    nodefile.write_text("localhost\n" * 3)
    monkeypatch.setenv("PBS_NODEFILE", str(nodefile))
    monkeypatch.delenv("SLURM_NODELIST", raising=False)
    ep = LocalEndpoint(user_endpoint_config={"max_workers_per_block": 1}, run_dir=tmp_path / "run")
    try:
        # one slot would be generated for max_workers_per_block=1; three nodes only exist in the allocation's file
        ep.resource_specification = {"num_nodes": 3, "ranks_per_node": 1, "num_ranks": 3}
        res = ep.submit(MPIFunction("true; echo $PARSL_MPI_PREFIX")).result(timeout=120)
        assert res.stdout.split() == ["mpiexec", "-n", "3", "-ppn", "1", "-hosts", "localhost,localhost,localhost"]
        assert not list((tmp_path / "run").rglob("*.nodefile")), "the template must not write its own node file"
    finally:
        ep.shutdown(wait=False, cancel_futures=True)
