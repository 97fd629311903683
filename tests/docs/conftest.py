"""Fixtures of the documentation tests."""

from __future__ import annotations

import pathlib
import typing as t

import pytest

from tests.docs.helpers import html_build


@pytest.fixture(scope="session")
def docs_html(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[pathlib.Path]:
    """The HTML build of the docs (built once per test session)."""
    yield from html_build(tmp_path_factory)
