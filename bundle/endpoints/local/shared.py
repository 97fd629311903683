"""One local endpoint for all the worker processes of a run (libEnsemble's ``local`` comms).

With ``local`` comms libEnsemble calls the executor's ``serial_setup`` in the manager process,
then forks one process per worker.  A :class:`~bundle.GlobusComputeExecutor` on the local endpoint
opens an :class:`EndpointShare` there: a listener on an abstract Unix socket (Linux; nothing is
made on the file system) that accepts only processes holding its random key, which the forked
workers inherit.  Each worker process then reaches the manager's
:class:`~bundle.endpoints.local.LocalEndpoint` through an :class:`EndpointClient`, which has the
surface the executor uses of an endpoint executor.  So a run has one engine, as it has one endpoint
at a site: ``slots_per_node`` caps the tasks in flight across all the workers, and the engine starts
once, for all of them.

Functions and arguments are serialized in the worker process, by the SDK's serializer (what is
sent is fixed at submit, as before); the manager packs each task and hands it to the engine, and
refuses there what the endpoint refuses at submit (the exception is raised in the worker).  Results
travel back as the SDK's serializer writes them.  A future cancelled in a worker is cancelled in the
manager too.  When the manager's endpoint stops (Ctrl-C, SIGTERM, the end of the process) the
worker's futures are cancelled or fail with :class:`~bundle.errors.EndpointShutdownError`; when a
worker process goes, the manager stops waiting for its tasks.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import os
import pickle
import secrets
import sys
import threading
import typing as t
import uuid
from multiprocessing.connection import Client, Connection, Listener

from bundle.errors import EndpointShutdownError
from bundle.processes import interrupt
from bundle.processes.forksafe import after_fork_in_child

if t.TYPE_CHECKING:
    from concurrent.futures import Future

    from globus_compute_sdk.sdk.asynchronous.compute_future import ComputeFuture

    from bundle.endpoints.local.endpoint import LocalEndpoint

log = logging.getLogger(__name__)

__all__ = ["EndpointClient", "EndpointShare", "ShareKey", "available", "client", "open_share"]


@dataclasses.dataclass(frozen=True)
class ShareKey:
    """What a worker process needs to reach the manager's endpoint (inherited through fork, or pickled)."""

    address: str
    """Abstract Unix socket address (starts with a NUL byte)."""
    authkey: bytes = dataclasses.field(repr=False)
    """Random key the listener checks (``multiprocessing``'s HMAC challenge)."""
    owner: int
    """The pid of the process whose endpoint is shared."""


def available() -> bool:
    """Whether endpoints can be shared here (abstract Unix sockets: Linux)."""
    return sys.platform.startswith("linux")


