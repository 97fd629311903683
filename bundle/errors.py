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


def block_lost_message(what: str, err: BaseException, report: str = "") -> str:
    """Compose the message of a :class:`BlockLostError`: what was lost, what Slurm said, what to do.

    Parameters
    ----------
    what : str
        What failed (``"task <name>"``, ``"the sim"``).
    err : BaseException
        The original error (``ManagerLost``).
    report : str
        What the endpoint knows of its blocks that ended abnormally (empty when unknown).

    Returns
    -------
    str
    """
    lines = [line.strip() for line in str(err).splitlines() if line.strip().strip("-+")]
    said = [line for line in lines if "ManagerLost" in line] or lines[-1:] or [type(err).__name__]
    first = said[-1][:300]
    lost = report or "the endpoint stopped hearing from it (a node of its batch job failed, or the job ended)"
    return (
        f"{what} failed: the block (worker pool) it ran on was lost: {lost}. Set the endpoint's "
        f"max_retries_on_system_failure to rerun such tasks on a new block. ({first})"
    )
