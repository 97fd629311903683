"""A per-process cache of endpoint executors, shared by the executor and GC-only modes.

``GCSession.get_executor(endpoint, user_endpoint_config=...)`` returns one
executor per (endpoint, template, user_endpoint_config) key:

* ``"local"`` or ``"local:<template>"``: a :class:`~bundle.endpoints.local.LocalEndpoint`
  rendering that bundled template (``local`` by default);
* an endpoint UUID: a :class:`globus_compute_sdk.Executor` for that cloud
  endpoint, created on first use.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import typing as t
import uuid
import warnings
from concurrent.futures import Future

from bundle.endpoints.templates import config_key
from bundle.processes import interrupt
from bundle.processes.forksafe import KeyedLocks, after_fork_in_child

log = logging.getLogger(__name__)

LOCAL = "local"


class ExecutorLike(t.Protocol):
    """What the bundle uses of an endpoint executor.

    A ``globus_compute_sdk.Executor`` or a :class:`~bundle.endpoints.local.LocalEndpoint`; mypy checks that both match.
    """

    @property
    def resource_specification(self) -> dict[str, t.Any] | None:
        """The ``resource_specification`` sent with each task."""

    @resource_specification.setter
    def resource_specification(self, value: dict[str, t.Any] | None) -> None: ...

    def register_function(self, fn: t.Callable[..., t.Any], function_id: str | None = None, **kwargs: t.Any) -> str:
        """Register ``fn`` with the endpoint; return its function id."""

    def submit(self, fn: t.Callable[..., t.Any], *args: t.Any, **kwargs: t.Any) -> Future[t.Any]:
        """Run ``fn(*args, **kwargs)`` on the endpoint."""

    def submit_to_registered_function(
        self, function_id: str, args: tuple[t.Any, ...] | None = None, kwargs: dict[str, t.Any] | None = None
    ) -> Future[t.Any]:
        """Run a registered function on the endpoint."""

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the executor."""


if t.TYPE_CHECKING:
    from globus_compute_sdk import Executor

    from bundle.endpoints.local import LocalEndpoint

    def _both_are_executor_like(local: LocalEndpoint, cloud: Executor) -> tuple[ExecutorLike, ExecutorLike]:
        return local, cloud  # mypy fails here when either stops matching the protocol


def parse_endpoint(endpoint: str | uuid.UUID, template: str | None = None) -> tuple[str, str | None]:
    """Split an endpoint reference into (endpoint, template).

    Parameters
    ----------
    endpoint : str or uuid.UUID
        ``"local"``, ``"local:<template>"`` or an endpoint UUID.
    template : str, optional
        Bundled template: the one a local endpoint renders (it must agree with a ``local:`` suffix), or
        for a cloud endpoint the one its administrator configured it from, used only to check
        ``user_endpoint_config`` on the submit side before the first task leaves.

    Returns
    -------
    tuple
        ``("local", template)`` or ``(<canonical uuid>, template or None)``.

    Raises
    ------
    ValueError
        For anything else.
    """
    text = str(endpoint).strip()
    if text == LOCAL or text.startswith(LOCAL + ":"):
        suffix = text[len(LOCAL) + 1 :] or None
        if suffix and template and suffix != template:
            raise ValueError(f"endpoint {text!r} names template {suffix!r} but template={template!r} was also given")
        return LOCAL, template or suffix or "local"
    try:
        canonical = str(uuid.UUID(text))
    except ValueError:
        raise ValueError(
            f"endpoint must be 'local', 'local:<template>' or a Globus Compute endpoint UUID, got {endpoint!r}"
        ) from None
    return canonical, template


def merge_local_options(
    local_options: t.Mapping[str, t.Any] | None,
    old: t.Mapping[str, t.Any] | None,
    old_name: str,
    stacklevel: int = 3,
) -> dict[str, t.Any]:
    """Return ``local_options`` merged with options given under a deprecated name (which warns).

    Parameters
    ----------
    local_options : mapping, optional
        The local endpoint's options under their one name.
    old : mapping, optional
        The same options under a deprecated name (``GCOnlySpecs.endpoint_options``,
        ``GCSession.get_executor(**kwargs)``); they lose to ``local_options`` on a clash.
    old_name : str
        How the deprecated spelling was written, for the warning.
    stacklevel : int
        Of the warning: 3 points at the caller of the function that calls this one.

    Returns
    -------
    dict
    """
    merged = dict(old or {})
    if merged:
        warnings.warn(
            f"{old_name} is deprecated and will be removed in the next release; pass local_options={{...}} "
            "(the one name for a local endpoint's options in GlobusComputeExecutor, GCOnlySpecs and GCSession)",
            DeprecationWarning,
            stacklevel=stacklevel,
        )
    merged.update(local_options or {})
    return merged