def _portable(err: BaseException) -> BaseException:
    """Return ``err`` if it survives pickling, else a ``RuntimeError`` that names it."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")


# --- the manager's side --------------------------------------------------------------------------


class EndpointShare:
    """Serve one :class:`~bundle.endpoints.local.LocalEndpoint` of this process to its forked worker processes.

    Parameters
    ----------
    endpoint : callable
        Returns the endpoint to serve (called on a worker's first request, so that no engine starts
        before a task needs one).
    """

    def __init__(self, endpoint: t.Callable[[], LocalEndpoint]) -> None:
        self._endpoint = endpoint
        self.key = ShareKey(f"\0libe-gc-share-{uuid.uuid4().hex}", secrets.token_bytes(32), os.getpid())
        self._listener = Listener(self.key.address, family="AF_UNIX", authkey=self.key.authkey)
        self._closed = False
        self._lock = threading.Lock()
        self._conns: set[Connection] = set()
        threading.Thread(target=self._accept, name="libe-gc-share", daemon=True).start()

    @property
    def closed(self) -> bool:
        """Whether the share no longer accepts worker processes."""
        return self._closed

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn = self._listener.accept()
            except Exception:  # a process without the key, or the listener closed
                continue
            if self._closed:
                conn.close()
                return
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name="libe-gc-share-conn", daemon=True).start()

    def _serve(self, conn: Connection) -> None:
        """Answer one worker process's requests until it goes; then stop waiting for its tasks."""
        from bundle.endpoints.local.endpoint import _cancel

        send_lock = threading.Lock()
        pending: dict[str, ComputeFuture] = {}

        def send(message: tuple[t.Any, ...]) -> None:
            with send_lock:
                try:
                    conn.send(message)
                except Exception:  # the worker went; its tasks are cancelled below
                    pass

        def answer(fut: ComputeFuture, tid: str, endpoint: LocalEndpoint) -> None:
            pending.pop(tid, None)
            if fut.cancelled():
                send(("result", tid, "cancelled", None))
                return
            err = fut.exception()
            if err is not None:
                send(("result", tid, "error", _portable(err)))
                return
            try:
                data = endpoint.serializer.serialize(fut.result())
            except Exception as exc:
                send(("result", tid, "error", _portable(exc)))
                return
            send(("result", tid, "ok", data))

        try:
            while True:
                try:
                    message = conn.recv()
                except Exception:  # EOF: the worker process ended or closed its client
                    break
                op, req = message[0], message[1]
                try:
                    endpoint = self._endpoint()
                    if op == "register":
                        endpoint.register_serialized(message[3], message[2])
                        send(("done", req, None))
                    elif op == "submit":
                        task_id = uuid.uuid4()
                        tid = str(task_id)
                        fut = endpoint.submit_serialized(message[2], message[3], message[4], message[5], task_id)
                        pending[tid] = fut
                        send(("done", req, tid))
                        fut.add_done_callback(functools.partial(answer, tid=tid, endpoint=endpoint))
                    elif op == "cancel":
                        cancelled = pending.get(message[2])
                        if cancelled is not None:
                            _cancel(cancelled)
                    else:
                        raise ValueError(f"unknown request {op!r}")
                except BaseException as err:  # refused at submit: raised in the worker process
                    send(("error", req, _portable(err)))
        finally:
            for fut in list(pending.values()):
                _cancel(fut)
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def close(self) -> None:
        """Stop accepting worker processes and close the connections (their futures then fail)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conns = list(self._conns)
        try:  # wake the accepting thread (a closed listening socket does not)
            Client(self.key.address, family="AF_UNIX", authkey=self.key.authkey).close()
        except Exception:
            pass
        self._listener.close()
        for conn in conns:
            try:
                conn.close()
            except OSError:
                pass


_SHARES: dict[str, EndpointShare] = {}
_SHARES_LOCK = threading.Lock()


def open_share(endpoint: t.Callable[[], LocalEndpoint]) -> ShareKey:
    """Share the endpoint ``endpoint()`` returns with worker processes forked from now on.

    Parameters
    ----------
    endpoint : callable
        Returns this process's :class:`~bundle.endpoints.local.LocalEndpoint` to serve.

    Returns
    -------
    ShareKey
        For :func:`client`, in a worker process.
    """
    share = EndpointShare(endpoint)
    with _SHARES_LOCK:
        _SHARES[share.key.address] = share
    return share.key


def is_open(key: ShareKey) -> bool:
    """Whether this process serves ``key``'s share and it is open."""
    share = _SHARES.get(key.address)
    return share is not None and key.owner == os.getpid() and not share.closed


# --- a worker process's side -----------------------------------------------------------------------


