"""RabbitMQ on loopback for the tests that put a real endpoint's message path in the loop.

``rabbitmq`` (session scope) is registered in ``tests/conftest.py`` and used by ``tests/realendpoint`` (the endpoint
daemon and the stand-in web service) and ``tests/contract`` (the endpoint interchange on its own): the broker
(``.ci/rabbitmq.sh up`` when it is not running; root only) and a virtual host of this session's own, deleted at the
end with every queue in it; the broker is stopped again only if this session started it.

Without root (and with ``CI`` unset) the tests that ask for it skip, saying why; under ``CI`` a missing tool fails them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import subprocess
import time
import typing as t
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
RABBITMQ_SH = ROOT / ".ci" / "rabbitmq.sh"
NODE = "rabbit@localhost"


def in_ci() -> bool:
    """Whether the ``CI`` variable is set (to anything but a false value)."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> t.NoReturn:
    """Skip the test for ``reason``; under ``CI`` fail it instead."""
    if in_ci():
        pytest.fail(f"tests with a real RabbitMQ must run in CI, but {reason}", pytrace=False)
    pytest.skip(reason)


def rabbitmqctl(*args: str, timeout: float = 60) -> str:
    """Run ``rabbitmqctl -q -n rabbit@localhost ARGS``; return its output."""
    proc = subprocess.run(
        ["rabbitmqctl", "-q", "-n", NODE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    return proc.stdout


@dataclasses.dataclass(frozen=True)
class Broker:
    """This session's virtual host on the broker."""

    vhost: str
    url: str

    def queues(self) -> dict[str, int]:
        """Queue name -> number of consumers, in this virtual host."""
        out = rabbitmqctl("list_queues", "-p", self.vhost, "--no-table-headers", "name", "consumers")
        found = {}
        for line in out.splitlines():
            name, _, consumers = line.rpartition("\t")
            if name:
                found[name] = int(consumers)
        return found


@pytest.fixture(scope="session")
def rabbitmq() -> t.Iterator[Broker]:
    """A running broker and a virtual host of this session's own (deleted afterwards, queues and all)."""
    if os.geteuid() != 0:
        unavailable("starting RabbitMQ (.ci/rabbitmq.sh up) needs root")
    if shutil.which("rabbitmq-server") is None and shutil.which("apt-get") is None:
        unavailable("RabbitMQ is not installed and there is no apt-get to install it")
    was_up = broker_running()
    if not was_up:
        started = time.monotonic()
        proc = subprocess.run(["bash", str(RABBITMQ_SH), "up"], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            unavailable(f".ci/rabbitmq.sh up failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        print(f"\nRabbitMQ up in {time.monotonic() - started:.1f} s")
    try:
        with virtual_host() as broker:
            yield broker
    finally:
        if not was_up:
            subprocess.run(["bash", str(RABBITMQ_SH), "down"], capture_output=True, timeout=300)


def broker_running() -> bool:
    """Whether the broker of ``.ci/rabbitmq.sh`` is up (``status`` exits 0)."""
    return subprocess.run(["bash", str(RABBITMQ_SH), "status"], capture_output=True).returncode == 0


@contextlib.contextmanager
def virtual_host() -> t.Iterator[Broker]:
    """A virtual host of its own on the running broker, deleted afterwards with every queue in it.

    Yields
    ------
    Broker
        The virtual host and its AMQP URL.

    Raises
    ------
    AssertionError
        When the virtual host is still listed after its deletion.
    """
    vhost = f"libe-gc-{uuid.uuid4().hex[:12]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield Broker(vhost, f"amqp://guest:guest@127.0.0.1:5672/{vhost}")
    finally:
        rabbitmqctl("delete_vhost", vhost)
        left = [line for line in rabbitmqctl("list_vhosts", "--no-table-headers").split() if line == vhost]
    assert left == [], f"virtual host {vhost} (and its queues) left on the broker"
