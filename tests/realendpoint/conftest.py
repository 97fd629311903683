"""The real endpoint in the loop: RabbitMQ, a stand-in for the Globus Compute web service, and the real daemon.

Session fixtures, each started only when a test asks for it:

* ``rabbitmq`` (``tests/broker.py``, shared with ``tests/contract``): the broker (``.ci/rabbitmq.sh up`` when it
  is not running; root only) and a virtual host of this session's own, deleted at the end (with every queue in it).
* ``gc_service`` (``tests/gcservice.py``, shared with the node-loss tests of ``tests/slurm``): the stand-in
  (``python -m tests.realendpoint.service``) on ``localhost:5000``, the address of the SDK's built-in ``local``
  environment.  The port is fixed, so one session at a time holds it (a lock file).
* ``real_endpoint``: what a site user does, run as a subprocess: ``libe-gc endpoint configure NAME
  --template local --contact-email ...`` then ``globus-compute-endpoint start NAME`` (in the
  foreground, in a session of its own); ready once the service sees its heartbeat.  At the end
  ``globus-compute-endpoint stop NAME``, and a check that no process of it (daemon, user endpoints,
  interchanges, worker pools) and no consumer on its queues is left.
* ``slurm_endpoint`` (package scope): the same from the ``slurm`` template, its blocks run by the 3-node Slurm of
  ``tests/slurm`` (``slurm`` fixture); shared by this folder's modules and stopped after the last of them, then
  no Slurm job of it may be left.  ``test_real_endpoint_slurm_stopped.py`` stops it mid-run, last.

Tests reach the services through the environment a user would set (``local_services`` fixture):
``GLOBUS_SDK_ENVIRONMENT=local``, ``GLOBUS_SDK_SERVICE_URL_AUTH`` (the stand-in answers Globus Auth's
client-credentials login) and ``GLOBUS_COMPUTE_CLIENT_ID`` / ``_SECRET``.

Without root (and with ``CI`` unset) these tests skip, saying why; under ``CI`` a missing tool fails them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
import urllib.error
import urllib.request

import psutil
import pytest

from tests.gcservice import SDK_SOCKET_WARNINGS, GCService
from tests.slurm.conftest import slurm

__all__ = ["slurm"]  # the Slurm cluster fixture of tests/slurm, for the endpoints whose blocks it runs

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of this folder talks to the real SDK: tolerate its unclosed wake-up sockets (only those)."""
    here = pathlib.Path(__file__).parent
    for item in items:
        if here in pathlib.Path(str(item.fspath)).parents:
            for spec in SDK_SOCKET_WARNINGS:
                item.add_marker(pytest.mark.filterwarnings(spec))