class EndpointClient:
    """A worker process's way to the manager's :class:`~bundle.endpoints.local.LocalEndpoint`.

    It has the surface of an endpoint executor that the executor uses: ``serializer``,
    ``resource_specification``, ``register_function``, ``submit``, ``submit_to_registered_function``
    and ``shutdown``.

    Parameters
    ----------
    key : ShareKey
        The manager's share.
    """

    def __init__(self, key: ShareKey) -> None:
        from globus_compute_sdk.serialize import ComputeSerializer

        self.key = key
        self.serializer = ComputeSerializer()
        self._conn = Client(key.address, family="AF_UNIX", authkey=key.authkey)
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._requests = itertools.count(1)
        self._replies: dict[int, tuple[threading.Event, list[t.Any]]] = {}
        self._submitted: dict[int, ComputeFuture] = {}
        self._futures: dict[str, ComputeFuture] = {}
        self._fn_ids: dict[t.Any, str] = {}
        self._resource_specification: dict[str, t.Any] | None = None
        self._closed = False
        threading.Thread(target=self._read, name="libe-gc-share-client", daemon=True).start()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(manager pid {self.key.owner})"

    @property
    def endpoint_id(self) -> str:
        """Always ``"local"``, as for the endpoint it reaches."""
        return "local"

    @property
    def closed(self) -> bool:
        """Whether the connection to the manager is closed."""
        return self._closed

    @property
    def resource_specification(self) -> dict[str, t.Any] | None:
        """Resource specification sent with each task (JSON-serializable dict or None)."""
        return self._resource_specification

    @resource_specification.setter
    def resource_specification(self, value: dict[str, t.Any] | None) -> None:
        from bundle.endpoints.local.endpoint import checked_spec

        self._resource_specification = checked_spec(value)

    def _request(self, *message: t.Any, future: ComputeFuture | None = None) -> t.Any:
        """Send ``message`` with a request id; return the manager's answer or raise its error."""
        req = next(self._requests)
        event = threading.Event()
        box: list[t.Any] = []
        with self._lock:
            if self._closed:
                raise EndpointShutdownError("the run's local endpoint (in libEnsemble's manager process) is stopped")
            self._replies[req] = (event, box)
            if future is not None:
                self._submitted[req] = future
        try:
            with self._send_lock:
                self._conn.send((message[0], req, *message[1:]))
        except Exception as err:
            self._close(err)
        event.wait()
        kind, value = box[0]
        if kind == "error":
            raise value
        return value

    def _read(self) -> None:
        reason: BaseException = EndpointShutdownError(
            "the run's local endpoint (in libEnsemble's manager process) stopped before this task finished"
        )
        while True:
            try:
                message = self._conn.recv()
            except Exception:
                break
            try:
                self._dispatch(message)
            except Exception:  # a malformed answer: said in the log, the others still served
                log.exception("unexpected answer from the manager's endpoint: %.200r", message)
        self._close(reason)

    def _dispatch(self, message: tuple[t.Any, ...]) -> None:
        from bundle.endpoints.local.endpoint import _cancel

        op = message[0]
        if op == "result":
            _, tid, kind, data = message
            with self._lock:
                fut = self._futures.pop(tid, None)
            if fut is None or fut.done():
                return
            if kind == "ok":
                try:
                    fut.set_result(self.serializer.deserialize(data))
                except Exception as err:
                    fut.set_exception(err)
            elif kind == "cancelled":
                _cancel(fut)
            else:
                fut.set_exception(data)
            return
        req, value = message[1], message[2]
        with self._lock:
            event, box = self._replies.pop(req, (None, None))
            fut = self._submitted.pop(req, None)
            if op == "done" and fut is not None:
                fut.task_id = value
                self._futures[value] = fut
        if event is not None and box is not None:
            box.append((op, value))
            event.set()

    def _close(self, reason: BaseException) -> None:
        from bundle.endpoints.local.endpoint import _cancel

        with self._lock:
            self._closed = True
            waiting = list(self._replies.values())
            self._replies.clear()
            futures = [*self._futures.values(), *self._submitted.values()]
            self._futures.clear()
            self._submitted.clear()
        for event, box in waiting:
            box.append(("error", reason))
            event.set()
        for fut in futures:
            if not fut.done():
                try:
                    fut.set_exception(reason)
                except Exception:
                    _cancel(fut)
        try:
            self._conn.close()
        except OSError:
            pass

    def register_function(self, fn: t.Callable[..., t.Any], function_id: str | None = None, **_: t.Any) -> str:
        """Serialize ``fn`` here and register it with the manager's endpoint; return its function id.

        Parameters
        ----------
        fn : callable
            The function.
        function_id : str, optional
            Use this id rather than a new one.

        Returns
        -------
        str
            The function id.
        """
        with self._lock:
            cached = self._fn_ids.get(fn)
        if cached is not None and function_id in (None, cached):
            return cached
        buffer = self.serializer.serialize(fn)
        fid = function_id or str(uuid.uuid4())
        self._request("register", fid, buffer)
        with self._lock:
            self._fn_ids[fn] = fid
        return fid

    def submit(self, fn: t.Callable[..., t.Any], *args: t.Any, **kwargs: t.Any) -> ComputeFuture:
        """Run ``fn(*args, **kwargs)`` on the manager's endpoint."""
        return self.submit_to_registered_function(self.register_function(fn), args=args, kwargs=kwargs)

    def submit_to_registered_function(
        self, function_id: str, args: tuple[t.Any, ...] | None = None, kwargs: dict[str, t.Any] | None = None
    ) -> ComputeFuture:
        """Run a registered function on the manager's endpoint, with the arguments serialized now.

        Returns
        -------
        ComputeFuture
            The task's future (its ``task_id`` is set when this returns).
        """
        from globus_compute_sdk.sdk.asynchronous.compute_future import ComputeFuture

        args_buffer = self.serializer.serialize(tuple(args or ()))
        kwargs_buffer = self.serializer.serialize(dict(kwargs or {}))
        fut = ComputeFuture()
        tid = self._request("submit", function_id, args_buffer, kwargs_buffer, self._resource_specification, future=fut)
        fut.add_done_callback(lambda f: self._cancelled(f, tid))
        return fut

    def _cancelled(self, fut: Future[t.Any], tid: str) -> None:
        """Tell the manager a future cancelled here (its task's result is no longer wanted)."""
        if not fut.cancelled() or self._closed:
            return
        with self._lock:
            self._futures.pop(tid, None)
        try:
            with self._send_lock:
                self._conn.send(("cancel", 0, tid))
        except Exception:
            pass

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Close the connection; the manager's endpoint goes on (it is the manager's to stop).

        Parameters
        ----------
        wait : bool
            Wait for this process's outstanding tasks first.
        cancel_futures : bool
            Cancel them instead.
        """
        from concurrent.futures import wait as wait_for

        from bundle.endpoints.local.endpoint import _cancel

        with self._lock:
            futures = list(self._futures.values())
        if cancel_futures:
            for fut in futures:
                _cancel(fut)
        elif wait:
            wait_for(futures)
        self._close(EndpointShutdownError("this process's client of the run's local endpoint was shut down"))


_CLIENTS: dict[str, EndpointClient] = {}
_CLIENTS_LOCK = threading.Lock()


def client(key: ShareKey) -> EndpointClient:
    """Return this process's client of ``key``'s share (connected on first use).

    Raises
    ------
    OSError
        When the share cannot be reached (the manager's process or its share is gone).
    """
    with _CLIENTS_LOCK:
        found = _CLIENTS.get(key.address)
        if found is None or found.closed:
            found = _CLIENTS[key.address] = EndpointClient(key)
        return found


@after_fork_in_child
def _forget_parent_state() -> None:
    """In a forked child: the parent's shares and clients are not its own (it connects afresh)."""
    global _SHARES, _SHARES_LOCK, _CLIENTS, _CLIENTS_LOCK
    _SHARES = {}
    _SHARES_LOCK = threading.Lock()
    _CLIENTS = {}
    _CLIENTS_LOCK = threading.Lock()


@interrupt.on_interrupt
def _stop(kill: bool) -> None:
    """Ctrl-C or SIGTERM: close this process's shares and clients (the endpoints stop themselves)."""
    for share in list(_SHARES.values()):
        share.close()
    for found in list(_CLIENTS.values()):
        found._close(EndpointShutdownError("the run was interrupted"))
