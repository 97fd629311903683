"""The ``template-reference`` directive: one section per bundled endpoint template, built from its JSON schema.

The tables are generated at build time from ``endpoint_configs/*/user_config_schema.json``,
so the reference cannot drift from what the schemas accept.
"""

from __future__ import annotations

import json
import typing as t

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList


def _fmt(value: t.Any) -> str:
    if value is None:
        return ""
    return "``" + json.dumps(value) + "``"


def _allowed(prop: dict[str, t.Any]) -> str:
    from bundle.templates import describe_option

    text = describe_option(prop)
    return f"``{text}``" if "`" not in text else text


def schema_rst(name: str, schema: dict[str, t.Any]) -> list[str]:
    """Return reStructuredText for one template's options."""
    title = f"``{name}``"
    lines = [title, "-" * len(title), ""]
    if schema.get("description"):
        lines += [schema["description"], ""]
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    if not props:
        return [*lines, "This template takes no options.", ""]
    lines += [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 20 14 26 40",
        "",
        "   * - option",
        "     - default",
        "     - allowed",
        "     - meaning",
    ]
    for key, prop in props.items():
        default = "*required*" if key in required else _fmt(prop.get("default"))
        desc = " ".join(str(prop.get("description", "")).split())
        lines += [
            f"   * - ``{key}``",
            f"     - {default or '—'}",
            f"     - {_allowed(prop) or '—'}",
            f"     - {desc or '—'}",
        ]
    return [*lines, ""]


class TemplateReference(Directive):
    """Insert the option reference of every bundled template."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        """Parse the generated reStructuredText into the document."""
        from bundle.templates import get_template, list_templates

        rst: list[str] = []
        for name in list_templates():
            rst += schema_rst(name, get_template(name).schema)
        from sphinx.util.nodes import nested_parse_with_titles

        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(rst, source="template-reference"), container)
        return list(container.children)


def setup(app: t.Any) -> dict[str, t.Any]:
    """Register the directive."""
    app.add_directive("template-reference", TemplateReference)
    return {"version": "1", "parallel_read_safe": True}