@dataclasses.dataclass
class RealEndpoint:
    """A template-capable endpoint started with ``globus-compute-endpoint start``."""

    name: str
    endpoint_id: str
    ep_dir: pathlib.Path
    compute_dir: pathlib.Path
    env: dict[str, str]
    proc: subprocess.Popen[t.Any]
    service: GCService
    started_at: float

    def stop(self, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``globus-compute-endpoint stop NAME``, as its administrator would (the fixture's own stop then finds it
        stopped and only checks that nothing of it is left)."""
        return subprocess.run(
            [str(BIN / "globus-compute-endpoint"), "stop", self.name],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def user_endpoints(self) -> list[psutil.Process]:
        """The user endpoint processes the daemon started (its children)."""
        try:
            children = psutil.Process(self.proc.pid).children()
        except psutil.Error:
            return []
        return [p for p in children if "uep." in " ".join(_cmdline(p))]

    def processes(self) -> list[psutil.Process]:
        """Every live process of this endpoint: the daemon, its descendants, and blocks run from its folders."""
        found: dict[int, psutil.Process] = {}
        with contextlib.suppress(psutil.Error):
            daemon = psutil.Process(self.proc.pid)
            if daemon.status() != psutil.STATUS_ZOMBIE:
                found[daemon.pid] = daemon
            for child in daemon.children(recursive=True):
                found[child.pid] = child
        marker = str(self.compute_dir)
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if marker in " ".join(proc.cmdline()):
                    found[proc.pid] = proc
                    for child in proc.children(recursive=True):
                        found[child.pid] = child
        return [p for p in found.values() if _alive(p)]


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def run_cli(cmd: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a command line as a user would, failing the test with its output if it fails."""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def wait_online(service: GCService, endpoint_id: str, proc: subprocess.Popen[t.Any], log: pathlib.Path) -> None:
    """Wait until the service reports the endpoint online (its first heartbeat arrived)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"globus-compute-endpoint start exited ({proc.returncode}):\n{log.read_text()}")
        with contextlib.suppress(urllib.error.URLError):
            if service.get(f"/v2/endpoints/{endpoint_id}/status")["status"] == "online":
                return
        time.sleep(0.5)
    pytest.fail(f"endpoint {endpoint_id} did not come online within 120 s:\n{log.read_text()}")


@contextlib.contextmanager
def endpoint_from_template(
    gc_service: GCService,
    home: pathlib.Path,
    name: str,
    template: str,
    options: t.Sequence[str] = (),
    multinode_blocks: bool = False,
) -> t.Iterator[RealEndpoint]:
    """What a site user does: ``libe-gc endpoint configure NAME --template T`` then ``globus-compute-endpoint start``.

    Parameters
    ----------
    gc_service : GCService
        The running stand-in.
    home : pathlib.Path
        A folder for the endpoint (its ``GLOBUS_COMPUTE_USER_DIR``) and the daemon's output.
    name : str
        The endpoint's name.
    template : str
        The bundled template.
    options : sequence of str
        ``key=value`` endpoint defaults (``--option``).
    multinode_blocks : bool
        Whether the tests run blocks of several nodes, whose worker pools' ``pymp-*`` folders may stay in the
        endpoint's ``TMPDIR``; otherwise nothing may.

    Yields
    ------
    RealEndpoint
        Once the service sees the daemon's heartbeat.  Afterwards ``globus-compute-endpoint stop NAME``, and
        checks that no process of it is left, nothing consumes its queues, and its blocks left nothing in its own
        ``TMPDIR``.
    """
    compute_dir = home / "globus_compute"
    # A TMPDIR of the endpoint's own (short, as a node's is), to see what its blocks leave in it.
    tmpdir = pathlib.Path(tempfile.mkdtemp(prefix="ept-", dir="/tmp"))
    env = {**os.environ, **gc_service.env(compute_dir), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["TMPDIR"] = str(tmpdir)
    cmd = [str(BIN / "libe-gc"), "endpoint", "configure", name, "--template", template]
    cmd += [arg for option in options for arg in ("--option", option)]
    # As root, `globus-compute-endpoint start` refuses to run without a contact address in config.yaml.
    run_cli([*cmd, "--contact-email", "root@localhost"], env)
    ep_dir = compute_dir / name
    # As root the daemon starts user endpoints with a cleared environment (HOME=/root); the endpoint's
    # user_environment.yaml, the administrator's file for this, keeps their folders beside the endpoint's.
    (ep_dir / "user_environment.yaml").write_text(f"GLOBUS_COMPUTE_USER_DIR: {compute_dir}\nTMPDIR: {tmpdir}\n")
    # What `libe-gc endpoint start NAME` checks first (credentials, the service answering) holds here too.
    run_cli([str(BIN / "libe-gc"), "endpoint", "start", name, "--check-only"], env)
    log_path = home / f"{name}-start.log"
    started = time.monotonic()
    with log_path.open("w") as log:
        # Foreground, in a session of its own: the daemon ends by signalling its whole process group.
        proc = subprocess.Popen(
            [str(BIN / "globus-compute-endpoint"), "start", name],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    # Reaped as soon as it exits: `globus-compute-endpoint stop` waits for the daemon's pid to vanish, and
    # a child of this process that nobody reaps stays a zombie under that pid (the stop then times out).
    threading.Thread(target=proc.wait, name="endpoint-reaper", daemon=True).start()
    endpoint: RealEndpoint | None = None
    try:
        deadline = time.monotonic() + 120
        while not (ep_dir / "endpoint.json").is_file():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"globus-compute-endpoint start did not register:\n{log_path.read_text()}")
            time.sleep(0.2)
        endpoint_id = json.loads((ep_dir / "endpoint.json").read_text())["endpoint_id"]
        wait_online(gc_service, endpoint_id, proc, log_path)
        print(f"\nendpoint {name} ({endpoint_id}) online {time.monotonic() - started:.1f} s after start")
        endpoint = RealEndpoint(name, endpoint_id, ep_dir, compute_dir, env, proc, gc_service, started)
        yield endpoint
    finally:
        before = endpoint.processes() if endpoint else []
        titles = " ".join(" ".join(_cmdline(p)) for p in before)  # user endpoint ids, while they run
        stop = subprocess.run(
            [str(BIN / "globus-compute-endpoint"), "stop", name],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )  # also when a test stopped it already ("Endpoint not active", exit code 0)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        _gone, left = psutil.wait_procs(before, timeout=60)
        left += [p for p in endpoint.processes() if p not in left] if endpoint else []
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.kill()
    left_in_tmp = sorted(str(p.relative_to(tmpdir)) for p in tmpdir.rglob("*"))
    shutil.rmtree(tmpdir, ignore_errors=True)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert not left, "processes of the endpoint left after globus-compute-endpoint stop:\n" + "\n".join(
        " ".join(_cmdline(p)) or p.name() for p in left
    )
    # The daemon's command queue and its user endpoints' task queues: nobody may still listen on them
    # (the broker drops a consumer when it notices its connection closed: allow it a moment).
    ep_id = endpoint.endpoint_id if endpoint else "-"
    ueps = re.findall(rf"uep\.{ep_id}\.([0-9a-f-]{{36}})", titles)
    ours = {f"{ep_id}.commands", *(f"{uep}.tasks" for uep in ueps)}
    deadline = time.monotonic() + 30
    while True:
        queues = gc_service.broker.queues()
        consumed = {q: n for q, n in queues.items() if n and q in ours}
        if not consumed or time.monotonic() > deadline:
            break
        time.sleep(2)
    holders = subprocess.run(["ss", "-tnpH", "dport", "=", ":5672"], capture_output=True, text=True).stdout
    assert not consumed, f"queues still consumed after the endpoint stopped: {consumed}\nAMQP clients:\n{holders}"
    # What the blocks left in TMPDIR: nothing from a one-node block (the templates' prelude gives it a folder of its
    # own, removed when the block ends); a block of several nodes keeps the node's TMPDIR, so its worker pool's
    # multiprocessing folder (pymp-*, a socket) stays on the first node.
    if multinode_blocks:
        assert all(re.fullmatch(r"pymp-\w+(/listener-\w+)?", p) for p in left_in_tmp), left_in_tmp
    else:
        assert left_in_tmp == [], f"left in the endpoint's TMPDIR by its blocks: {left_in_tmp}"


@pytest.fixture(scope="session")
def real_endpoint(gc_service: GCService, tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[RealEndpoint]:
    """An endpoint configured from the ``local`` template and started with ``globus-compute-endpoint start``."""
    with endpoint_from_template(gc_service, tmp_path_factory.mktemp("site"), "libe-gc-local", "local") as endpoint:
        yield endpoint


SLURM_SITE = ["partition=debug", "walltime=00:10:00", "network_interface=lo"]
"""What the site's administrator sets with ``--option`` when configuring the ``slurm`` endpoint (users may override)."""


@pytest.fixture(scope="package")
def slurm_endpoint(
    slurm: None, gc_service: GCService, tmp_path_factory: pytest.TempPathFactory
) -> t.Iterator[RealEndpoint]:
    """An endpoint configured from the ``slurm`` template, its blocks run by the 3-node Slurm of ``tests/slurm``.

    Shared by the modules of this folder and stopped after the last of them (before any other folder's tests
    run, so its idle blocks never hold nodes that others need); afterwards no Slurm job of it is left.
    """
    from tests.slurm.conftest import wait_no_jobs

    home = tmp_path_factory.mktemp("slurm-site")
    with endpoint_from_template(
        gc_service, home, "libe-gc-slurm", "slurm", SLURM_SITE, multinode_blocks=True
    ) as endpoint:
        yield endpoint
    assert wait_no_jobs() == [], "Slurm jobs of the endpoint's blocks were left"