class GCSession:
    """Thread-safe, per-process cache of endpoint executors.

    All methods are class methods: there is one cache per process.
    """

    _lock = threading.Lock()
    _creating: t.ClassVar[KeyedLocks] = KeyedLocks()
    _executors: t.ClassVar[dict[tuple[str, str | None, str, str], ExecutorLike]] = {}
    _function_ids: t.ClassVar[dict[tuple[int, t.Any], str]] = {}
    _exit_hooked: t.ClassVar[int | None] = None

    @staticmethod
    def _key(
        endpoint: str,
        template: str | None,
        config: t.Mapping[str, t.Any] | None,
        sdk_options: t.Mapping[str, t.Any] | None = None,
    ) -> tuple[str, str | None, str, str]:
        from bundle.endpoints.sdk_options import options_key

        try:
            cfg = config_key(config)
        except (TypeError, ValueError) as err:
            raise TypeError(f"user_endpoint_config must be JSON-serializable: {err}") from err
        return endpoint, template, cfg, options_key(sdk_options)

    @classmethod
    def get_executor(
        cls,
        endpoint: str | uuid.UUID,
        user_endpoint_config: dict[str, t.Any] | None = None,
        *,
        template: str | None = None,
        sdk_options: dict[str, t.Any] | None = None,
        local_options: dict[str, t.Any] | None = None,
        **local_kwargs: t.Any,
    ) -> ExecutorLike:
        """Return the cached executor for this key, creating it on first use.

        Parameters
        ----------
        endpoint : str or uuid.UUID
            ``"local"``, ``"local:<template>"`` or an endpoint UUID.
        user_endpoint_config : dict, optional
            Template options, checked against the template's schema whenever a template is known.
        template : str, optional
            Bundled template: rendered by a local endpoint; for a cloud endpoint, the template it was
            configured from (used to check ``user_endpoint_config`` only).
        sdk_options : dict, optional
            For an endpoint UUID: keyword options of ``globus_compute_sdk.Executor`` (``amqp_port``,
            ``client``, ``batch_size``, ``api_burst_limit``, ``result_serializers``, ...), checked
            against the installed SDK (see :mod:`bundle.endpoints.sdk_options`); part of the key.
        local_options : dict, optional
            Options of a local endpoint (``run_dir``, ``start_timeout``), passed to
            :class:`~bundle.endpoints.local.LocalEndpoint` when one is created; not part of the key.  The same
            name as ``GlobusComputeExecutor(local_options=...)`` and ``GCOnlySpecs(local_options=...)``.
        **local_kwargs
            Deprecated spelling of ``local_options`` (as keyword arguments); warns.

        Returns
        -------
        LocalEndpoint or globus_compute_sdk.Executor

        Raises
        ------
        bundle.errors.TemplateOptionError
            When ``user_endpoint_config`` fails the template's schema.
        """
        from bundle.endpoints.sdk_options import check_sdk_options

        ep, tmpl = parse_endpoint(endpoint, template)
        local_kwargs = merge_local_options(local_options, local_kwargs, "GCSession.get_executor(**kwargs)")
        sdk_opts = check_sdk_options(sdk_options, local=ep == LOCAL)
        key = cls._key(ep, tmpl, user_endpoint_config, sdk_opts)
        if tmpl is not None:
            from bundle.endpoints.templates import get_template

            # Pairing: a bad option is refused here, naming the option, before anything is submitted.
            get_template(tmpl).validate(user_endpoint_config)
        with cls._lock:
            executor = cls._executors.get(key)
        if executor is not None:
            return executor
        # Creating one may be slow (a cloud endpoint's metadata check, a local engine): only callers of
        # this key wait for it, under this key's lock; the shared lock guards the dictionary only.
        with cls._creating.of(key):
            with cls._lock:
                executor = cls._executors.get(key)
            if executor is None:
                executor = cls._create(ep, tmpl, user_endpoint_config, local_kwargs, sdk_opts)
                with cls._lock:
                    cls._executors[key] = executor
                    cls._hook_process_exit()
            return executor

    @staticmethod
    def _create(
        endpoint: str,
        template: str | None,
        config: dict[str, t.Any] | None,
        local_kwargs: dict[str, t.Any],
        sdk_options: dict[str, t.Any] | None = None,
    ) -> ExecutorLike:
        if endpoint == LOCAL:
            from bundle.endpoints.local import LocalEndpoint

            log.debug("creating local endpoint (template %s)", template)
            return LocalEndpoint(template or "local", user_endpoint_config=config, **local_kwargs)
        if local_kwargs:
            raise TypeError(f"options {sorted(local_kwargs)} apply to local endpoints only")
        from globus_compute_sdk import Executor

        from bundle.endpoints.python_check import warn_on_python_mismatch

        log.debug("creating Globus Compute Executor for endpoint %s", endpoint)
        executor = Executor(endpoint_id=endpoint, user_endpoint_config=config, **(sdk_options or {}))
        # Before the first task leaves: a Python minor version that differs from the endpoint's is a warning.
        warn_on_python_mismatch(executor, endpoint)
        return executor

    # --- the names of libEnsemble's Globus Compute design (same meaning) -------------------

    @classmethod
    def get_or_create_executor(cls, endpoint_id: str | uuid.UUID, **kwargs: t.Any) -> ExecutorLike:
        """Return the cached executor of ``endpoint_id``: :meth:`get_executor` under the name libEnsemble uses.

        Parameters
        ----------
        endpoint_id : str or uuid.UUID
            ``"local"``, ``"local:<template>"`` or an endpoint UUID.
        **kwargs
            As for :meth:`get_executor` (``user_endpoint_config``, ``template``, ``sdk_options``, ...).

        Returns
        -------
        LocalEndpoint or globus_compute_sdk.Executor
        """
        return cls.get_executor(endpoint_id, **kwargs)

    @classmethod
    def get_or_create(
        cls, endpoint_id: str | uuid.UUID, func: t.Callable[..., t.Any], **kwargs: t.Any
    ) -> tuple[ExecutorLike, str]:
        """Return the endpoint's executor and ``func``'s function id, registering ``func`` once per executor.

        Parameters
        ----------
        endpoint_id : str or uuid.UUID
            ``"local"``, ``"local:<template>"`` or an endpoint UUID.
        func : callable
            The function to run there.
        **kwargs
            As for :meth:`get_executor`.

        Returns
        -------
        tuple
            ``(executor, function_id)``; the same id for the same executor and function.
        """
        executor = cls.get_executor(endpoint_id, **kwargs)
        with cls._lock:
            fid = cls._function_ids.get((id(executor), func))
        if fid is None:
            _, fid = cls.register_function(endpoint_id, func, **kwargs)
            with cls._lock:
                cls._function_ids[(id(executor), func)] = fid
        return executor, fid

    @classmethod
    def register_function(
        cls, endpoint_id: str | uuid.UUID, func: t.Callable[..., t.Any], **kwargs: t.Any
    ) -> tuple[ExecutorLike, str]:
        """Register ``func`` with the endpoint's executor; return ``(executor, function_id)``.

        The caller keeps the id.  The SDK ``Executor`` and the local endpoint each refuse a
        second registration of the same function; then the id they already hold is returned.

        Parameters
        ----------
        endpoint_id : str or uuid.UUID
            ``"local"``, ``"local:<template>"`` or an endpoint UUID.
        func : callable
            The function to register.
        **kwargs
            As for :meth:`get_executor`.

        Returns
        -------
        tuple
        """
        executor = cls.get_executor(endpoint_id, **kwargs)
        try:
            return executor, str(executor.register_function(func))
        except ValueError:
            known = getattr(executor, "_function_registry", None) or getattr(executor, "_fn_ids", None) or {}
            for key, fid in dict(known).items():
                if key is func or (isinstance(key, tuple) and key and key[0] is func):
                    return executor, str(fid)
            raise

    @classmethod
    def _hook_process_exit(cls) -> None:
        """Also clear at the end of a ``multiprocessing`` child, which skips ``atexit`` handlers."""
        if cls._exit_hooked == os.getpid():
            return
        import multiprocessing.util

        multiprocessing.util.Finalize(None, cls.clear, exitpriority=100)
        cls._exit_hooked = os.getpid()

    @classmethod
    def holds(cls, executor: ExecutorLike) -> bool:
        """Return whether ``executor`` is still in the cache (not cleared since it was handed out)."""
        return any(e is executor for e in list(cls._executors.values()))

    @classmethod
    def cached(cls) -> int:
        """Return the number of executors in the cache."""
        with cls._lock:
            return len(cls._executors)

    @classmethod
    def clear(cls, wait: bool = False) -> None:
        """Shut down and forget every cached executor.

        Parameters
        ----------
        wait : bool
            Wait for outstanding tasks; otherwise they are cancelled.
        """
        with cls._lock:
            executors = list(cls._executors.values())
            cls._executors.clear()
            cls._function_ids.clear()
        for executor in executors:
            try:
                executor.shutdown(wait=wait, cancel_futures=not wait)
            except Exception:
                log.exception("shutting down %r failed", executor)


atexit.register(GCSession.clear)


@interrupt.on_interrupt
def _cancel_cloud_futures(kill: bool) -> None:
    """Ctrl-C or SIGTERM: forget every cached executor, cancelling the futures of SDK executors.

    Local endpoints stop themselves (their own stopper); a later run in the same process (a notebook)
    gets new executors.  Tasks already sent to a cloud endpoint go on there; the SDK has no way to stop them.
    """
    from bundle.endpoints.local import LocalEndpoint

    with GCSession._lock:
        executors = list(GCSession._executors.values())
        GCSession._executors.clear()
        GCSession._function_ids.clear()
    for executor in executors:
        if isinstance(executor, LocalEndpoint):
            continue
        try:
            executor.shutdown(wait=False, cancel_futures=True)
        except Exception:
            log.debug("cancelling %r after an interrupt failed", executor, exc_info=True)


@after_fork_in_child
def _forget_parent_executors() -> None:
    """In a forked child (a libEnsemble worker on ``local`` comms): start with an empty cache.

    The parent's executors hold its sockets and threads; the child creates its own on first use and
    never stops the parent's.
    """
    GCSession._lock = threading.Lock()
    GCSession._executors = {}
    GCSession._function_ids = {}
    GCSession._exit_hooked = None
