"""The generated template reference says every pattern in words, and the doctor page covers every check."""

from __future__ import annotations

import re
import sys
import typing as t

import pytest

from bundle.endpoints.templates import get_template, list_templates
from tests.docs.helpers import DOCS, ROOT

sys.path.insert(0, str(DOCS / "_ext"))
import template_reference


def _patterns(node: t.Any) -> t.Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            yield node["pattern"]
        for value in node.values():
            yield from _patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _patterns(value)


@pytest.mark.parametrize("name", list_templates())
def test_every_pattern_of_the_template_is_said_in_words(name):
    missing = {p for p in _patterns(get_template(name).schema) if template_reference.pattern_words(p) is None}
    assert not missing, f"add words for these patterns to PATTERN_WORDS in bundle/endpoints/schema_words.py: {missing}"


def test_allowed_values_read_as_words():
    words = template_reference.allowed_words
    assert words({"type": "integer", "minimum": 1, "maximum": 16}) == "an integer from 1 to 16"
    assert words({"type": "boolean"}) == "``true`` or ``false``"
    assert words({"enum": ["srun", "mpiexec"]}) == "one of ``srun`` or ``mpiexec``"
    walltime = words({"type": "string", "pattern": "^[0-9]{1,3}:[0-5][0-9]:[0-5][0-9]$(?!\\n)"})
    assert "HH:MM:SS" in walltime and "[" not in walltime


def test_presets_list_only_what_they_change():
    schemas = {name: get_template(name).schema for name in list_templates()}
    presets = {name: template_reference.base_of(name, schema, schemas) for name, schema in schemas.items()}
    assert presets["perlmutter"] == "slurm" and presets["polaris"] == "pbs" and presets["slurm"] is None
    rst = "\n".join(template_reference.schema_rst("perlmutter", schemas["perlmutter"], schemas))
    assert "``qos``" in rst and "``partition``" not in rst  # qos has a site default, partition does not


def test_doctor_page_covers_every_check():
    source = "".join((ROOT / "bundle" / path).read_text() for path in ("cli/doctor.py", "endpoints/python_check.py"))
    names = set(re.findall(r'Check\(\s*f?"([^"{]+)', source))
    page = (DOCS / "doctor.rst").read_text()
    assert len(names) >= 6, names
    missing = {name.strip() for name in names if name.strip() not in page}
    assert not missing, f"docs/doctor.rst does not describe these doctor checks: {missing}"


def test_each_troubleshooting_entry_says_cause_and_fix():
    page = (DOCS / "troubleshooting.rst").read_text()
    entries = re.split(r"^\.\. _ts-[\w-]+:$", page, flags=re.M)[1:]
    assert len(entries) >= 10
    for entry in entries:
        head = entry.strip().splitlines()[0]
        assert "Cause" in entry and "**Fix:**" in entry and "**Check:**" in entry, head
