"""Shared by the documentation tests: the repository's folders, system tools, and one HTML build."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import typing as t

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def in_ci() -> bool:
    """Whether the run is CI's (``CI`` set to anything but a false word)."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require_tool(*names: str, package: str) -> str:
    """Return the path of the first of ``names`` on PATH; fail under CI, skip elsewhere, when none is.

    Parameters
    ----------
    names : str
        Commands to look for, in order of preference.
    package : str
        The Debian package that provides it (said in the message).
    """
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    reason = f"{' / '.join(names)} not on PATH (Debian/Ubuntu: apt-get install {package})"
    if in_ci():
        pytest.fail(f"the documentation tests must run in CI, but {reason}", pytrace=False)
    pytest.skip(reason)


def build_docs(out: pathlib.Path, builder: str = "html") -> subprocess.CompletedProcess[str]:
    """Build the Sphinx docs with warnings as errors into ``out``."""
    require_tool("dot", package="graphviz")
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder, str(DOCS), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def html_build(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[pathlib.Path]:
    """Build the HTML docs once (a generator for a session-scoped fixture)."""
    out = tmp_path_factory.mktemp("docs-html")
    done = build_docs(out)
    assert done.returncode == 0, done.stdout + done.stderr
    yield out
