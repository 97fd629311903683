"""The line of a remote error that names it, and when two failures count as the same error.

Both fail-fast guards (GC-only sims, executor-mode Python tasks) compare failures by the last
non-empty line of the remote traceback (``NameError: name 'np' is not defined``), with digits
ignored, so ``ValueError: bad row 3`` and ``ValueError: bad row 17`` are one systematic error.
"""

from __future__ import annotations

import re


def cause_line(text: str) -> str:
    """Return the line of an error text that names the error (a traceback's last non-empty line).

    The ``+++`` and ``---`` rules an endpoint puts around a remote traceback are not lines of it.

    Parameters
    ----------
    text : str
        A remote traceback or error message.

    Returns
    -------
    str
        ``"(no error text)"`` when ``text`` is blank.
    """
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip().strip("+-")]
    return lines[-1] if lines else "(no error text)"


def cause_signature(text: str) -> str:
    """Return what two failures share when they are the same error: their cause line, digits ignored.

    Parameters
    ----------
    text : str
        A remote traceback or error message.

    Returns
    -------
    str
    """
    return re.sub(r"\d+", "#", cause_line(text))
