"""A raw Globus Compute engine driven the way a real endpoint's interchange drives it.

``globus_compute_endpoint.endpoint.interchange`` (``process_pending_tasks``) takes each task
message from the service and does, per task::

    res_spec = json.loads(prop_headers.get("resource_specification") or "null") or {}
    task_f = GCFuture(tid, function_id=fid)
    try:
        engine.submit(task_f=task_f, packed_task=body, resource_specification=res_spec,
                      result_serializers=res_serde)
    except Exception as exc:
        task_f.set_result(pack(Result(task_id=tid, data=f"Failed to start task: {exc}", ...)))

and the SDK turns the packed ``Result`` into the future's value, or into
``TaskExecutionFailed(result.data, <result message timestamp>)``.  A template-capable endpoint
runs one such engine per distinct ``user_endpoint_config``, rendered from its template.

:class:`InterchangeEndpoint` does exactly that and nothing more (no spec checks, no repairs),
with the surface of ``globus_compute_sdk.Executor`` the bundle uses, so it can stand behind an
autospec of the SDK ``Executor`` as a "cloud" endpoint built from a bundled template
(``tests/gconly/test_gconly_engine_choice.py``).  The endpoint contract itself
(``test_endpoint_contract.py``) is checked against the real interchange, :mod:`tests.contract.real_interchange`.
"""

from __future__ import annotations

import json
import pathlib
import shlex
import threading
import time
import typing as t
import uuid
from concurrent.futures import Future

from globus_compute_common import messagepack
from globus_compute_common.messagepack.message_types import Result, ResultErrorDetails, Task
from globus_compute_endpoint.engines.base import GCFuture
from globus_compute_endpoint.exception_handling import get_result_error_details
from globus_compute_sdk.errors import TaskExecutionFailed
from globus_compute_sdk.sdk.asynchronous.compute_future import ComputeFuture
from globus_compute_sdk.serialize import ComputeSerializer

from bundle.endpoints.local.engine_host import _ensure_bin_dir_on_path, _own_import_path
from bundle.endpoints.templates import get_template


class InterchangeEndpoint:
    """One template-capable endpoint: an engine per ``user_endpoint_config``, fed as the interchange feeds it."""

    def __init__(self, template: str, run_dir: pathlib.Path, user_endpoint_config: dict[str, t.Any] | None = None):
        self.template = get_template(template)
        self.run_dir = run_dir
        self.endpoint_id = str(uuid.uuid4())
        self.task_group_id = uuid.uuid4()
        self.serializer = ComputeSerializer()
        self.resource_specification: dict[str, t.Any] | None = None
        self.user_endpoint_config = user_endpoint_config
        self._engines: dict[str, t.Any] = {}
        self._functions: dict[str, bytes] = {}
        self._function_registry: dict[t.Any, str] = {}
        self._lock = threading.Lock()
        self.sent_specs: list[t.Any] = []
        """Each task's ``resource_specification`` header, as the service would forward it."""

    def engine(self) -> t.Any:
        key = json.dumps(self.user_endpoint_config or {}, sort_keys=True)
        with self._lock:
            if key not in self._engines:
                _ensure_bin_dir_on_path()
                config = self.template.load(self.user_endpoint_config or {})
                engine = config.engine
                paths = _own_import_path()  # the test modules' functions are imported by reference
                if paths:
                    provider = engine.executor.provider
                    provider.worker_init = f"export PYTHONPATH={shlex.quote(paths)}\n{provider.worker_init or ''}"
                run = self.run_dir / f"engine-{len(self._engines)}"
                run.mkdir(parents=True, exist_ok=True)
                engine.start(endpoint_id=uuid.UUID(self.endpoint_id), run_dir=str(run))
                self._engines[key] = engine
            return self._engines[key]

    # --- the SDK Executor surface ---------------------------------------------------------

    def register_function(self, fn: t.Callable[..., t.Any], function_id: str | None = None, **_: t.Any) -> str:
        if fn in self._function_registry:
            raise ValueError(f"Function already registered as function id: {self._function_registry[fn]}")
        fid = function_id or str(uuid.uuid4())
        self._functions[fid] = self.serializer.serialize(fn)
        self._function_registry[fn] = fid
        return fid

    def submit(self, fn: t.Callable[..., t.Any], *args: t.Any, **kwargs: t.Any) -> ComputeFuture:
        fid = self._function_registry.get(fn) or self.register_function(fn)
        return self.submit_to_registered_function(fid, args=args, kwargs=kwargs)

    def submit_to_registered_function(
        self, function_id: str, args: tuple[t.Any, ...] | None = None, kwargs: dict[str, t.Any] | None = None
    ) -> ComputeFuture:
        ser = self.serializer
        body_buffer = ser.pack_buffers(
            [self._functions[function_id], ser.serialize(tuple(args or ())), ser.serialize(dict(kwargs or {}))]
        )
        tid = uuid.uuid4()
        body = messagepack.pack(Task(task_id=tid, task_buffer=body_buffer))
        # The SDK sends the spec as JSON; the service forwards it as the task's header.
        header = json.dumps(self.resource_specification) if self.resource_specification is not None else None
        self.sent_specs.append(header)
        fut = ComputeFuture()
        engine = self.engine()

        # --- as interchange.process_pending_tasks ---
        res_spec: dict[str, t.Any] = json.loads(header or "null") or {}
        task_f = GCFuture(str(tid), function_id=function_id)
        task_f.add_done_callback(lambda f: self._deliver(f, fut))
        try:
            engine.submit(task_f=task_f, packed_task=body, resource_specification=res_spec, result_serializers=[])
        except Exception as exc:
            code, msg = get_result_error_details(exc)
            failed = Result(
                task_id=tid,
                data=f"Failed to start task: {exc}",
                error_details=ResultErrorDetails(code=code, user_message=msg),
                task_statuses=[],
            )
            task_f.set_result(messagepack.pack(failed))
        fut.task_id = str(tid)
        return fut

    def _deliver(self, task_f: Future[bytes], fut: ComputeFuture) -> None:
        """As the SDK's result watcher: a Result becomes the value or a TaskExecutionFailed."""
        if fut.done():
            return
        res = messagepack.unpack(task_f.result())
        if res.is_error:
            fut.set_exception(TaskExecutionFailed(res.data, str(int(time.time()))))
        else:
            fut.set_result(self.serializer.deserialize(res.data))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            engines = list(self._engines.values())
            self._engines.clear()
        for engine in engines:
            engine.shutdown(block=True)
