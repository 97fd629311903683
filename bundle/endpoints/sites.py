"""Site presets, and the template files generated from the ``slurm`` and ``pbs`` templates.

A site preset (``perlmutter``, ``frontier``, ``polaris``, ``aurora``) is a full
template folder: the base template with the site's documented values as
defaults.  The site's facts and prose are data, written by hand beside the
templates: ``endpoint_configs/<site>/preset.json`` (base, title, summary,
defaults, required options, examples, sources) and, for a base template,
``endpoint_configs/<base>/intro.md`` (its README's introduction).
``globus-compute-endpoint configure --template-config`` copies a single file, so
each preset's ``user_config_template.yaml.j2`` is self-contained; this module keeps the copies in step with their base::

    python -m bundle.endpoints.sites          # rewrite the generated files
    python -m bundle.endpoints.sites --check  # exit 1 if any is out of date (a unit test runs this)

Generated: each preset folder (but its ``preset.json``), and the ``README.md`` of
``slurm``, ``pbs`` and every preset (their option tables come from the schemas).
"""

from __future__ import annotations

import copy
import json
import pathlib
import sys
import typing as t
from dataclasses import dataclass, field

from bundle.endpoints.templates import CONFIG_FILE, SCHEMA_FILE, TEMPLATE_FILE, endpoint_configs_dir

MARKER = "{#- site defaults (a site preset sets its documented values here) #}"
"""Line of the base templates after which a preset's defaults are inserted."""


@dataclass(frozen=True)
class SitePreset:
    """A machine's documented settings on top of a base template.

    Parameters
    ----------
    name : str
        Template name (its folder).
    base : str
        ``"slurm"`` or ``"pbs"``.
    title : str
        Machine and facility.
    summary : str
        What the defaults give, for the README.
    defaults : dict
        Defaults of user options (they stay options the user may change).
    internal : dict
        Template settings that are not user options (PBS launcher flags).
    required : tuple of str
        Options the user must give (the project to charge).
    examples : dict
        Example ``user_endpoint_config`` files, by file stem.
    sources : tuple of str
        Where the site documents the values.
    """

    name: str
    base: str
    title: str
    summary: str
    defaults: dict[str, t.Any]
    internal: dict[str, str] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    examples: dict[str, dict[str, t.Any]] = field(default_factory=dict)
    sources: tuple[str, ...] = ()


PRESET_FILE = "preset.json"
"""A preset folder's hand-written facts: the :class:`SitePreset` fields but ``name`` (the folder's name)."""

INTRO_FILE = "intro.md"
"""A base template folder's hand-written README introduction."""


def load_presets(root: pathlib.Path | None = None) -> tuple[SitePreset, ...]:
    """Read every site preset from its folder's :data:`PRESET_FILE`.

    Parameters
    ----------
    root : pathlib.Path, optional
        The ``endpoint_configs`` folder (the installed one by default).

    Returns
    -------
    tuple of SitePreset
        By folder name.

    Raises
    ------
    ValueError
        When a preset file names a field :class:`SitePreset` does not have, or lacks one.
    """
    root = root or endpoint_configs_dir()
    presets = []
    for path in sorted(root.glob(f"*/{PRESET_FILE}")):
        data = json.loads(path.read_text())
        data["required"] = tuple(data.get("required", ()))
        data["sources"] = tuple(data.get("sources", ()))
        try:
            presets.append(SitePreset(name=path.parent.name, **data))
        except TypeError as err:
            raise ValueError(f"{path}: {err}") from None
    return tuple(presets)


def base_intros(root: pathlib.Path | None = None) -> dict[str, str]:
    """Return each base template's README introduction (its :data:`INTRO_FILE`), by template name."""
    root = root or endpoint_configs_dir()
    return {p.parent.name: p.read_text().rstrip("\n") for p in sorted(root.glob(f"*/{INTRO_FILE}"))}


