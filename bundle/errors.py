"""Exceptions raised by the bundle.

Each error says what went wrong and what to change.  Errors that come back
from a task keep the type the Globus Compute SDK uses
(:class:`globus_compute_sdk.errors.TaskExecutionFailed`), so code written
against a cloud endpoint handles local results unchanged.
"""

from __future__ import annotations


class BundleError(Exception):
    """Base class of the bundle's own errors."""


class TemplateNotFoundError(BundleError, LookupError):
    """An endpoint template name that the bundle does not ship."""


class TemplateOptionError(BundleError, ValueError):
    """A ``user_endpoint_config`` option that fails the template's JSON schema.

    Attributes
    ----------
    template : str
        Name of the endpoint template.
    option : str
        Dotted path of the offending option (empty for the whole document).
    """

    def __init__(self, message: str, *, template: str, option: str) -> None:
        super().__init__(message)
        self.template = template
        self.option = option


class TemplateRenderError(BundleError, RuntimeError):
    """A template rendered to a configuration that Globus Compute cannot load."""


class ResourceSpecificationError(BundleError, ValueError):
    """A ``resource_specification`` that cannot be met or would hang Parsl."""


class TaskSerializationError(BundleError, TypeError):
    """A Python task's function or argument that the endpoint's serializer cannot serialize.

    Attributes
    ----------
    what : str
        The object that failed, e.g. ``"args[0]"`` or ``"kwargs['db']"``.
    """

    def __init__(self, message: str, *, what: str) -> None:
        super().__init__(message)
        self.what = what


class PayloadTooLargeError(BundleError, ValueError):
    """A task's arguments, its result or a registered function over Globus Compute's 10 MiB limit.

    Raised before anything is submitted; the message gives the measured size, the limit and what to
    change (fewer sims per task, large data through files).

    Attributes
    ----------
    what : str
        What was measured.
    size, limit : int
        Its serialized size and the limit, in bytes.
    """

    def __init__(self, message: str, *, what: str, size: int, limit: int) -> None:
        super().__init__(message)
        self.what = what
        self.size = size
        self.limit = limit


class EndpointStartError(BundleError, RuntimeError):
    """The local endpoint's engine could not start its workers.

    Raised (or set on pending futures) when the worker pool does not connect
    within the start timeout, or when the interchange exits; the message
    carries the worker pool's own error output.
    """


class EndpointShutdownError(BundleError, RuntimeError):
    """A task was still running when its endpoint was shut down."""


class EndpointPythonWarning(UserWarning):
    """A cloud endpoint runs another Python minor version than the submit side.

    Functions serialized as Python bytecode (the SDK's default) may then fail to load on
    the endpoint; the warning says which versions were found and what to change.
    """


class TaskPendingTimeoutError(BundleError, TimeoutError):
    """A task the endpoint did not start within the executor's ``pending_timeout``.

    Set as the error of a :class:`~bundle.executor.GlobusComputeTask` (state ``FAILED``) when an
    endpoint is offline, unreachable, or its batch job is still queued after that many seconds.
    """


class EndpointOfflineError(BundleError, RuntimeError):
    """A cloud endpoint went offline while tasks waited on it: it was stopped, or lost its host or network.

    Once the Globus Compute service has reported the endpoint online and then ``offline`` for
    ``offline_timeout`` seconds, tasks still waiting on it fail with this error (executor mode: the
    task is ``FAILED`` and the next ``submit`` raises it; GC-only mode: the run ends).  A task that was
    running on the endpoint is lost with it; one the service still holds runs when the endpoint is back.

    Attributes
    ----------
    endpoint : str
        The endpoint UUID.
    """

    def __init__(self, message: str, *, endpoint: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class UserEndpointStartError(BundleError, RuntimeError):
    """A cloud endpoint could not start a user endpoint for the tasks' ``user_endpoint_config``.

    The endpoint daemon renders its template with the configuration; when the template's schema
    refuses an option (or the identity cannot be mapped, or the process cannot start) it reports why,
    once, and the service fails the tasks waiting at that moment.  Tasks sent with the same
    configuration a moment later would wait for a user endpoint that never starts, so every later
    task of that configuration fails with this error too, at once, without being sent.

    Attributes
    ----------
    endpoint : str
        The endpoint UUID.
    reason : str
        The endpoint's own words (the first line of its report).
    """

    def __init__(self, message: str, *, endpoint: str, reason: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.reason = reason


class BlockLostError(BundleError, RuntimeError):
    """The worker pool (block) a task ran on was lost: a node of its batch job failed, or the job ended.

    Set as the error of a :class:`~bundle.executor.GlobusComputeTask` (state ``FAILED``) in place of
    Parsl's ``ManagerLost``, which arrives once the interchange has missed the pool's heartbeats for
    ``heartbeat_threshold`` seconds; the original error is its ``__cause__``.  The endpoint reruns
    such tasks when ``max_retries_on_system_failure`` allows.
    """


def lost_worker_pool(err: BaseException) -> bool:
    """Whether ``err`` says the task's worker pool was lost (Parsl's ``ManagerLost``, also as remote text).

    Parameters
    ----------
    err : BaseException
        A task's error.

    Returns
    -------
    bool
    """
    return isinstance(err, BlockLostError) or type(err).__name__ == "ManagerLost" or "ManagerLost" in str(err)


def block_lost_message(what: str, err: BaseException) -> str:
    """Compose the message of a :class:`BlockLostError`: what was lost, and what to do.

    Parsl's ``ManagerLost`` names the lost worker pool (its manager id, which is also the name of
    its log folder ``block-<block id>/<manager id>`` in the endpoint's run directory) and the host
    it ran on; the message keeps that line.

    Parameters
    ----------
    what : str
        What failed (``"task <name>"``, ``"the sim"``).
    err : BaseException
        The original error (``ManagerLost``, also as remote text).

    Returns
    -------
    str
    """
    lines = [line.strip() for line in str(err).splitlines() if line.strip().strip("-+")]
    said = [line for line in lines if "ManagerLost" in line or "loss of manager" in line]
    first = (said or lines[-1:] or [type(err).__name__])[-1][:300]
    return (
        f"{what} failed: the block (worker pool) it ran on was lost: the endpoint stopped hearing from it "
        f"(a node of its batch job failed, or the job ended). Set the endpoint's max_retries_on_system_failure "
        f"to rerun such tasks on a new block. ({first})"
    )


class RunInterrupted(BundleError, RuntimeError):
    """Ctrl-C (SIGINT) or SIGTERM stopped the run.

    Raised once, in the main thread, by the bundle's signal handler (see
    :mod:`bundle.processes.interrupt`), after it has started cancelling the tasks in flight and
    stopping the local endpoints.  It is an ``Exception`` (not a ``KeyboardInterrupt``) so that
    libEnsemble's manager takes it as any abort and saves its history.
    """
