"""Stand-in commands on ``PATH`` for tests that run what a template writes where no scheduler runs."""

from __future__ import annotations

import os
import pathlib
import stat

import pytest


def put_on_path(bin_dir: pathlib.Path, scripts: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Write each ``name: body`` as an executable ``/bin/sh`` script in ``bin_dir`` and put it first on ``PATH``."""
    bin_dir.mkdir(exist_ok=True)
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
