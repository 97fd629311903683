"""A stand-in for the Globus Compute web service, for the real endpoint daemon and the real SDK on one machine.

Test infrastructure only: the one part of a site's path that cannot run offline.  It answers exactly
the HTTP routes that ``globus_compute_sdk`` (``Client``, ``Executor``) and ``globus_compute_endpoint``
(``globus-compute-endpoint start``: registration, the template-capable endpoint's identity check) call
in the SDK's built-in ``local`` environment (``GLOBUS_SDK_ENVIRONMENT=local``: ``http://localhost:5000``),
plus the two Globus Auth routes a client-credentials login uses (``GLOBUS_SDK_SERVICE_URL_AUTH`` points
there).  It moves messages through a real RabbitMQ as the service does:

* registering an endpoint creates its command queue and hands out the heartbeat queue;
* a submission to an endpoint with a ``user_endpoint_config`` picks the user endpoint for (endpoint,
  identity, config), creates its task queue, sends the endpoint a ``cmd_start_endpoint`` command with
  the config and that user endpoint's queues (on every submission, as the daemon expects: it updates
  the credentials of a user endpoint already running), and publishes one messagepack ``Task`` per task
  (the registered function's buffer followed by the task's arguments) with the headers the interchange
  reads;
* results the endpoints publish are recorded (task status) and forwarded to the task group's queue
  the SDK ``Executor`` consumes; heartbeats make an endpoint "online", and a user endpoint's start-up
  failure report fails its waiting tasks with the endpoint's message.

Everything is held in memory; one identity (the client id it is started with) owns everything.  Run it as
``python tests/realendpoint/service.py --amqp-url URL [--port 5000] [--client-id ID --client-secret S]``.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import logging
import os
import secrets
import signal
import threading
import time
import typing as t
import uuid

import pika
from flask import Flask, Response, jsonify, request
from globus_compute_common import messagepack
from globus_compute_common.messagepack.message_types import EPStatusReport, Result, ResultErrorDetails, Task
from pika.exchange_type import ExchangeType

log = logging.getLogger("gc-service-stand-in")

TASKS, RESULTS, HEARTBEATS = "tasks", "results", "heartbeats"
TASK_GROUP_QUEUE_PREFIX = "taskgroup."
COMPUTE_RESOURCE_SERVER = "funcx_service"
AUTH_RESOURCE_SERVER = "auth.globus.org"
OPENID_SCOPES = {"openid", "profile", "email"}
PERSISTENT = pika.spec.PERSISTENT_DELIVERY_MODE


def _resource_server(scope: str) -> str:
    """The resource server a scope belongs to: Globus Auth's own scopes, else the Compute service's."""
    if scope in OPENID_SCOPES or scope.startswith(f"urn:globus:auth:scope:{AUTH_RESOURCE_SERVER}:"):
        return AUTH_RESOURCE_SERVER
    return COMPUTE_RESOURCE_SERVER


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


class Broker:
    """The stand-in's own AMQP connections: one for publishing (any thread), one consuming thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        # The stand-in's own connections do without AMQP heartbeats: the publishing one idles between requests.
        params = pika.URLParameters(url)
        params.heartbeat = 0
        self._params = params
        self._lock = threading.Lock()
        self._conn = pika.BlockingConnection(params)
        self._chan = self._conn.channel()
        self._chan.exchange_declare(TASKS, ExchangeType.direct.value, durable=True)
        for name in (RESULTS, HEARTBEATS):
            self._chan.exchange_declare(name, ExchangeType.topic.value, durable=True)
            self._chan.queue_declare(name, durable=True)
            self._chan.queue_bind(name, name, routing_key=f"*.{name}")
        self._consumer: threading.Thread | None = None
        self._consumer_conn: pika.BlockingConnection | None = None
        self._consumer_chan: t.Any = None

    def declare(self, queue: str, exchange: str | None = None) -> None:
        """Create a durable queue (bound by its own name to ``exchange`` when given)."""
        with self._lock:
            self._chan.queue_declare(queue, durable=True)
            if exchange:
                self._chan.queue_bind(queue, exchange, routing_key=queue)

    def publish(self, exchange: str, routing_key: str, body: bytes, props: pika.BasicProperties) -> None:
        """Publish one message."""
        with self._lock:
            self._chan.basic_publish(exchange, routing_key, body, properties=props, mandatory=False)

    def consume(self, handlers: dict[str, t.Callable[[t.Any, t.Any, pika.BasicProperties, bytes], None]]) -> None:
        """Consume the named queues on a thread of its own, calling ``handlers[queue](chan, deliver, props, body)``."""
        conn = pika.BlockingConnection(self._params)
        chan = conn.channel()
        chan.basic_qos(prefetch_count=64)
        for queue, handler in handlers.items():
            chan.basic_consume(queue, handler)
        self._consumer_conn, self._consumer_chan = conn, chan

        def run() -> None:
            try:
                chan.start_consuming()
            except Exception:
                # Without it no result or heartbeat is routed any more: stop the stand-in rather than hang tests.
                log.exception("the consumer of results and heartbeats failed; stopping")
                os.kill(os.getpid(), signal.SIGTERM)
            finally:
                if conn.is_open:
                    conn.close()

        self._consumer = threading.Thread(target=run, name="consumer", daemon=True)
        self._consumer.start()

    def close(self) -> None:
        """Stop consuming and close both connections."""
        conn, chan = self._consumer_conn, self._consumer_chan
        if conn is not None and chan is not None and conn.is_open:
            conn.add_callback_threadsafe(chan.stop_consuming)
        if self._consumer is not None:
            self._consumer.join(10)
        with self._lock:
            if self._conn.is_open:
                self._conn.close()


