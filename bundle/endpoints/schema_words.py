"""Every pattern the bundled template schemas use, said in words.

The template reference in the docs shows these words instead of the regular expressions, and
option errors (:func:`bundle.endpoints.templates.option_error`, ``libe-gc templates show``) use them too.
A test fails when a bundled schema uses a pattern that has no words here.
"""

from __future__ import annotations

NO_TRAILING_NEWLINE = "(?!\\n)"
"""Suffix of the bundled patterns that only stops a trailing newline slipping past ``$``."""

NAME = "letters, digits and ``_`` ``.`` ``-``, starting with a letter or digit, at most 64 characters"
PATTERN_WORDS: dict[str, str] = {
    "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$": f"a name: {NAME}",
    "^([A-Za-z0-9][A-Za-z0-9_.-]{0,63})?$": f"empty, or a name: {NAME}",
    "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$": (
        "an interface name: letters, digits and ``_`` ``.`` ``:`` ``-``, starting with a letter or digit, "
        "at most 15 characters"
    ),
    "^[A-Za-z0-9_.&|,*\\[\\]-]{1,128}$": (
        "a feature expression: letters, digits and ``_ . & | , * [ ] -``, 1 to 128 characters"
    ),
    "^([A-Za-z0-9_.:,-]{1,128})?$": "empty, or a comma-separated list: letters, digits and ``_ . : , -``, "
    "at most 128 characters",
    "^[0-9]{1,3}:[0-5][0-9]:[0-5][0-9]$": "hours, minutes and seconds as ``HH:MM:SS`` (up to 999 hours)",
    "^(free|pack|scatter|vscatter)(:(excl|exclhost|shared))?$": (
        "``free``, ``pack``, ``scatter`` or ``vscatter``, optionally followed by ``:excl``, ``:exclhost`` "
        "or ``:shared``"
    ),
    "^([a-z0-9_]{1,32}(:[a-z0-9_]{1,32}){0,15})?$": (
        "empty, or up to 16 names (lower-case letters, digits, ``_``; at most 32 characters each) joined by ``:``"
    ),
    "^[0-9]{1,3}(\\.[0-9]{1,2})?$": "a device number (``0``) or a device and a tile (``0.1``)",
    "^([A-Za-z0-9_]{1,32}=[A-Za-z0-9_.]{1,32}(:[A-Za-z0-9_]{1,32}=[A-Za-z0-9_.]{1,32}){0,15})?$": (
        "empty, or up to 16 ``key=value`` pairs joined by ``:`` (keys of letters, digits and ``_``; values "
        "also ``.``; at most 32 characters each)"
    ),
}
"""Every pattern the bundled schemas use, said in words (a test checks none is missing)."""


def pattern_words(pattern: str) -> str | None:
    """Return the words for a schema ``pattern`` (reStructuredText), or None when it has none yet.

    Parameters
    ----------
    pattern : str
        A ``pattern`` of a bundled schema.

    Returns
    -------
    str or None
    """
    return PATTERN_WORDS.get(pattern.removesuffix(NO_TRAILING_NEWLINE))


def plain_pattern_words(pattern: str) -> str | None:
    """Return :func:`pattern_words` of ``pattern`` as plain text, for terminals and error messages."""
    words = pattern_words(pattern)
    return None if words is None else words.replace("``", "")
