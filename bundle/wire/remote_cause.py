"""The error a failed task names, what to change for it, and when two failures count as the same error.

Both fail-fast guards (GC-only sims, executor-mode Python tasks) compare failures by the remote
exception's type and message: the part of a remote traceback after its last frame
(``NameError: name 'np' is not defined``), numbers and hexadecimal ids ignored, so
``ValueError: bad row 3`` and ``ValueError: bad row 17`` are one systematic error.  The Globus Compute SDK's
``TaskExecutionFailed.__str__`` appends a help paragraph (ending in a URL) to every remote
traceback that mentions dill, pickle or serialization, and a note to every ``WorkerLost``; neither
is part of the error, so :func:`error_text` leaves them out and :func:`remote_exception` strips
them from texts that still carry them.

A text that does not start with a traceback (or with an empty-message wrapper line such as
``TaskExecutionFailed:``) is read as the bundle writes its own errors: its first paragraph is the
error, what follows is detail (``BlockLostError: ...`` and then the endpoint's report).
"""

from __future__ import annotations

import re
import textwrap

NO_TEXT = "(no error text)"

_WRAPPER = re.compile(r"^[A-Za-z_][\w.]*:\s*$")
"""An exception line with no message: a wrapper whose message follows on the next lines."""

_EXCEPTION = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s*(?P<message>.*))?$")

_HEX_ID = re.compile(r"\b[0-9a-fA-F]*\d[0-9a-fA-F]*\b")
"""A hexadecimal word with a digit in it: an id, ignored like any number when failures are compared."""

_SDK_HELP_FALLBACK = (
    re.compile(r"\n*This appears to be an error with serialization\..*?https?://\S+\n?", re.S),
    re.compile(r"\*{5}\n One common cause of WorkerLost exceptions.*?\*{5}\n?", re.S),
)


def _sdk_help_texts() -> tuple[str, ...]:
    """Return the paragraphs ``TaskExecutionFailed.__str__`` appends (empty when the SDK has none)."""
    try:
        from globus_compute_sdk.errors import error_types
    except ImportError:  # pragma: no cover - the SDK is a dependency
        return ()
    names = ("SERDE_TASK_EXECUTION_FAILED_HELP_MESSAGE", "WORKER_LOST_MESSAGE")
    return tuple(text for text in (getattr(error_types, n, None) for n in names) if isinstance(text, str) and text)


def strip_sdk_help(text: str) -> str:
    """Return ``text`` without the help paragraphs the Globus Compute SDK appends to remote errors.

    Parameters
    ----------
    text : str
        An error text, e.g. ``str()`` of a ``TaskExecutionFailed``.

    Returns
    -------
    str
    """
    for help_text in _sdk_help_texts():
        text = text.replace(help_text, "\n")
    for pattern in _SDK_HELP_FALLBACK:
        text = pattern.sub("\n", text)
    return text


def error_text(err: BaseException) -> str:
    """Return the text a failed task's error is recorded with: ``"Type: message"``, remote traceback included.

    A ``TaskExecutionFailed`` (the SDK's wrapper of an error raised on the endpoint) gives its remote
    traceback, indented under its name, without the SDK's help paragraphs.

    Parameters
    ----------
    err : BaseException
        The error a task's future holds.

    Returns
    -------
    str
    """
    remote = getattr(err, "remote_data", None)
    if isinstance(remote, str) and remote.strip():
        return f"{type(err).__name__}:\n{textwrap.indent(strip_sdk_help(remote).strip(), ' ')}\n"
    message = str(err).strip()
    return f"{type(err).__name__}: {strip_sdk_help(message).strip()}" if message else type(err).__name__


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def remote_exception(text: str) -> str:
    """Return the error ``text`` names: the remote exception's ``"Type: message"`` (all its lines).

    Parameters
    ----------
    text : str
        A remote traceback, a task's :func:`error_text`, or one of the bundle's own error texts.

    Returns
    -------
    str
        ``"(no error text)"`` when ``text`` is blank.
    """
    lines = [ln.rstrip() for ln in strip_sdk_help(text).splitlines()]
    while lines and not lines[0].strip():
        lines.pop(0)
    if lines and _WRAPPER.match(lines[0].strip()) and len(lines) > 1:
        lines.pop(0)  # "TaskExecutionFailed:": the remote error follows
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return NO_TEXT
    headers = [i for i, ln in enumerate(lines) if ln.strip().startswith("Traceback")]
    if headers and lines[0].strip().startswith("Traceback"):
        start = headers[-1]
        base = _indent(lines[start])
        end = start + 1
        while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > base):
            end += 1  # the frames: file lines, source lines, carets
        body = lines[end:]
    else:
        body = []
        for ln in lines:  # the first paragraph
            if not ln.strip():
                break
            body.append(ln)
    while body and not body[-1].strip():
        body.pop()
    if not body:
        return NO_TEXT
    return textwrap.dedent("\n".join(body)).strip()


