"""The endpoint a node-loss test runs on, behind one small interface.

A node-loss test needs of its endpoint only: how to reach it (an executor for executor mode, the
endpoint and ``GCOnlySpecs`` fields for GC-only mode), which Slurm jobs are its blocks, where its
worker pools write their logs (``<run dir>/<executor label>/block-<block id>/<manager id>/``, which
maps the manager a ``ManagerLost`` error names to its block), and how to stop it.
:class:`LocalSlurmEndpoint` is the local endpoint rendering the ``slurm`` template in this process;
:class:`RealSlurmEndpoint` is the endpoint daemon configured from the same template and started with
``globus-compute-endpoint start`` (``tests/realendpoint``), reached through the SDK as at a site.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import time
import typing as t

from bundle import GlobusComputeExecutor
from bundle.endpoints.session import GCSession

if t.TYPE_CHECKING:
    from tests.realendpoint.conftest import RealEndpoint

TEMPLATE = "slurm"


class EndpointUnderTest(t.Protocol):
    """What the node-loss tests use of the endpoint they run on."""

    name: str
    endpoint: str
    """The ``endpoint`` argument of the executor and of ``sim_specs.globus_compute_endpoint``."""
    run_dir: pathlib.Path
    """The folder under which the endpoint's engine writes its submit scripts and worker pool logs."""

    def executor(self, options: dict[str, t.Any]) -> GlobusComputeExecutor:
        """An executor sending tasks to this endpoint with template options ``options``."""

    def gc_specs(self, options: dict[str, t.Any]) -> dict[str, t.Any]:
        """``GCOnlySpecs`` fields for GC-only sims on this endpoint with template options ``options``."""

    def stop(self) -> None:
        """Stop what the tests started on the endpoint (engines, block jobs)."""


class LocalSlurmEndpoint:
    """The local endpoint with the ``slurm`` template, its engine run from ``run_dir``.

    Parameters
    ----------
    run_dir : pathlib.Path
        The engine's run directory (submit scripts, worker pool logs).
    start_timeout : float
        Seconds a block may take to start.
    """

    name = "local"

    def __init__(self, run_dir: pathlib.Path, start_timeout: float) -> None:
        self.run_dir = run_dir
        self.endpoint = f"local:{TEMPLATE}"
        self._local = {"run_dir": run_dir, "start_timeout": start_timeout}

    def executor(self, options: dict[str, t.Any]) -> GlobusComputeExecutor:
        return GlobusComputeExecutor(self.endpoint, user_endpoint_config=options, local_options=dict(self._local))

    def gc_specs(self, options: dict[str, t.Any]) -> dict[str, t.Any]:
        return {"user_endpoint_config": options, "local_options": dict(self._local)}

    def stop(self) -> None:
        GCSession.clear()


class RealSlurmEndpoint:
    """The endpoint daemon configured from the ``slurm`` template (``libe-gc endpoint configure``), as a site runs it.

    Tasks reach it by its UUID through the SDK, the stand-in web service and RabbitMQ; the daemon starts
    a user endpoint for each ``user_endpoint_config`` and renders the template with it.  Its user
    endpoints' engines run from folders under the endpoint's ``GLOBUS_COMPUTE_USER_DIR``.

    Parameters
    ----------
    real : RealEndpoint
        The running daemon (``tests/realendpoint/conftest.py``), used by this test alone.
    """

    name = "real"

    def __init__(self, real: RealEndpoint) -> None:
        self.real = real
        self.endpoint = real.endpoint_id
        self.run_dir = real.compute_dir

    def executor(self, options: dict[str, t.Any]) -> GlobusComputeExecutor:
        return GlobusComputeExecutor(self.endpoint, template=TEMPLATE, user_endpoint_config=options)

    def gc_specs(self, options: dict[str, t.Any]) -> dict[str, t.Any]:
        return {"template": TEMPLATE, "user_endpoint_config": options, "result_timeout": 900}

    def stop(self) -> None:
        """``globus-compute-endpoint stop``: the daemon stops its user endpoints, which stop their blocks."""
        GCSession.clear(wait=True)
        done = self.real.stop()
        assert done.returncode == 0, done.stdout + done.stderr


def block_jobs(ep: EndpointUnderTest) -> list[tuple[str, str]]:
    """(job id, state) of the endpoint's block jobs still queued, running or completing.

    A block job is the endpoint's when its batch script lies under the endpoint's run directory.
    """
    out = subprocess.run(
        ["squeue", "--noheader", "--format=%i|%T|%o"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    root = str(ep.run_dir.resolve())
    jobs = []
    for line in out.splitlines():
        job, state, script = [*line.split("|", 2), "", ""][:3]
        if script.startswith(root):
            jobs.append((job, state))
    return jobs


def wait_no_block_jobs(ep: EndpointUnderTest, timeout: float = 90.0) -> list[tuple[str, str]]:
    """Wait until none of the endpoint's block jobs is queued, running or completing; return those left."""
    deadline = time.monotonic() + timeout
    left = block_jobs(ep)
    while left and time.monotonic() < deadline:
        time.sleep(1.0)
        left = block_jobs(ep)
    return left


LOST_MANAGER = re.compile(r"loss of manager (\S+) on host (\S+)")


def lost_manager(error: str) -> tuple[str, str]:
    """The manager id and host a ``ManagerLost`` error names."""
    match = LOST_MANAGER.search(error)
    assert match, f"the error does not name the lost worker pool: {error!r}"
    return match.group(1), match.group(2)


def block_of_manager(ep: EndpointUnderTest, manager: str) -> str:
    """The block id of the worker pool ``manager``, from its log folder ``block-<id>/<manager>``."""
    found = sorted({p.parent.name for p in ep.run_dir.rglob(manager) if p.parent.name.startswith("block-")})
    assert len(found) == 1, f"worker pool {manager} has no single log folder under {ep.run_dir}: {found}"
    return found[0].removeprefix("block-")


def accounting_answers() -> bool:
    """Whether Slurm accounting answers, as Parsl's SlurmProvider asks it (``sacct -X``)."""
    return subprocess.run(["sacct", "-X", "--noheader"], capture_output=True, timeout=30).returncode == 0


def sacct_fields(job: str, *fields: str) -> list[str]:
    """Fields of a job as Slurm accounting records them (``sacct -X``)."""
    out = subprocess.run(
        ["sacct", "-X", "--noheader", "--parsable2", "-j", job, f"--format={','.join(fields)}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.splitlines()
    assert out, f"sacct knows no job {job}"
    return out[0].split("|")


def block_of_job(job: str) -> str:
    """The block id a block job was submitted for (Parsl names it ``parsl.<label>.block-<id>.<time>``)."""
    (name,) = sacct_fields(job, "JobName%300")
    match = re.search(r"\.block-(\d+)\.", name)
    assert match, f"job {job} is not a block job: {name}"
    return match.group(1)


def job_started(job: str) -> float:
    """When a job started, as seconds since the epoch (Slurm records whole seconds)."""
    (start,) = sacct_fields(job, "Start")
    return time.mktime(time.strptime(start, "%Y-%m-%dT%H:%M:%S"))
