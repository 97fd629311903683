"""The Sphinx documentation builds with warnings as errors, and its template reference covers every template."""

from __future__ import annotations

from bundle.endpoints.templates import get_template, list_templates
from tests.docs.helpers import build_docs


def test_docs_build_clean_and_reference_every_template_option(tmp_path):
    out = build_docs(tmp_path, builder="text")
    assert out.returncode == 0, out.stdout + out.stderr
    reference = (tmp_path / "templates.txt").read_text()
    for name in list_templates():
        assert f'"{name}"' in reference
        for option in get_template(name).schema.get("properties", {}):
            # long names wrap inside table cells; their first 18 characters stay on one line
            assert option[:18] in reference, f"option {option!r} of template {name!r} missing from the reference"
    api = (tmp_path / "api.txt").read_text()
    assert "class bundle.executor.GlobusComputeExecutor" in api
    assert "submit(" in api and "Raises" in api
