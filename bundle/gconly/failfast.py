"""Stop a GC-only run whose first sims all fail the same way, and summarize failed sims at the end.

A systematic bug (``NameError``, ``ImportError``, a malformed return) fails every sim; without a
stop the run burns its whole budget and ends with exit flag 0.  :class:`FailFast` watches the
first ``gc_specs.fail_fast`` sims to end: when all of them failed with the same error (the last
line of the remote traceback, digits ignored), the run stops with :class:`SystematicSimError`,
which quotes that line and says what to change.  One sim that succeeds disarms it for the run.
"""

from __future__ import annotations

import pathlib
import sys
import typing as t

from libensemble.manager import LoggedException

from bundle.errors import BundleError
from bundle.wire.remote_cause import cause_line, cause_signature

__all__ = ["FailFast", "cause_line", "failure_summary", "hint_for", "report_failures"]

_HINTS: tuple[tuple[str, str], ...] = (
    (
        "NameError",
        "sim_f reads a name the endpoint does not have: define it (or import it) at module level of the calling "
        "script before the run starts, or import inside sim_f; see 'What travels to the endpoint' in the docs",
    ),
    (
        "ModuleNotFoundError",
        "the endpoint's Python cannot import a module sim_f needs: install it there (e.g. in the environment "
        "worker_init activates), or define sim_f in the calling script so it travels by value",
    ),
    ("ImportError", "the endpoint's Python cannot import what sim_f needs: install it (same versions) on the endpoint"),
    ("SimOutputError", "fix what sim_f returns (see the message above)"),
    ("returned", "fix what sim_f returns (see the message above)"),
    ("DeserializationError", "the endpoint refused the task's serializer: check allowed_serializers in the template"),
)


class SystematicSimError(BundleError, LoggedException, RuntimeError):  # type: ignore[misc]  # libensemble is untyped
    """The first sims of a GC-only run all failed with the same error (``gc_specs.fail_fast``).

    The run stops early (libEnsemble saves the history first); the message quotes the remote
    cause and says what to change.  It is also libEnsemble's ``LoggedException``, which a stock run
    raises when a sim's error stops the manager.

    Attributes
    ----------
    cause : str
        The line of the remote error that names it, e.g. ``"NameError: name 'np' is not defined"``.
    """

    def __init__(self, message: str, *, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


def hint_for(text: str) -> str:
    """Return what to change for an error text (a generic hint when the error is not a known kind)."""
    line = cause_line(text)
    head = line.split(":", 1)[0].strip()
    for key, hint in _HINTS:
        if head.endswith(key) or (key == "returned" and line.startswith("sim_f returned")):
            return hint
    return "fix sim_f (the remote traceback is in the sim's error file)"


class FailFast:
    """Watch the first sims of a run; raise when they all failed with the same error.

    Parameters
    ----------
    threshold : int
        How many of the first sims must fail alike to stop the run; 0 never stops it.
    error_dir : pathlib.Path
        Where the failed sims' error files are (named in the message).
    """

    def __init__(self, threshold: int, error_dir: pathlib.Path) -> None:
        self.threshold = threshold
        self.error_dir = error_dir
        self._armed = threshold > 0
        self._signatures: list[str] = []
        self._first: tuple[int, str] | None = None

    def succeeded(self) -> None:
        """Record a sim that ended well: the run is not systematically broken."""
        self._armed = False

    def failed(self, sim_id: int, text: str) -> None:
        """Record a failed sim.

        Raises
        ------
        SystematicSimError
            When the first ``threshold`` sims to end all failed with the same error.
        """
        if not self._armed:
            return
        if self._first is None:
            self._first = (sim_id, text)
        sig = cause_signature(text)
        if self._signatures and sig != self._signatures[0]:
            self._armed = False  # different errors: not one systematic bug
            return
        self._signatures.append(sig)
        if len(self._signatures) < self.threshold:
            return
        first_id, first_text = self._first
        line = cause_line(first_text)
        raise SystematicSimError(
            f"GC-only run stopped early: the first {self.threshold} sims all failed with the same error on the "
            f"endpoint:\n    {line}\nWhat to change: {hint_for(first_text)}.\nThe full remote traceback is in "
            f"{(self.error_dir / f'sim_{first_id}.txt').resolve()}. To let a run go on despite failing sims, set "
            "gc_specs.fail_fast=0.",
            cause=line,
        )


def failure_summary(errors: t.Mapping[int, str], n_sims: int, error_dir: pathlib.Path) -> str:
    """Return the one-line summary of a run's failed sims (``""`` when none failed)."""
    if not errors:
        return ""
    first = min(errors)
    return (
        f"libe-gc: {len(errors)} of {n_sims} sims failed; first (sim_id {first}): {cause_line(errors[first])}; "
        f"see {error_dir.resolve()}"
    )


def report_failures(errors: t.Mapping[int, str], n_sims: int, error_dir: pathlib.Path) -> None:
    """Write :func:`failure_summary` to stderr when any sim failed."""
    line = failure_summary(errors, n_sims, error_dir)
    if line:
        print(line, file=sys.stderr, flush=True)
