"""The real endpoint interchange, fed real ``Task`` messages over RabbitMQ, behind the SDK ``Executor``'s surface.

A template-capable endpoint starts one user endpoint per distinct ``user_endpoint_config``: a process that loads
the configuration rendered from the endpoint's template and runs
``globus_compute_endpoint.endpoint.endpoint.Endpoint.start_endpoint``, which builds an ``EndpointInterchange``
(the engine, a ``TaskQueueSubscriber`` on the user endpoint's task queue, ``ResultPublisher`` for results and
heartbeats) and runs it until SIGTERM.  :class:`InterchangeOverRabbit` starts that same process, without the
daemon and without the web service, and stands in for the two around it:

* as the service, it creates the user endpoint's queues in the test session's virtual host (the endpoint declares
  them passively), hands them over as the ``amqp_creds`` the start command carries (``task_queue_info``,
  ``result_queue_info``, ``heartbeat_queue_info``), and publishes one messagepack ``Task`` per task, its buffer the
  registered function's followed by the task's arguments, with the headers the interchange reads
  (``function_uuid``, ``task_uuid``, ``resource_specification`` as JSON, ``"null"`` when unset);
* as the SDK's result watcher, it consumes the ``Result`` messages the interchange publishes and completes the
  task's ``ComputeFuture``: ``TaskExecutionFailed(result.data, <message timestamp>)`` for an error, else the
  deserialized value.

Run as ``python -m tests.contract.real_interchange`` it is that user endpoint process (see :func:`main`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
import typing as t
import uuid

import pika
import psutil
from globus_compute_common import messagepack
from globus_compute_common.messagepack.message_types import Result, Task
from globus_compute_sdk.errors import TaskExecutionFailed
from globus_compute_sdk.sdk.asynchronous.compute_future import ComputeFuture
from globus_compute_sdk.serialize import ComputeSerializer
from pika.exchange_type import ExchangeType

from bundle.processes.proctree import find_with_env

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
TASKS, RESULTS, HEARTBEATS = "tasks", "results", "heartbeats"
PERSISTENT = pika.spec.PERSISTENT_DELIVERY_MODE
MARK_ENV = "LIBE_GC_CONTRACT_UEP"
"""Set to the user endpoint's id in its process's environment: its blocks inherit it, so none is overlooked."""


def queue_infos(url: str, endpoint_id: str) -> dict[str, t.Any]:
    """The ``amqp_creds`` of a user endpoint, in the shape the service's start command carries them.

    Parameters
    ----------
    url : str
        The broker's AMQP URL (with the virtual host).
    endpoint_id : str
        The user endpoint's id.

    Returns
    -------
    dict
        ``endpoint_id`` and the task, result and heartbeat queue infos; results and heartbeats are published to
        topic exchanges with routing key ``<endpoint_id>.<exchange>``, persistent and mandatory.
    """

    def publish_info(exchange: str) -> dict[str, t.Any]:
        return {
            "connection_url": url,
            "exchange": exchange,
            "queue": f"{endpoint_id}.{exchange}",
            "queue_publish_kwargs": {
                "exchange": exchange,
                "routing_key": f"{endpoint_id}.{exchange}",
                "mandatory": True,
                "properties": {"delivery_mode": PERSISTENT},
            },
        }

    return {
        "endpoint_id": endpoint_id,
        "task_queue_info": {"connection_url": url, "exchange": TASKS, "queue": f"{endpoint_id}.tasks"},
        "result_queue_info": publish_info(RESULTS),
        "heartbeat_queue_info": publish_info(HEARTBEATS),
    }


def _connect(url: str) -> pika.BlockingConnection:
    params = pika.URLParameters(url)
    params.heartbeat = 0  # the test's connections idle between tasks
    return pika.BlockingConnection(params)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class UserEndpoint:
    """One user endpoint process (``EndpointInterchange`` and its engine) and its queues.

    Parameters
    ----------
    url : str
        The broker's AMQP URL.
    template : str
        The bundled template the configuration is rendered from.
    options : dict
        The ``user_endpoint_config``.
    run_dir : pathlib.Path
        The user endpoint's folder (its logs, the engine's run folder).
    start_timeout : float
        Seconds to wait for its first heartbeat (sent once the engine has started).
    """

    def __init__(
        self, url: str, template: str, options: dict[str, t.Any], run_dir: pathlib.Path, start_timeout: float = 240
    ) -> None:
        self.url = url
        self.endpoint_id = str(uuid.uuid4())
        self.run_dir = run_dir
        self.creds = queue_infos(url, self.endpoint_id)
        self.futures: dict[str, ComputeFuture] = {}
        self.task_queue_consumers: int | None = None
        """Consumers of the task queue once the user endpoint stopped (see :meth:`stop`)."""
        self.serializer = ComputeSerializer()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._declare()
        run_dir.mkdir(parents=True, exist_ok=True)
        creds_file = run_dir / "amqp_creds.json"
        creds_file.write_text(json.dumps(self.creds))
        env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            # the test modules' functions are serialized by reference: the workers import them from here
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
            MARK_ENV: self.endpoint_id,
        }
        cmd = [sys.executable, "-m", "tests.contract.real_interchange", "--template", template]
        cmd += ["--options", json.dumps(options), "--creds", str(creds_file), "--endpoint-dir", str(run_dir)]
        self.log = run_dir / "user-endpoint.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.publisher = _connect(url)
        self.channel = self.publisher.channel()
        self._wait_for_heartbeat(start_timeout)
        self._consumer = threading.Thread(target=self._consume, name=f"results-{self.endpoint_id}", daemon=True)
        self._consumer.start()

    def _declare(self) -> None:
        """What the service does before it starts a user endpoint: its exchanges and queues exist."""
        with _connect(self.url) as conn, conn.channel() as chan:
            chan.exchange_declare(TASKS, ExchangeType.direct.value, durable=True)
            chan.queue_declare(self.creds["task_queue_info"]["queue"], durable=True)
            chan.queue_bind(self.creds["task_queue_info"]["queue"], TASKS, routing_key=f"{self.endpoint_id}.tasks")
            for kind in ("result_queue_info", "heartbeat_queue_info"):
                info = self.creds[kind]
                chan.exchange_declare(info["exchange"], ExchangeType.topic.value, durable=True)
                chan.queue_declare(info["queue"], durable=True)
                key = info["queue_publish_kwargs"]["routing_key"]
                chan.queue_bind(info["queue"], info["exchange"], routing_key=key)

    def _wait_for_heartbeat(self, timeout: float) -> None:
        queue = self.creds["heartbeat_queue_info"]["queue"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the user endpoint exited ({self.proc.returncode}):\n{self.log.read_text()}")
            method, _props, _body = self.channel.basic_get(queue, auto_ack=True)
            if method is not None:
                return
            time.sleep(0.5)
        raise TimeoutError(f"no heartbeat from the user endpoint in {timeout} s:\n{self.log.read_text()}")

    def _consume(self) -> None:
        """As the SDK's result watcher: each ``Result`` completes its task's future."""
        with _connect(self.url) as conn, conn.channel() as chan:
            for method, props, body in chan.consume(self.creds["result_queue_info"]["queue"], inactivity_timeout=0.5):
                if self._stop.is_set():
                    break
                if method is None:
                    continue
                chan.basic_ack(method.delivery_tag)
                result = messagepack.unpack(body)
                assert isinstance(result, Result), result
                with self._lock:
                    fut = self.futures.pop(str(result.task_id), None)
                if fut is None or fut.done():
                    continue
                if result.is_error:
                    # the service stamps a result when it arrives; the SDK passes that on as completion_t
                    fut.set_exception(TaskExecutionFailed(result.data, str(props.timestamp or round(time.time()))))
                else:
                    try:
                        fut.set_result(self.serializer.deserialize(result.data))
                    except Exception as exc:
                        fut.set_exception(exc)
            chan.cancel()

    def publish(self, function_code: str, payload: str, function_id: str, resource_specification: t.Any) -> str:
        """Publish one task as the service does; return its id (its future is in ``futures``)."""
        task_id = uuid.uuid4()
        tid = str(task_id)
        fut = ComputeFuture()
        fut.task_id = tid
        with self._lock:
            self.futures[tid] = fut
        body = messagepack.pack(Task(task_id=task_id, task_buffer=function_code + payload))
        props = pika.BasicProperties(
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=PERSISTENT,
            headers={
                "function_uuid": function_id,
                "task_uuid": tid,
                "resource_specification": json.dumps(resource_specification),
            },
        )
        self.channel.basic_publish(TASKS, f"{self.endpoint_id}.tasks", body, properties=props, mandatory=True)
        return tid

    def processes(self) -> list[psutil.Process]:
        """The user endpoint's live processes: its own, its descendants, its blocks (marked) and theirs."""
        found: dict[int, psutil.Process] = {}
        for pid in {self.proc.pid, *find_with_env(MARK_ENV, self.endpoint_id)}:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                found[pid] = root
                for child in root.children(recursive=True):
                    found[child.pid] = child
        return [p for p in found.values() if _alive(p)]

    def stop(self, timeout: float = 120) -> list[str]:
        """SIGTERM the user endpoint, as its parent does, and wait; return what is left of it (then killed).

        Parameters
        ----------
        timeout : float
            Seconds the interchange gets to stop its engine and exit.

        Returns
        -------
        list of str
            Command lines of processes still alive afterwards (empty when it stopped cleanly).
        """
        before = self.processes()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        _gone, alive = psutil.wait_procs(before, timeout=30)
        alive += [p for p in self.processes() if p not in alive]
        left = []
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                left.append(" ".join(proc.cmdline()) or proc.name())
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        deadline = time.monotonic() + 10  # the broker drops a consumer once it notices its connection closed
        while (consumers := self.consumers()) and time.monotonic() < deadline:
            time.sleep(0.5)
        self.task_queue_consumers = consumers
        self._stop.set()
        self._consumer.join(10)
        with contextlib.suppress(Exception):
            self.publisher.close()
        for fut in list(self.futures.values()):
            fut.cancel()
        return left

    def consumers(self) -> int:
        """How many consumers the task queue has (the interchange's subscriber while it runs)."""
        with _connect(self.url) as conn, conn.channel() as chan:
            ok = chan.queue_declare(self.creds["task_queue_info"]["queue"], passive=True)
            return int(ok.method.consumer_count)

    def delete_queues(self) -> None:
        """Remove the user endpoint's queues."""
        with _connect(self.url) as conn, conn.channel() as chan:
            for kind in ("task_queue_info", "result_queue_info", "heartbeat_queue_info"):
                chan.queue_delete(self.creds[kind]["queue"])


