"""Stop a GC-only run whose first sims all fail the same way, and summarize failed sims at the end.

A systematic bug (``NameError``, ``ImportError``, a malformed return) fails every sim; without a
stop the run burns its whole budget and ends with exit flag 0.  :class:`FailFast` watches the
first ``gc_specs.fail_fast`` failures and successes: when the first that many all failed with the
same error (the remote exception's type and message, digits ignored, see
:mod:`bundle.wire.remote_cause`), the run stops with :class:`SystematicSimError`, which says the
cause once, what to change for that kind of error, and where the details are.  One sim that
succeeds disarms it for the run.  A remote task that fails as a whole (its worker pool lost, an
answer that cannot be read) counts once, however many sims it carried (``batch_size``).
"""

from __future__ import annotations

import pathlib
import sys
import typing as t

from libensemble.manager import LoggedException

from bundle.errors import BundleError
from bundle.wire.remote_cause import cause_line, cause_signature, hint_for

__all__ = ["FailFast", "cause_line", "failure_summary", "hint_for", "report_failures"]


class SystematicSimError(BundleError, LoggedException, RuntimeError):  # type: ignore[misc]  # libensemble is untyped
    """The first sims of a GC-only run all failed with the same error (``gc_specs.fail_fast``).

    The run stops early (libEnsemble saves the history first); the message quotes the remote
    cause once, says what to change and where the details are.  It is also libEnsemble's
    ``LoggedException``, which a stock run raises when a sim's error stops the manager.

    Attributes
    ----------
    cause : str
        The line of the remote error that names it, e.g. ``"NameError: name 'np' is not defined"``.
    """

    def __init__(self, message: str, *, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


class FailFast:
    """Watch the first sims of a run; raise when they all failed with the same error.

    Parameters
    ----------
    threshold : int
        How many of the first failures must be alike to stop the run; 0 never stops it.
    error_dir : pathlib.Path
        Where the failed sims' error files are (named in the message).
    sim_module : str, optional
        The module ``sim_f`` is defined in (a hint tells it apart from a missing package).
    """

    def __init__(self, threshold: int, error_dir: pathlib.Path, sim_module: str | None = None) -> None:
        self.threshold = threshold
        self.error_dir = error_dir
        self.sim_module = sim_module
        self._armed = threshold > 0
        self._signatures: list[str] = []
        self._first: tuple[int, str] | None = None

    def succeeded(self) -> None:
        """Record a sim that ended well: the run is not systematically broken."""
        self._armed = False

    def failed(self, sim_id: int, text: str) -> None:
        """Record a failure: of one sim, or of a whole remote task (however many sims it carried).

        Parameters
        ----------
        sim_id : int
            The (first) failed sim, whose error file the message names.
        text : str
            The error text.

        Raises
        ------
        SystematicSimError
            When the first ``threshold`` failures were all alike (once: the watch then disarms).
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
        self._armed = False
        first_id, first_text = self._first
        line = cause_line(first_text)
        error_file = (self.error_dir / f"sim_{first_id}.txt").resolve()
        alike = "the first sim" if self.threshold == 1 else f"the first {self.threshold} failures"
        raise SystematicSimError(
            f"GC-only run stopped early: {alike} all had the same error on the endpoint:\n"
            f"    {line}\n"
            f"Hint: {hint_for(first_text, own_module=self.sim_module)}.\n"
            f"Details: the remote traceback is in {error_file} (one file per failed sim), the run's log in "
            "ensemble.log. To let a run go on despite failing sims, set gc_specs.fail_fast=0.",
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
