"""A Globus Compute endpoint that runs inside this process, offline.

:class:`LocalEndpoint` has the surface of :class:`globus_compute_sdk.Executor`
that the bundle uses, and behind it the real Globus Compute engine
(``GlobusComputeEngine`` or ``GlobusMPIEngine`` over Parsl) configured by
rendering a bundled template, as a template-capable endpoint would.  Tasks are
serialized with the SDK's ``ComputeSerializer``, packed into the same
messagepack ``Task`` an endpoint receives, and results unpacked the way the
SDK unpacks them: a remote exception arrives as
:class:`globus_compute_sdk.errors.TaskExecutionFailed` carrying the remote
traceback.

Like a template-capable endpoint, each distinct ``user_endpoint_config`` gets
its own engine, started on first use.
"""

from __future__ import annotations

import atexit
import json
import logging
import pathlib
import shutil
import tempfile
import threading
import time
import typing as t
import uuid
import weakref
from concurrent.futures import InvalidStateError

from bundle.endpoints.local import reaper
from bundle.endpoints.local.engine_host import EngineHost
from bundle.endpoints.local.spec_gate import as_sent, engine_nodes, refuse_hanging_spec
from bundle.endpoints.local.task_ids import TaskIdAnnouncer
from bundle.endpoints.templates import EndpointTemplate, config_key, get_template
from bundle.errors import EndpointShutdownError
from bundle.processes import interrupt
from bundle.processes.forksafe import after_fork_in_child

if t.TYPE_CHECKING:
    from concurrent.futures import Future

    from globus_compute_sdk.sdk.asynchronous.compute_future import ComputeFuture
    from globus_compute_sdk.serialize import ComputeSerializer

log = logging.getLogger(__name__)

_LIVE: weakref.WeakSet[LocalEndpoint] = weakref.WeakSet()


def _shutdown_all() -> None:
    """Stop every live local endpoint (interpreter exit, including after Ctrl-C)."""
    for ep in list(_LIVE):
        try:
            ep.shutdown(wait=False, cancel_futures=True)
        except Exception:
            log.exception("shutting down %r at exit failed", ep)


atexit.register(_shutdown_all)


def _cancel(fut: Future[t.Any]) -> None:
    """Cancel ``fut`` and wake whoever waits on it.

    ``Future.cancel`` alone does not wake ``concurrent.futures.wait``; an executor must also call
    ``set_running_or_notify_cancel``, which for a cancelled future notifies the waiters.
    """
    if fut.cancel():
        fut.set_running_or_notify_cancel()


@interrupt.on_interrupt
def _stop_all_now(kill: bool) -> None:
    """Ctrl-C or SIGTERM: stop every live local endpoint of this process at once."""
    for ep in list(_LIVE):
        ep.stop_now(kill)


@after_fork_in_child
def _forget_parent_endpoints() -> None:
    """In a forked child (e.g. a libEnsemble worker): the parent's engines are not ours to stop."""
    global _LIVE
    _LIVE = weakref.WeakSet()


def checked_spec(value: dict[str, t.Any] | None) -> dict[str, t.Any] | None:
    """Return ``value`` if the SDK ``Executor`` would take it as a ``resource_specification``; raise as it does.

    Raises
    ------
    TypeError
        Not a dict, or not JSON-serializable.
    """
    if value is not None:
        if not isinstance(value, dict):
            raise TypeError(f"Resource specification must be of type dict, not {type(value).__name__}")
        try:
            json.dumps(value)
        except Exception as err:
            raise TypeError("Resource specification must be JSON-serializable") from err
    return value