class InterchangeOverRabbit:
    """A template-capable endpoint: one real user endpoint (interchange) per ``user_endpoint_config``.

    It has the surface of ``globus_compute_sdk.Executor`` the bundle uses (``resource_specification``,
    ``user_endpoint_config``, ``register_function``, ``submit``, ``submit_to_registered_function``, ``shutdown``).

    Parameters
    ----------
    url : str
        The broker's AMQP URL (the test session's virtual host).
    template : str
        The bundled template each user endpoint's configuration is rendered from.
    run_dir : pathlib.Path
        A folder for the user endpoints.
    user_endpoint_config : dict, optional
        The options tasks are submitted with (as the SDK's attribute of that name).
    """

    def __init__(
        self, url: str, template: str, run_dir: pathlib.Path, user_endpoint_config: dict[str, t.Any] | None = None
    ) -> None:
        self.url = url
        self.template = template
        self.run_dir = run_dir
        self.serializer = ComputeSerializer()
        self.resource_specification: dict[str, t.Any] | None = None
        self.user_endpoint_config = user_endpoint_config
        self.user_endpoints: dict[str, UserEndpoint] = {}
        self._functions: dict[str, str] = {}
        self._function_registry: dict[t.Any, str] = {}

    def user_endpoint(self) -> UserEndpoint:
        """The user endpoint for the current ``user_endpoint_config`` (started on first use, as the daemon does)."""
        key = json.dumps(self.user_endpoint_config or {}, sort_keys=True)
        if key not in self.user_endpoints:
            folder = self.run_dir / f"uep-{len(self.user_endpoints)}"
            self.user_endpoints[key] = UserEndpoint(self.url, self.template, self.user_endpoint_config or {}, folder)
        return self.user_endpoints[key]

    def register_function(self, fn: t.Callable[..., t.Any], function_id: str | None = None, **_: t.Any) -> str:
        """Register ``fn`` as the SDK's ``Client.register_function`` serializes it; return its id."""
        if fn in self._function_registry:
            raise ValueError(f"Function already registered as function id: {self._function_registry[fn]}")
        fid = function_id or str(uuid.uuid4())
        self._functions[fid] = self.serializer.pack_buffers([self.serializer.serialize(fn)])
        self._function_registry[fn] = fid
        return fid

    def submit(self, fn: t.Callable[..., t.Any], *args: t.Any, **kwargs: t.Any) -> ComputeFuture:
        """Submit ``fn(*args, **kwargs)``; return its future."""
        fid = self._function_registry.get(fn) or self.register_function(fn)
        return self.submit_to_registered_function(fid, args=args, kwargs=kwargs)

    def submit_to_registered_function(
        self, function_id: str, args: tuple[t.Any, ...] | None = None, kwargs: dict[str, t.Any] | None = None
    ) -> ComputeFuture:
        """Submit a registered function; the task carries the current ``resource_specification``."""
        ser = self.serializer
        payload = ser.pack_buffers([ser.serialize(tuple(args or ())), ser.serialize(dict(kwargs or {}))])
        uep = self.user_endpoint()
        tid = uep.publish(self._functions[function_id], payload, function_id, self.resource_specification)
        return uep.futures[tid]

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> dict[str, list[str]]:
        """Stop every user endpoint (SIGTERM) and delete its queues.

        Returns
        -------
        dict
            User endpoint id -> command lines of its processes that were still alive after it stopped.
        """
        left = {}
        for uep in self.user_endpoints.values():
            left[uep.endpoint_id] = uep.stop()
            uep.delete_queues()
        self.user_endpoints.clear()
        return left


def main(argv: list[str] | None = None) -> None:
    """The user endpoint process: load the rendered configuration and run ``Endpoint.start_endpoint``.

    Parameters
    ----------
    argv : list of str, optional
        ``--template NAME --options JSON --creds FILE --endpoint-dir DIR``.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", required=True)
    parser.add_argument("--options", required=True, help="the user_endpoint_config, as JSON")
    parser.add_argument("--creds", required=True, type=pathlib.Path, help="the amqp_creds, as JSON")
    parser.add_argument("--endpoint-dir", required=True, type=pathlib.Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pika").setLevel(logging.WARNING)

    from globus_compute_endpoint.endpoint.endpoint import Endpoint

    from bundle.endpoints.templates import get_template

    config = get_template(args.template).load(json.loads(args.options))
    creds = json.loads(args.creds.read_text())
    Endpoint().start_endpoint(
        endpoint_dir=args.endpoint_dir,
        endpoint_uuid=creds["endpoint_id"],
        endpoint_config=config,
        log_to_console=False,
        cred_fn=lambda: {"amqp_creds": creds},
        ep_info={},
    )


if __name__ == "__main__":
    main()