def _jinja_literal(value: t.Any) -> str:
    """Return the Jinja literal of an option value as the renderer passes it (strings arrive JSON-encoded)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_jinja_literal(v) for v in value) + "]"
    if isinstance(value, str):
        encoded = json.dumps(value)
        if "'" in encoded or "\\" in encoded:
            raise ValueError(f"preset default {value!r} cannot be written as a Jinja literal")
        return f"'{encoded}'"
    raise TypeError(f"unsupported preset default {value!r}")


def template_with_defaults(
    base_text: str, defaults: t.Mapping[str, t.Any], internal: t.Mapping[str, str] | None = None, header: str = ""
) -> str:
    """Return a template text whose options default to ``defaults``.

    Parameters
    ----------
    base_text : str
        A bundled template, containing the :data:`MARKER` line once.
    defaults : Mapping
        Option defaults (the user may still set those options).
    internal : Mapping, optional
        Template settings that are not user options.
    header : str
        Text put before the template (a Jinja comment).
    """
    if base_text.count(MARKER) != 1:
        raise ValueError(f"the template must contain the marker line once: {MARKER}")
    lines = [f"{{%- set {k} = {json.dumps(v)} %}}" for k, v in (internal or {}).items()]
    lines += [f"{{%- set {k} = {k} | default({_jinja_literal(v)}) %}}" for k, v in defaults.items()]
    return header + base_text.replace(MARKER, MARKER + "\n" + "\n".join(lines), 1)


def schema_with_defaults(
    base_schema: t.Mapping[str, t.Any], defaults: t.Mapping[str, t.Any], required: t.Sequence[str] = ()
) -> dict[str, t.Any]:
    """Return a copy of a schema whose ``default`` keywords are ``defaults`` and that requires ``required``.

    Options given a default are no longer required.
    """
    schema = copy.deepcopy(dict(base_schema))
    props = schema["properties"]
    for key in [*defaults, *required]:
        if key not in props:
            raise KeyError(f"{key!r} is not an option of this template; options: {', '.join(props)}")
    for key, value in defaults.items():
        props[key]["default"] = value
    # An option with a default no longer has to be given.
    still_required = sorted((set(schema.get("required", [])) | set(required)) - set(defaults))
    schema.pop("required", None)
    if still_required:
        schema["required"] = still_required
    return schema


def preset_template(preset: SitePreset, base_text: str) -> str:
    """Return the base template with the preset's defaults set after the marker line."""
    header = (
        f"{{#- {preset.title}: the {preset.base!r} template with this site's documented defaults.\n"
        f"    Generated by `python -m bundle.endpoints.sites` from endpoint_configs/{preset.base}; "
        "edit those instead. -#}\n"
    )
    return template_with_defaults(base_text, preset.defaults, preset.internal, header)


def preset_schema(preset: SitePreset, base_schema: dict[str, t.Any]) -> dict[str, t.Any]:
    """Return the base schema with the preset's defaults, required options and title."""
    schema = schema_with_defaults(base_schema, preset.defaults, preset.required)
    schema["$id"] = schema["$id"].replace(f"/{preset.base}/", f"/{preset.name}/")
    schema["title"] = f"libe-gc {preset.name} endpoint options"
    schema["description"] = f"{preset.title}: the {preset.base} template with this site's documented defaults."
    return schema


def _cell(value: t.Any) -> str:
    return "not set" if value is None else f"`{json.dumps(value)}`"