class Service:
    """State and message routing of the stand-in (in memory, one lock)."""

    def __init__(self, broker: Broker, client_id: str, client_secret: str | None) -> None:
        self.broker = broker
        self.identity = client_id
        self.client_secret = client_secret
        self.username = f"{client_id}@clients.auth.globus.org"
        self.lock = threading.Lock()
        self.tokens: set[str] = set()
        self.functions: dict[str, dict[str, t.Any]] = {}
        self.endpoints: dict[str, dict[str, t.Any]] = {}
        self.tasks: dict[str, dict[str, t.Any]] = {}
        self.task_groups: dict[str, dict[str, t.Any]] = {}

    # --- queues handed to endpoints ----------------------------------------------------------

    def _publish_info(self, exchange: str, endpoint_id: str) -> dict[str, t.Any]:
        return {
            "connection_url": self.broker.url,
            "exchange": exchange,
            "queue": exchange,
            "queue_publish_kwargs": {
                "exchange": exchange,
                "routing_key": f"{endpoint_id}.{exchange}",
                "mandatory": True,
                "properties": {"delivery_mode": PERSISTENT},
            },
        }

    def amqp_creds(self, endpoint_id: str) -> dict[str, t.Any]:
        """Queues of a user endpoint, as a start command carries them."""
        return {
            "endpoint_id": endpoint_id,
            "task_queue_info": {"connection_url": self.broker.url, "exchange": TASKS, "queue": f"{endpoint_id}.tasks"},
            "result_queue_info": self._publish_info(RESULTS, endpoint_id),
            "heartbeat_queue_info": self._publish_info(HEARTBEATS, endpoint_id),
        }

    # --- endpoints -------------------------------------------------------------------------

    def register_endpoint(self, endpoint_id: str | None, data: dict[str, t.Any]) -> dict[str, t.Any]:
        """Record a (template-capable) endpoint; return its registration: command and heartbeat queues."""
        endpoint_id = endpoint_id or str(uuid.uuid4())
        command_queue = f"{endpoint_id}.commands"
        self.broker.declare(command_queue)
        with self.lock:
            record = self.endpoints.setdefault(endpoint_id, {"user_endpoints": {}, "heartbeat": None})
            record.update(name=data.get("endpoint_name"), data=data, parent=None)
        return {
            "endpoint_id": endpoint_id,
            "command_queue_info": {"connection_url": self.broker.url, "queue": command_queue},
            "heartbeat_queue_info": self._publish_info(HEARTBEATS, endpoint_id),
        }

    def endpoint_status(self, endpoint_id: str) -> dict[str, t.Any]:
        """Online while the endpoint's heartbeats arrive (within three of its periods)."""
        record = self.endpoints[endpoint_id]
        beat = record.get("heartbeat") or {"at": 0.0, "period": 0.0}
        online = beat["period"] > 0 and time.time() - beat["at"] < 3 * beat["period"]
        return {"status": "online" if online else "offline", "details": {}}

    def endpoint_metadata(self, endpoint_id: str) -> dict[str, t.Any]:
        """The endpoint's registration data, flattened as the service answers it."""
        record = self.endpoints[endpoint_id]
        data = record["data"]
        meta = data.get("metadata") or {}
        return {
            "uuid": endpoint_id,
            "name": record["name"],
            "display_name": data.get("display_name") or record["name"],
            "multi_user": bool(data.get("multi_user")),
            "public": bool(data.get("public")),
            **meta,
        }

    def user_endpoint(self, parent: str, config: dict[str, t.Any] | None) -> str:
        """The user endpoint for (endpoint, identity, config): created with its task queue on first use."""
        key = json.dumps({"identity": self.identity, "config": config or {}}, sort_keys=True)
        uep_id = str(uuid.uuid5(uuid.UUID(parent), key))
        with self.lock:
            known = uep_id in self.endpoints
        if not known:
            self.broker.declare(f"{uep_id}.tasks", TASKS)
            with self.lock:
                self.endpoints[uep_id] = {"name": f"uep.{parent}.{uep_id}", "parent": parent, "data": {}}
                self.endpoints[uep_id].update(heartbeat=None, config=config or {})
                self.endpoints[parent]["user_endpoints"][uep_id] = config or {}
        return uep_id

    def start_user_endpoint(self, parent: str, uep_id: str, config: dict[str, t.Any] | None, runtime: t.Any) -> None:
        """Send the parent endpoint the command that starts (or refreshes) a user endpoint."""
        command = {
            "globus_username": self.username,
            "globus_effective_identity": self.identity,
            "globus_identity_set": [{"sub": self.identity, "username": self.username}],
            "command": "cmd_start_endpoint",
            "args": [],
            "kwargs": {
                "name": self.endpoints[uep_id]["name"],
                "user_opts": config or {},
                "user_runtime": runtime or {},
                "amqp_creds": self.amqp_creds(uep_id),
            },
        }
        props = pika.BasicProperties(
            content_type="application/json", content_encoding="utf-8", timestamp=round(time.time())
        )
        self.broker.publish("", f"{parent}.commands", json.dumps(command).encode(), props)

    # --- tasks -----------------------------------------------------------------------------

    def submit(self, endpoint_id: str, data: dict[str, t.Any]) -> dict[str, t.Any]:
        """Route a batch: pick the user endpoint, start it, and publish the tasks to its queue."""
        unknown = [fid for fid in data.get("tasks", {}) if fid not in self.functions]
        if unknown:
            raise LookupError(f"unknown function(s) {unknown}")
        tg_id = data.get("task_group_id") or str(uuid.uuid4())
        with self.lock:
            group = self.task_groups.setdefault(tg_id, {"tasks": [], "queue": False})
            group["queue"] = group["queue"] or bool(data.get("create_queue"))
        if group["queue"]:
            self.broker.declare(f"{TASK_GROUP_QUEUE_PREFIX}{tg_id}")
        config = data.get("user_endpoint_config")
        uep_id = self.user_endpoint(endpoint_id, config)
        self.start_user_endpoint(endpoint_id, uep_id, config, data.get("user_runtime"))
        headers_common = {"resource_specification": json.dumps(data.get("resource_specification"))}
        if data.get("result_serializers"):
            headers_common["result_serializers"] = data["result_serializers"]
        submitted: dict[str, list[str]] = {}
        for fid, payloads in data.get("tasks", {}).items():
            code = self.functions[fid]["function_code"]
            for payload in payloads:
                task_id = uuid.uuid4()
                tid = str(task_id)
                with self.lock:
                    self.tasks[tid] = {
                        "endpoint": uep_id,
                        "task_group": tg_id,
                        "function": fid,
                        "status": "waiting-for-ep",
                        "created_at": _now_iso(),
                    }
                    group["tasks"].append(tid)
                body = messagepack.pack(Task(task_id=task_id, task_buffer=code + payload))
                props = pika.BasicProperties(
                    content_type="application/json",
                    content_encoding="utf-8",
                    delivery_mode=PERSISTENT,
                    headers={"function_uuid": fid, "task_uuid": tid, **headers_common},
                )
                self.broker.publish(TASKS, f"{uep_id}.tasks", body, props)
                submitted.setdefault(fid, []).append(tid)
        return {"request_id": str(uuid.uuid4()), "task_group_id": tg_id, "endpoint_id": endpoint_id, "tasks": submitted}

    def task_doc(self, tid: str) -> dict[str, t.Any]:
        """A task as the status routes answer it."""
        rec = self.tasks[tid]
        doc: dict[str, t.Any] = {"task_id": tid, "status": rec["status"]}
        for key in ("result", "exception", "completion_t"):
            if key in rec:
                doc[key] = rec[key]
        return doc

    def finish(self, chan: t.Any, result: Result, body: bytes, timestamp: int | None) -> None:
        """Record a task's result and forward it to its task group's queue."""
        tid = str(result.task_id)
        with self.lock:
            rec = self.tasks.get(tid)
            if rec is None or "completion_t" in rec:
                return
            rec["completion_t"] = str(timestamp or time.time())
            if result.is_error:
                rec.update(status="failed", exception=result.data)
            else:
                rec.update(status="success", result=result.data)
            tg_id = rec["task_group"]
            forward = self.task_groups[tg_id]["queue"]
        if forward:
            props = pika.BasicProperties(timestamp=timestamp or round(time.time()), delivery_mode=PERSISTENT)
            chan.basic_publish("", f"{TASK_GROUP_QUEUE_PREFIX}{tg_id}", body, properties=props)

    # --- messages from the endpoints (consumer thread) --------------------------------------

    def on_result(self, chan: t.Any, deliver: t.Any, props: pika.BasicProperties, body: bytes) -> None:
        """A result published by a user endpoint."""
        try:
            msg = messagepack.unpack(body)
            if isinstance(msg, Result):
                self.finish(chan, msg, body, props.timestamp)
        except Exception:
            log.exception("unreadable message on the results queue")
        chan.basic_ack(deliver.delivery_tag)

    def on_heartbeat(self, chan: t.Any, deliver: t.Any, props: pika.BasicProperties, body: bytes) -> None:
        """A heartbeat: the endpoint is alive (period 0: it is stopping); an ``error`` is a failed start."""
        try:
            msg = messagepack.unpack(body)
            if isinstance(msg, EPStatusReport):
                self._heartbeat(chan, msg)
        except Exception:
            log.exception("unreadable message on the heartbeats queue")
        chan.basic_ack(deliver.delivery_tag)

    def _heartbeat(self, chan: t.Any, report: EPStatusReport) -> None:
        ep_id = str(report.endpoint_id)
        state = report.global_state
        with self.lock:
            record = self.endpoints.get(ep_id)
            if record is None:
                return
            period = float(state.get("heartbeat_period") or 0)
            record["heartbeat"] = {"at": time.time(), "period": period, "state": dict(state)}
            error = state.get("error")
            waiting = [tid for tid, rec in self.tasks.items() if rec["endpoint"] == ep_id and "completion_t" not in rec]
            user_endpoint = record["parent"] is not None
        if not error:
            return
        if not user_endpoint:
            # globus-compute-endpoint 4.19 sends one on behalf of the daemon too, from the forked child whose
            # user endpoint failed to start (its exit unwinds through the daemon's start-up error handler).
            log.warning("endpoint %s reported an error: %s", ep_id, error)
            return
        log.warning("user endpoint %s failed to start: %s", ep_id, error)
        chan.queue_purge(f"{ep_id}.tasks")
        for tid in waiting:
            failed = Result(
                task_id=uuid.UUID(tid),
                data=str(error),
                error_details=ResultErrorDetails(code="EndpointStartupFailure", user_message=str(error)),
            )
            self.finish(chan, failed, messagepack.pack(failed), round(time.time()))