def cause_line(text: str) -> str:
    """Return the first line of the error ``text`` names (see :func:`remote_exception`).

    Parameters
    ----------
    text : str
        A remote traceback or error message.

    Returns
    -------
    str
        ``"(no error text)"`` when ``text`` is blank.
    """
    return remote_exception(text).splitlines()[0]


def cause_signature(text: str) -> str:
    """Return what two failures share when they are the same error: its type and message, digits ignored.

    Parameters
    ----------
    text : str
        A remote traceback or error message.

    Returns
    -------
    str
    """
    text = _HEX_ID.sub("#", remote_exception(text))  # ids such as a lost manager's b'4f0a9c2d1e7b'
    return " ".join(re.sub(r"\d+", "#", text).split())


def _quoted(message: str) -> str:
    found = re.search(r"""['"]([^'"]+)['"]""", message)
    return found.group(1) if found else ""


def hint_for(text: str, *, subject: str = "sim_f", own_module: str | None = None) -> str:
    """Return what to change for the error ``text`` names.

    Parameters
    ----------
    text : str
        A remote traceback or error message.
    subject : str
        What ran on the endpoint, for the message (``"sim_f"``, ``"the Python function"``).
    own_module : str, optional
        The module that function is defined in: a missing module that is the function's own is
        told apart from a missing package.

    Returns
    -------
    str
        One sentence (a generic one when the error is of no known kind).
    """
    first = cause_line(text)
    match = _EXCEPTION.match(first)
    kind = (match.group("type") if match else "").rsplit(".", 1)[-1]
    message = (match.group("message") or "") if match else first
    name = _quoted(message)
    if kind == "ModuleNotFoundError":
        top = name.split(".")[0]
        if own_module and top and own_module.split(".")[0] == top:
            return (
                f"{subject}'s own module {top!r} cannot be imported on the endpoint: install it there (or put its "
                f"folder on the endpoint's PYTHONPATH), or define {subject} in the calling script so it travels "
                "by value"
            )
        what = f"module {top!r}" if top else "a module"
        return (
            f"the endpoint's Python has no {what}: install the package that provides it where the endpoint's "
            "workers run (for the local endpoint, this script's Python environment; for a site endpoint, the "
            "environment its worker_init activates)"
        )
    if kind == "ImportError":
        return (
            "the endpoint's Python has a different version of a package than the one "
            f"{subject} was written for: install the same version there"
        )
    if kind == "NameError":
        return (
            f"{subject} reads {('the name ' + repr(name)) if name else 'a name'} the endpoint does not have: "
            "define (or import) it at module level of the calling script before the run starts, or import it "
            f"inside {subject}; see 'What travels to the endpoint' in the docs"
        )
    if kind == "SimOutputError" or first.startswith("sim_f returned"):
        return (
            "fix what sim_f returns: start from np.zeros(len(H), dtype=sim_specs['out']) so its fields are "
            "the ones sim_specs['out'] declares"
        )
    if kind == "DeserializationError":
        return "the endpoint refused the task's serializer: check allowed_serializers in the template"
    if kind in ("BlockLostError", "ManagerLost", "WorkerLost"):
        return (
            "the endpoint lost the workers that ran it (a node or worker process died: out of memory, killed, "
            "a failed node); see the endpoint's log, and set max_retries_on_system_failure to rerun such tasks"
        )
    return f"fix {subject} (the remote traceback says where)"
