"""The ``template-reference`` directive: one section per bundled endpoint template, built from its JSON schema.

The tables are generated at build time from ``endpoint_configs/*/user_config_schema.json``,
so the reference cannot drift from what the schemas accept.  Each option gets one row
(option, default, meaning); what a value may look like is said in words under the meaning.
A site preset (a template whose schema description names its base template and whose
options are the base's) lists only what it sets differently, and points to its base.
"""

from __future__ import annotations

import json
import re
import typing as t

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList

from bundle.endpoints.schema_words import NO_TRAILING_NEWLINE, PATTERN_WORDS, pattern_words  # noqa: F401 (used by tests)


def _literal(value: t.Any) -> str:
    return "``" + json.dumps(value) + "``"


def _common_prefix(values: list[str]) -> str:
    """Return the dotted components every value starts with (``"a.b."``), or ``""``."""
    parts = [v.split(".")[:-1] for v in values]
    common: list[str] = []
    for column in zip(*parts, strict=False):
        if len(set(column)) != 1:
            break
        common.append(column[0])
    return ".".join(common) + "." if common else ""


def _one_of(values: list[t.Any]) -> str:
    if all(isinstance(v, str) for v in values) and len(values) > 4:
        prefix = _common_prefix(values)
        if prefix:
            rest = ", ".join(f"``{v.removeprefix(prefix)}``" for v in values)
            return f"one of these names after ``{prefix}``: {rest}"
    shown = [f"``{v}``" if isinstance(v, str) else _literal(v) for v in values]
    return "one of " + ", ".join(shown[:-1]) + " or " + shown[-1] if len(shown) > 1 else shown[0]


def allowed_words(prop: t.Mapping[str, t.Any]) -> str:
    """Say in words what values a schema property accepts.

    Parameters
    ----------
    prop : Mapping
        One entry of a schema's ``properties``.

    Returns
    -------
    str
        reStructuredText, e.g. "an integer from 1 to 16".
    """
    if "enum" in prop:
        return _one_of(list(prop["enum"]))
    kind = prop.get("type")
    if kind == "boolean":
        return "``true`` or ``false``"
    if kind == "integer":
        low, high = prop.get("minimum"), prop.get("maximum")
        if low is not None and high is not None:
            return f"an integer from {low} to {high}"
        if low is not None:
            return f"an integer of at least {low}"
        return "an integer" if high is None else f"an integer up to {high}"
    if kind == "array" and isinstance(prop.get("items"), dict):
        low, high = prop.get("minItems", 0), prop.get("maxItems")
        count = f"{low} to {high}" if high is not None else f"at least {low}"
        distinct = " distinct" if prop.get("uniqueItems") else ""
        return f"a list of {count}{distinct} items, each {allowed_words(prop['items'])}"
    if kind == "string":
        if "pattern" in prop:
            words = pattern_words(prop["pattern"])
            return words or f"text matching the regular expression ``{prop['pattern']}``"
        if "maxLength" in prop:
            return f"any text up to {prop['maxLength']} characters"
        return "any text"
    return str(kind or "any value")


def _cell(text: str) -> list[str]:
    """Indent a (possibly multi-paragraph) cell body for a list-table."""
    return [("       " + line) if line else "" for line in text.splitlines()]


def _meaning(prop: t.Mapping[str, t.Any]) -> str:
    desc = " ".join(str(prop.get("description", "")).split()) or "—"
    extra = f"Allowed: {allowed_words(prop)}."
    if prop.get("examples"):
        extra += f" Example: {_literal(prop['examples'][0])}."
    return f"{desc}\n\n.. rst-class:: option-allowed\n\n{extra}"