def create_app(service: Service) -> Flask:
    """The HTTP routes: Globus Auth's two (client credentials, userinfo), then the Compute service's."""
    app = Flask("gc-service-stand-in")

    def error(status: int, message: str) -> Response:
        resp = jsonify({"code": "error", "error": message, "message": message, "status": status})
        resp.status_code = status
        return resp

    @app.before_request
    def _authorized() -> Response | None:
        # A token this stand-in issued, or none at all (the SDK's NullAuthorizer); anything else is refused.
        header = request.headers.get("Authorization", "")
        if request.path == "/v2/oauth2/token" or not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme == "Bearer" and token in service.tokens:
            return None
        return error(401, "invalid or unknown access token")

    # --- Globus Auth ---------------------------------------------------------------------------

    @app.post("/v2/oauth2/token")
    def token() -> Response:
        basic = request.headers.get("Authorization", "")
        try:
            client_id, _, secret = base64.b64decode(basic.removeprefix("Basic ")).decode().partition(":")
        except ValueError:
            return error(401, "client credentials required")
        if client_id != service.identity or secret != service.client_secret or not service.client_secret:
            return error(401, "unknown client or wrong secret")
        if request.form.get("grant_type") != "client_credentials":
            return error(400, "only the client_credentials grant is offered")
        scopes = request.form.get("scope", "").split()
        by_server: dict[str, list[str]] = {}
        for scope in scopes:
            by_server.setdefault(_resource_server(scope), []).append(scope)
        docs = []
        for server, granted in by_server.items():
            access = secrets.token_urlsafe(24)
            service.tokens.add(access)
            docs.append(
                {
                    "access_token": access,
                    "scope": " ".join(granted),
                    "resource_server": server,
                    "expires_in": 172800,
                    "token_type": "Bearer",
                }
            )
        if not docs:
            return error(400, "no scope requested")
        return jsonify({**docs[0], "other_tokens": docs[1:]})

    @app.get("/v2/oauth2/userinfo")
    def userinfo() -> Response:
        ident = {"sub": service.identity, "username": service.username, "name": None, "email": None}
        return jsonify({**ident, "preferred_username": service.username, "identity_set": [ident]})

    # --- Globus Compute ------------------------------------------------------------------------

    @app.get("/v2/version")
    def version() -> Response:
        from globus_compute_sdk import __version__ as sdk_version

        if request.args.get("service") == "all":
            return jsonify(
                {
                    "api": sdk_version,
                    "min_sdk_version": "2.0.0",
                    "min_ep_version": "2.0.0",
                    "min_endpoint_version": "2.0.0",
                }
            )
        return jsonify(sdk_version)

    @app.get("/v2/get_amqp_result_connection_url")
    def result_amqp_url() -> Response:
        return jsonify({"queue_prefix": TASK_GROUP_QUEUE_PREFIX, "connection_url": service.broker.url})

    @app.post("/v3/functions")
    def register_function() -> Response:
        data = request.get_json()
        if not isinstance(data, dict) or not isinstance(data.get("function_code"), str):
            return error(400, "function_code required")
        fid = str(uuid.uuid4())
        with service.lock:
            service.functions[fid] = data
        return jsonify({"function_uuid": fid})

    @app.post("/v3/endpoints")
    def register_endpoint() -> Response:
        return jsonify(service.register_endpoint(None, request.get_json() or {}))

    @app.put("/v3/endpoints/<uuid:endpoint_id>")
    def update_endpoint(endpoint_id: uuid.UUID) -> Response:
        return jsonify(service.register_endpoint(str(endpoint_id), request.get_json() or {}))

    @app.get("/v2/endpoints/<uuid:endpoint_id>")
    def endpoint_metadata(endpoint_id: uuid.UUID) -> Response:
        if str(endpoint_id) not in service.endpoints:
            return error(404, f"endpoint {endpoint_id} not found")
        return jsonify(service.endpoint_metadata(str(endpoint_id)))

    @app.get("/v2/endpoints/<uuid:endpoint_id>/status")
    def endpoint_status(endpoint_id: uuid.UUID) -> Response:
        if str(endpoint_id) not in service.endpoints:
            return error(404, f"endpoint {endpoint_id} not found")
        return jsonify(service.endpoint_status(str(endpoint_id)))

    @app.post("/v3/endpoints/<uuid:endpoint_id>/submit")
    def submit(endpoint_id: uuid.UUID) -> Response:
        ep = str(endpoint_id)
        if ep not in service.endpoints or service.endpoints[ep]["parent"] is not None:
            return error(404, f"endpoint {ep} not found")
        try:
            return jsonify(service.submit(ep, request.get_json() or {}))
        except LookupError as err:
            return error(404, str(err))

    @app.get("/v2/tasks/<uuid:task_id>")
    def get_task(task_id: uuid.UUID) -> Response:
        if str(task_id) not in service.tasks:
            return error(404, f"task {task_id} not found")
        return jsonify(service.task_doc(str(task_id)))

    @app.post("/v2/batch_status")
    def batch_status() -> Response:
        ids = (request.get_json() or {}).get("task_ids", [])
        with service.lock:
            results = {tid: service.task_doc(tid) for tid in ids if tid in service.tasks}
        return jsonify({"response": "batch", "results": results})

    @app.get("/v2/taskgroup/<uuid:tg_id>")
    def task_group(tg_id: uuid.UUID) -> Response:
        group = service.task_groups.get(str(tg_id))
        if group is None:
            return error(404, f"task group {tg_id} not found")
        with service.lock:
            tasks = [{"id": tid, "created_at": service.tasks[tid]["created_at"]} for tid in group["tasks"]]
        return jsonify({"taskgroup_id": str(tg_id), "create_websockets_queue": group["queue"], "tasks": tasks})

    return app


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amqp-url", required=True, help="the broker, as endpoints and the SDK will reach it")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--client-id", default=str(uuid.uuid4()), help="the one identity (a client id)")
    parser.add_argument("--client-secret", default=None, help="its secret (no client-credentials login without)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("pika").setLevel(logging.WARNING)

    broker = Broker(args.amqp_url)
    service = Service(broker, args.client_id, args.client_secret)
    broker.consume({RESULTS: service.on_result, HEARTBEATS: service.on_heartbeat})
    app = create_app(service)

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", args.port, app, threaded=True)

    def stop(_sig: int, _frame: t.Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("listening on 127.0.0.1:%d", args.port)
    try:
        server.serve_forever()
    finally:
        broker.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