class LocalEndpoint:
    """In-process endpoint on the real Globus Compute engine.

    Parameters
    ----------
    template : str or EndpointTemplate
        Bundled template to render (default ``"local"``).
    user_endpoint_config : dict, optional
        Template options, checked against the template's schema now.
    resource_specification : dict, optional
        Sent with every task, as with the SDK ``Executor``, and handed to the
        engine unchanged, as a real endpoint's interchange does: a
        ``GlobusMPIEngine`` refuses a task without one (as on a real endpoint),
        a ``GlobusComputeEngine`` refuses MPI keys.  Only specs a real endpoint
        would accept and then never answer are refused early, at submit (see
        :mod:`bundle.endpoints.local.spec_gate`).
    task_group_id : str or uuid.UUID, optional
        Task group of submitted tasks (one is made when not given).
    run_dir : path, optional
        Folder for engine logs, submit scripts and task working dirs.  By
        default a new temporary folder, removed at shutdown unless an engine
        failed to start (so its logs stay for you to read).
    start_timeout : float
        Seconds the workers have to connect, counted from the launch of their first
        block, before pending and new tasks fail with
        :class:`~bundle.errors.EndpointStartError` (default 60).
    serializer : ComputeSerializer, optional
        Serializer for functions, arguments and results.

    Examples
    --------
    >>> with LocalEndpoint(user_endpoint_config={"engine_type": "GlobusComputeEngine"}) as ep:
    ...     ep.submit(pow, 2, 10).result()
    1024

    A ``GlobusMPIEngine`` (the templates' default) needs a spec for every task, Python ones too:

    >>> with LocalEndpoint(resource_specification={"num_nodes": 1, "ranks_per_node": 1, "num_ranks": 1}) as ep:
    ...     ep.submit(pow, 2, 10).result()
    1024
    """

    def __init__(
        self,
        template: str | EndpointTemplate = "local",
        user_endpoint_config: dict[str, t.Any] | None = None,
        resource_specification: dict[str, t.Any] | None = None,
        task_group_id: str | uuid.UUID | None = None,
        *,
        run_dir: str | pathlib.Path | None = None,
        start_timeout: float = 60.0,
        serializer: ComputeSerializer | None = None,
    ) -> None:
        from globus_compute_sdk.serialize import ComputeSerializer

        self.template = template if isinstance(template, EndpointTemplate) else get_template(template)
        self.start_timeout = start_timeout
        self.serializer = serializer or ComputeSerializer()
        self._own_run_dir = run_dir is None
        self._run_dir = pathlib.Path(run_dir) if run_dir is not None else None
        self._lock = threading.RLock()
        self._hosts: dict[str, EngineHost] = {}
        self._stopping: list[EngineHost] = []
        self._functions: dict[str, str] = {}
        self._fn_ids: dict[t.Any, str] = {}
        self._futures: dict[str, ComputeFuture] = {}
        self._all_done = threading.Condition(self._lock)
        self._stopped = False
        self._task_group_id = uuid.UUID(str(task_group_id)) if task_group_id else uuid.uuid4()
        self._announcer = TaskIdAnnouncer()
        self._pool_nodes: dict[int, int | None] = {}
        self._resource_specification: dict[str, t.Any] | None = None
        self._user_endpoint_config: dict[str, t.Any] | None = None
        self.user_endpoint_config = user_endpoint_config
        self.resource_specification = resource_specification
        _LIVE.add(self)
        interrupt.install()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(template={self.template.name!r}, engines={len(self._hosts)})"

    # --- properties with the SDK Executor's names and checks -------------------------

    @property
    def endpoint_id(self) -> str:
        """Always ``"local"``: the key :class:`~bundle.endpoints.session.GCSession` uses."""
        return "local"

    @property
    def task_group_id(self) -> uuid.UUID:
        """The task group submitted tasks belong to."""
        return self._task_group_id

    @task_group_id.setter
    def task_group_id(self, value: str | uuid.UUID) -> None:
        self._task_group_id = uuid.UUID(str(value))

    @property
    def resource_specification(self) -> dict[str, t.Any] | None:
        """Resource specification sent with each task (JSON-serializable dict or None)."""
        return self._resource_specification

    @resource_specification.setter
    def resource_specification(self, value: dict[str, t.Any] | None) -> None:
        self._resource_specification = checked_spec(value)

    @property
    def user_endpoint_config(self) -> dict[str, t.Any] | None:
        """Template options; each distinct value runs on its own engine."""
        return self._user_endpoint_config

    @user_endpoint_config.setter
    def user_endpoint_config(self, value: dict[str, t.Any] | None) -> None:
        if value is not None and not isinstance(value, dict):
            raise TypeError(f"Config must be of type dict, not {type(value).__name__}")
        self.template.validate(value)
        self._user_endpoint_config = value

    @property
    def run_dir(self) -> pathlib.Path:
        """Folder holding the engines' logs and task working dirs."""
        with self._lock:
            if self._run_dir is None:
                self._run_dir = pathlib.Path(tempfile.mkdtemp(prefix="libe-gc-local-"))
                reaper.ensure_watcher()
                reaper.register_folder(self._run_dir)  # removed by the watcher if the driver is killed
            return self._run_dir

    # --- engines ----------------------------------------------------------------------

    def _host(self) -> EngineHost:
        """Return the engine serving the current ``user_endpoint_config``, started on first use."""
        key = config_key(self._user_endpoint_config)
        with self._lock:
            if self._stopped:
                raise RuntimeError(f"{self!r} is shutdown; no new functions may be executed")
            host = self._hosts.get(key)
            if host is None:
                run_dir = self.run_dir / f"engine-{len(self._hosts)}"
                host = EngineHost(self.template, dict(self._user_endpoint_config or {}), run_dir, self.start_timeout)
                try:
                    host.start()
                except BaseException:  # Ctrl-C while starting, or a start that failed: leave nothing behind
                    host.stop_now()
                    raise
                self._hosts[key] = host
            return host

    def start(self) -> LocalEndpoint:
        """Start the engine for the current ``user_endpoint_config`` now rather than at first submit."""
        self._host()
        return self

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the current engine's workers have connected.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait (default: the start timeout plus a margin).

        Returns
        -------
        bool
            True once connected; raises the start failure if there was one.
        """
        host = self._host()
        deadline = time.monotonic() + (timeout if timeout is not None else self.start_timeout + 5)
        while time.monotonic() < deadline:
            if host.ready.wait(0.2):
                return True
            if host.failure is not None:
                raise host.failure
        return host.ready.is_set()

    # --- functions and tasks -----------------------------------------------------------

    def register_function(self, fn: t.Callable[..., t.Any], function_id: str | None = None, **_: t.Any) -> str:
        """Serialize ``fn`` once and return its function id.

        Parameters
        ----------
        fn : callable
            The function (or ``ShellFunction`` / ``MPIFunction``).
        function_id : str, optional
            Use this id rather than a new one.

        Returns
        -------
        str
            The function id.

        Raises
        ------
        ValueError
            If ``fn`` is already registered (as the SDK Executor does).
        globus_compute_sdk.errors.SerializationError
            If ``fn`` cannot be serialized.
        """
        with self._lock:
            if self._stopped:
                raise RuntimeError(f"{self!r} is shutdown; refusing to register function")
            if fn in self._fn_ids:
                cached = self._fn_ids[fn]
                if function_id == cached:
                    return cached
                raise ValueError(f"Function already registered as function id: {cached}")
        buffer = self.serializer.serialize(fn)
        fid = function_id or str(uuid.uuid4())
        with self._lock:
            self._functions[fid] = buffer
            self._fn_ids[fn] = fid
        return fid

    def submit(self, fn: t.Callable[..., t.Any], *args: t.Any, **kwargs: t.Any) -> ComputeFuture:
        """Run ``fn(*args, **kwargs)`` on the engine.

        Returns
        -------
        ComputeFuture
            Resolves to the function's return value, or raises
            ``TaskExecutionFailed`` with the remote traceback.
        """
        with self._lock:
            fid = self._fn_ids.get(fn)
        if fid is None:
            fid = self.register_function(fn)
        return self.submit_to_registered_function(fid, args=args, kwargs=kwargs)

    def _engine_spec(self, host: EngineHost, resource_specification: dict[str, t.Any] | None) -> dict[str, t.Any]:
        """Return the spec the engine gets, as a real endpoint's interchange passes it; refuse only hangs."""
        spec = as_sent(resource_specification)
        nodes = None
        if host.is_mpi and spec:
            key = id(host)
            if key not in self._pool_nodes:  # once per engine: inside Slurm it asks scontrol
                self._pool_nodes[key] = engine_nodes(self.template, host.options)
            nodes = self._pool_nodes[key]
        refuse_hanging_spec(spec, is_mpi=host.is_mpi, nodes=nodes, template=self.template.name)
        return spec

    def submit_to_registered_function(
        self, function_id: str, args: tuple[t.Any, ...] | None = None, kwargs: dict[str, t.Any] | None = None
    ) -> ComputeFuture:
        """Run an already registered function with the given arguments.

        Parameters
        ----------
        function_id : str
            Id from :meth:`register_function`.
        args : tuple, optional
            Positional arguments.
        kwargs : dict, optional
            Keyword arguments.

        Returns
        -------
        ComputeFuture
            The task's future.  As with the SDK, its ``task_id`` is set a moment later (by another
            thread), and always before its result.

        Raises
        ------
        bundle.errors.ResourceSpecificationError
            Only for a ``resource_specification`` a real endpoint would accept and never answer
            (see :mod:`bundle.endpoints.local.spec_gate`); specs a real endpoint refuses fail the task the same
            way (``TaskExecutionFailed`` naming ``InvalidResourceSpecification``).
        """
        # Arguments that cannot be serialized fail here, before an engine is started for them.
        return self.submit_serialized(
            function_id,
            self.serializer.serialize(tuple(args or ())),
            self.serializer.serialize(dict(kwargs or {})),
            self._resource_specification,
        )

    def register_serialized(self, buffer: str, function_id: str) -> None:
        """Register a function serialized by this endpoint's serializer in another process.

        Parameters
        ----------
        buffer : str
            ``ComputeSerializer.serialize(fn)``.
        function_id : str
            Its function id.
        """
        with self._lock:
            if self._stopped:
                raise RuntimeError(f"{self!r} is shutdown; refusing to register function")
            self._functions[function_id] = buffer

    def submit_serialized(
        self,
        function_id: str,
        args_buffer: str,
        kwargs_buffer: str,
        resource_specification: dict[str, t.Any] | None,
        task_id: uuid.UUID | None = None,
    ) -> ComputeFuture:
        """Run a registered function with arguments serialized by this endpoint's serializer.

        :meth:`submit_to_registered_function` after serializing, with the spec given rather than
        :attr:`resource_specification`: the way in for tasks serialized in another process (see
        :mod:`bundle.endpoints.local.shared`).

        Parameters
        ----------
        function_id : str
            Id from :meth:`register_function` or :meth:`register_serialized`.
        args_buffer, kwargs_buffer : str
            ``ComputeSerializer.serialize`` of the positional (a tuple) and keyword (a dict) arguments.
        resource_specification : dict, optional
            The task's resource specification.
        task_id : uuid.UUID, optional
            The task's id (a new one when not given).

        Returns
        -------
        ComputeFuture
            The task's future.
        """
        from globus_compute_common import messagepack
        from globus_compute_common.messagepack.message_types import Task
        from globus_compute_sdk.sdk.asynchronous.compute_future import ComputeFuture

        with self._lock:
            buffer = self._functions.get(function_id)
        if buffer is None:
            raise ValueError(f"unknown function id {function_id!r}: register the function with this endpoint first")
        payload = self.serializer.pack_buffers([buffer, args_buffer, kwargs_buffer])
        host = self._host()
        spec = self._engine_spec(host, resource_specification)
        # Handed to the engine on the caller's thread.  A submitter thread as in the SDK Executor was
        # measured: faster for a caller that submits everything at once, slower for GC-only mode's
        # manager, which submits one sim at a time and then waited on the extra thread for the GIL.
        task_id = task_id or uuid.uuid4()
        tid = str(task_id)
        packed = messagepack.pack(Task(task_id=task_id, task_buffer=payload))
        fut = ComputeFuture()
        with self._lock:
            self._futures[tid] = fut
        fut.add_done_callback(lambda _f: self._forget(tid))
        gcf = host.submit(task_id, function_id, packed, spec)
        gcf.add_done_callback(lambda g: self._complete(g, fut, tid))
        self._announcer.announce(fut, tid)
        return fut

    def _forget(self, task_id: str) -> None:
        with self._lock:
            self._futures.pop(task_id, None)
            if not self._futures:
                self._all_done.notify_all()

    def _complete(self, gcf: Future[t.Any], fut: ComputeFuture, task_id: str) -> None:
        """Unpack an engine result the way the SDK Executor does."""
        from globus_compute_common import messagepack
        from globus_compute_common.messagepack.message_types import Result
        from globus_compute_sdk.errors import TaskExecutionFailed

        finished = time.time()
        if fut.task_id is None:
            fut.task_id = task_id  # as with the SDK: the id is known before the result
        if fut.done():
            return
        try:
            try:
                packed = gcf.result()
            except BaseException as err:
                fut.set_exception(err)
                return
            result = messagepack.unpack(packed)
            if not isinstance(result, Result):
                fut.set_exception(TypeError(f"engine answered with a {type(result).__name__}, not a Result"))
                return
            if result.is_error:
                # The SDK passes the result message's timestamp: when the endpoint finished the task.
                fut.set_exception(TaskExecutionFailed(result.data, str(int(finished))))
                return
            try:
                fut.set_result(self.serializer.deserialize(result.data))
            except Exception as err:
                exc = Exception(f"Malformed or unexpected data structure. Data: {result.data}")
                exc.__cause__ = err
                fut.set_exception(exc)
        except InvalidStateError:  # cancelled meanwhile
            pass

    # --- shutdown ---------------------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the engines, leaving no process behind.

        Parameters
        ----------
        wait : bool
            Wait for outstanding tasks to finish first.
        cancel_futures : bool
            Cancel outstanding futures instead of waiting for them.
        """
        with self._lock:
            if self._stopped and not self._hosts:
                return
            if cancel_futures:
                for fut in list(self._futures.values()):
                    _cancel(fut)
            if wait:
                while self._futures and not any(h.failure for h in self._hosts.values()):
                    self._all_done.wait(0.5)
            self._stopped = True
            hosts = list(self._hosts.values())
            self._hosts.clear()
        for host in hosts:
            host.shutdown()
        with self._lock:
            leftover = list(self._futures.values())
        for fut in leftover:
            if not fut.done():
                try:
                    fut.set_exception(
                        EndpointShutdownError("the local endpoint was shut down before this task finished")
                    )
                except InvalidStateError:
                    pass
        failed = any(h.failure is not None for h in hosts)
        if self._own_run_dir and self._run_dir is not None:
            if failed:
                reaper.register_folder(self._run_dir, keep=True)  # the failed engine's logs stay for the user
            else:
                shutil.rmtree(self._run_dir, ignore_errors=True)
        _LIVE.discard(self)

    def stop_now(self, kill: bool = False) -> None:
        """Stop at once, for an interrupted run: cancel the futures, stop the engines, remove the run folder.

        Parameters
        ----------
        kill : bool
            SIGKILL the engines' processes at once (a second Ctrl-C) instead of a short grace.
        """
        with self._lock:
            for fut in list(self._futures.values()):
                _cancel(fut)
            self._stopped = True
            self._stopping.extend(self._hosts.values())  # a second signal kills what the first is stopping
            self._hosts.clear()
            hosts = list(self._stopping)
        for host in hosts:
            host.stop_now(kill)
        if self._own_run_dir and self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)

    def __enter__(self) -> LocalEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=True)