def readme(
    name: str, title: str, intro: str, schema: dict[str, t.Any], examples: list[str], sources: t.Sequence[str] = ()
) -> str:
    """README of a generated template folder: intro, how to use it, every option with default and example."""
    required = set(schema.get("required", []))
    rows = []
    for key, prop in schema["properties"].items():
        default = "**required**" if key in required else _cell(prop.get("default"))
        example = _cell(prop["examples"][0]) if prop.get("examples") else ""
        rows.append(f"| `{key}` | {default} | {example} | {prop.get('description', '')} |")
    parts = [
        f"# `{name}` endpoint template: {title}",
        "",
        "<!-- Generated by `python -m bundle.endpoints.sites`; edit preset.json, intro.md or the schema instead. -->",
        "",
        intro,
        "",
        "## Use it",
        "",
        "On the machine's login node, as a template-capable endpoint, after logging in to Globus once",
        "(`globus-compute-endpoint login`, or `GLOBUS_COMPUTE_CLIENT_ID` and `GLOBUS_COMPUTE_CLIENT_SECRET` set;",
        "as root, add `--contact-email ADDRESS` to `configure`):",
        "",
        "```",
        f"libe-gc endpoint configure my-ep --template {name}",
        "libe-gc endpoint start my-ep",
        "```",
        "",
        "From the submit side, the options travel as `user_endpoint_config` and are checked against this "
        "template's schema before the first task leaves:",
        "",
        "```python",
        "from bundle import GCSession",
        "",
        f'ep = GCSession.get_executor("<endpoint UUID>", {{"nodes_per_block": 2}}, template="{name}")',
        "```",
        "",
        f"Render offline to see the engine configuration: `libe-gc endpoint render {name} -o options.json`.",
        "",
        "## Options",
        "",
        "Checked against `user_config_schema.json` before rendering; unknown options are refused, and "
        "strings that reach the batch script or `qsub`'s command line may only hold the characters their "
        "pattern allows.",
        "",
        "| option | default | example | meaning |",
        "|---|---|---|---|",
        *rows,
        "",
        "Examples: " + ", ".join(f"`examples/{e}`" for e in examples) + ".",
    ]
    if sources:
        parts += ["", "## Sources", "", *[f"- {s}" for s in sources]]
    return "\n".join(parts) + "\n"


def generated_files(root: pathlib.Path | None = None) -> dict[pathlib.Path, str]:
    """Every generated file, path -> text.

    Parameters
    ----------
    root : pathlib.Path, optional
        The ``endpoint_configs`` folder (the installed one by default).
    """
    root = root or endpoint_configs_dir()
    out: dict[pathlib.Path, str] = {}
    for base, intro in base_intros(root).items():
        schema = json.loads((root / base / SCHEMA_FILE).read_text())
        examples = sorted(p.name for p in (root / base / "examples").glob("*.json"))
        out[root / base / "README.md"] = readme(base, schema["description"].split(";")[0], intro, schema, examples)
    for preset in load_presets(root):
        folder = root / preset.name
        base_schema = json.loads((root / preset.base / SCHEMA_FILE).read_text())
        schema = preset_schema(preset, base_schema)
        out[folder / CONFIG_FILE] = (
            (root / preset.base / CONFIG_FILE).read_text().replace(f'"{preset.base}"', f'"{preset.name}"')
        )
        out[folder / TEMPLATE_FILE] = preset_template(preset, (root / preset.base / TEMPLATE_FILE).read_text())
        out[folder / SCHEMA_FILE] = json.dumps(schema, indent=2) + "\n"
        for stem, example in preset.examples.items():
            out[folder / "examples" / f"{stem}.json"] = json.dumps(example, indent=2) + "\n"
        intro = (
            preset.summary + f"\n\nEvery option of the [`{preset.base}`](../{preset.base}/README.md) template applies."
        )
        examples = sorted(f"{stem}.json" for stem in preset.examples)
        out[folder / "README.md"] = readme(preset.name, preset.title, intro, schema, examples, preset.sources)
    return out


def stale(root: pathlib.Path | None = None) -> list[pathlib.Path]:
    """Return the generated files that are missing or differ from what :func:`generated_files` gives."""
    return [p for p, text in generated_files(root).items() if not p.is_file() or p.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    """Write the generated files, or with ``--check`` list the stale ones and return 1."""
    args = sys.argv[1:] if argv is None else argv
    if "--check" in args:
        old = stale()
        for path in old:
            print(f"out of date: {path}")
        return 1 if old else 0
    for path, text in generated_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
