"""The stand-in for the Globus Compute web service, shared by every test that puts the real SDK in the loop.

``gc_service`` (session scope) is registered in ``tests/conftest.py``, so that ``tests/realendpoint`` and the node-loss
tests of ``tests/slurm`` share one stand-in: ``python -m tests.realendpoint.service`` on ``localhost:5000``, the address
of the SDK's built-in ``local`` environment.  The port is fixed, so one session at a time holds it (a lock file).
``local_services`` points a test's SDK at it (``GLOBUS_SDK_ENVIRONMENT=local`` and a client identity it knows).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gc
import json
import pathlib
import signal
import subprocess
import sys
import time
import typing as t
import urllib.error
import urllib.request
import uuid

import pytest

from tests.broker import Broker

ROOT = pathlib.Path(__file__).resolve().parents[1]
SERVICE_URL = "http://localhost:5000"
SERVICE_LOCK = pathlib.Path("/run/libe-gc-gc-service.lock")


SDK_SOCKET_WARNINGS = (
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning",
    "ignore:unclosed <socket.socket:ResourceWarning",
)
"""The SDK Executor's result watcher stops its pika ioloop but never closes it; pika leaves the loop's
wake-up socket pair to the garbage collector, which warns whenever it collects one during a test."""


@dataclasses.dataclass(frozen=True)
class GCService:
    """The running stand-in and the identity it serves."""

    url: str
    client_id: str
    client_secret: str
    broker: Broker
    log: pathlib.Path

    def env(self, compute_dir: pathlib.Path) -> dict[str, str]:
        """The variables a user sets to reach these services with a client identity."""
        return {
            "GLOBUS_SDK_ENVIRONMENT": "local",
            "GLOBUS_SDK_SERVICE_URL_AUTH": f"{self.url}/",
            "GLOBUS_COMPUTE_CLIENT_ID": self.client_id,
            "GLOBUS_COMPUTE_CLIENT_SECRET": self.client_secret,
            "GLOBUS_COMPUTE_USER_DIR": str(compute_dir),
        }

    def get(self, path: str) -> t.Any:
        """GET a route of the stand-in; return the decoded JSON."""
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as resp:
            return json.loads(resp.read())


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/version", timeout=2):
            return True
    except (urllib.error.URLError, OSError):
        return False


def stop_process(proc: subprocess.Popen[t.Any], timeout: float = 20) -> None:
    """SIGTERM ``proc`` (then SIGKILL) and reap it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


@contextlib.contextmanager
def running_service(broker: Broker, folder: pathlib.Path, lock_wait: float = 600) -> t.Iterator[GCService]:
    """Start the stand-in for the Globus Compute web service on localhost:5000; stop it afterwards.

    Parameters
    ----------
    broker : Broker
        The virtual host the stand-in sends tasks through.
    folder : pathlib.Path
        Where its log goes.
    lock_wait : float
        Seconds to wait for another session holding the port (a lock file) to let it go.

    Yields
    ------
    GCService
        Once the stand-in answers.
    """
    with contextlib.ExitStack() as stack:
        lock = stack.enter_context(SERVICE_LOCK.open("w"))
        deadline = time.monotonic() + lock_wait
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test session held the Globus Compute stand-in's port for {lock_wait:.0f} s")
                time.sleep(2)
        if _answers(SERVICE_URL):
            pytest.fail(f"something else answers on {SERVICE_URL}; the stand-in needs that address")
        service = GCService(SERVICE_URL, str(uuid.uuid4()), uuid.uuid4().hex, broker, folder / "service.log")
        # As the docs tell a user to start it (from the repository root, so that this ``tests`` package is found).
        cmd = [sys.executable, "-m", "tests.realendpoint.service", "--amqp-url", broker.url, "--port", "5000"]
        cmd += ["--client-id", service.client_id, "--client-secret", service.client_secret]
        log = stack.enter_context(service.log.open("w"))
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, close_fds=True
        )
        stack.callback(stop_process, proc)
        deadline = time.monotonic() + 60
        while not _answers(SERVICE_URL):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Globus Compute stand-in did not start:\n{service.log.read_text()}")
            time.sleep(0.2)
        yield service


@pytest.fixture(scope="session")
def gc_service(rabbitmq: Broker, tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[GCService]:
    """The stand-in for the Globus Compute web service on localhost:5000 (one session at a time)."""
    with running_service(rabbitmq, tmp_path_factory.mktemp("gc-service")) as service:
        yield service


def stop_result_watchers() -> None:
    """Stop the SDK's result watchers (each holds an AMQP connection) while the services still answer.

    The SDK keeps a task group's result watcher after ``Executor.shutdown``, until the interpreter exits.
    (A function of its own: no local name of the caller keeps the last one alive.)
    """
    from globus_compute_sdk.sdk.executor import _RESULT_WATCHERS

    for watcher in list(_RESULT_WATCHERS.values()):
        watcher.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def local_services(gc_service: GCService, tmp_path: pathlib.Path) -> t.Iterator[dict[str, str]]:
    """This test's environment points the SDK at the stand-in, with the client identity it knows."""
    env = gc_service.env(tmp_path / "sdk")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        yield env
        stop_result_watchers()
        # Collect the stopped watchers' wake-up sockets now, while this test's warning filters apply; left to the
        # collection at the end of the session they fail it (no test's filters apply there).
        gc.collect()