def _table(header: tuple[str, str, str], rows: list[tuple[str, str, str]], widths: str = "26 20 54") -> list[str]:
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        f"   :widths: {widths}",
        "   :class: option-table",
        "",
    ]
    for row in (header, *rows):
        first, *rest = row
        lines.append(f"   * - {first}")
        for cell in rest:
            body = cell.splitlines() or ["—"]
            lines.append(f"     - {body[0]}")
            lines += _cell("\n".join(body[1:]))
    return [*lines, ""]


def _default(key: str, prop: t.Mapping[str, t.Any], required: set[str]) -> str:
    if key in required:
        return "*you must set it*"
    if "default" in prop:
        return _literal(prop["default"])
    return "not set"


def base_of(name: str, schema: t.Mapping[str, t.Any], schemas: t.Mapping[str, t.Mapping[str, t.Any]]) -> str | None:
    """Return the template a site preset builds on, or None for a base template.

    A preset's schema description says "the <base> template", and its options are the base's.
    """
    match = re.search(r"\bthe (\w+) template\b", str(schema.get("description", "")))
    if not match or match.group(1) == name or match.group(1) not in schemas:
        return None
    base = schemas[match.group(1)]
    return match.group(1) if set(base.get("properties", {})) == set(schema.get("properties", {})) else None


def _examples(name: str) -> list[str]:
    from bundle.endpoints.templates import get_template

    folder = get_template(name).path / "examples"
    if not folder.is_dir():
        return []
    lines = ["Ready-made ``user_endpoint_config`` files (``examples/``):", ""]
    for path in sorted(folder.glob("*.json")):
        options = json.loads(path.read_text())
        lines.append(f"* ``{path.name}``: ``{json.dumps(options, separators=(', ', ': '))}``")
    return [*lines, ""]


def schema_rst(
    name: str, schema: t.Mapping[str, t.Any], schemas: t.Mapping[str, t.Mapping[str, t.Any]] | None = None
) -> list[str]:
    """Return reStructuredText for one template's options."""
    title = f"``{name}``"
    lines = [f".. _template-{name}:", "", title, "-" * len(title), ""]
    if schema.get("description"):
        lines += [str(schema["description"]), ""]
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    if not props:
        return [*lines, "This template takes no options.", ""]
    base = base_of(name, schema, schemas or {})
    if base is not None:
        base_props = (schemas or {})[base]["properties"]
        base_required = set((schemas or {})[base].get("required", []))
        rows = [
            (f"``{key}``", _default(key, prop, required), _default(key, base_props[key], base_required))
            for key, prop in props.items()
            if _default(key, prop, required) != _default(key, base_props[key], base_required)
        ]
        lines += [
            f"Every option of :ref:`{base} <template-{base}>` applies, with the same meaning and allowed values. "
            "This preset sets these differently:",
            "",
            *_table(("option", f"here ({name})", f"in {base}"), rows, widths="34 33 33"),
        ]
        return [*lines, *_examples(name)]
    rows = [(f"``{key}``", _default(key, prop, required), _meaning(prop)) for key, prop in props.items()]
    return [*lines, *_table(("option", "default", "meaning"), rows), *_examples(name)]


class TemplateReference(Directive):
    """Insert the option reference of every bundled template."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        """Parse the generated reStructuredText into the document."""
        from sphinx.util.nodes import nested_parse_with_titles

        from bundle.endpoints.templates import get_template, list_templates

        schemas = {name: get_template(name).schema for name in list_templates()}
        # base templates first (local, slurm, pbs), then the presets that build on them
        first = ["local", "slurm", "pbs"]
        order = sorted(
            schemas,
            key=lambda n: (base_of(n, schemas[n], schemas) is not None, first.index(n) if n in first else 9, n),
        )
        rst: list[str] = []
        for name in order:
            rst += schema_rst(name, schemas[name], schemas)
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(rst, source="template-reference"), container)
        return list(container.children)


def setup(app: t.Any) -> dict[str, t.Any]:
    """Register the directive."""
    app.add_directive("template-reference", TemplateReference)
    return {"version": "2", "parallel_read_safe": True}
