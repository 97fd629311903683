"""Every bundled template: files, strict schemas, every example renders and loads, injection is refused or inert."""

import json
import re

import pytest
import yaml

from bundle.endpoints import sites
from bundle.endpoints.templates import get_template, list_templates
from bundle.errors import TemplateOptionError

TEMPLATES = list_templates()
PROVIDERS = {
    "local": "LocalProvider",
    "slurm": "SlurmProvider",
    "perlmutter": "SlurmProvider",
    "frontier": "SlurmProvider",
    "pbs": "PBSProProvider",
    "polaris": "PBSProProvider",
    "aurora": "PBSProProvider",
}
EXAMPLES = [
    (name, path.name) for name in TEMPLATES for path in sorted((get_template(name).path / "examples").glob("*.json"))
]
FREE_TEXT = {"worker_init"}  # the user's own shell, run as the user: must stay one YAML string, nothing more
HOSTILE = [
    "x\ny",
    "x\n",
    "x\r\ny",
    'x"y',
    "x'y",
    "x$(touch /tmp/pwned)",
    "x`id`",
    "x;rm -rf ~",
    "x y",
    "x\n#SBATCH --uid=0",
    'x"\nengine:\n  type: ThreadPoolEngine\n#',
    "{{ 7*7 }}",
]


def test_all_templates_and_presets_ship():
    assert set(TEMPLATES) == set(PROVIDERS)


@pytest.mark.parametrize("name", TEMPLATES)
def test_folder_has_every_file_and_readme_lists_every_option(name):
    tmpl = get_template(name)
    for path in (tmpl.config_path, tmpl.template_path, tmpl.schema_path, tmpl.path / "README.md"):
        assert path.is_file(), path
    readme = (tmpl.path / "README.md").read_text()
    for option in tmpl.schema["properties"]:
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{option}` |")), None)
        assert row is not None, f"{name} README does not list {option}"
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] and cells[2], f"{name} README row for {option} lacks a default or an example: {row}"


def test_generated_presets_and_readmes_are_up_to_date():
    assert sites.stale() == [], "run: python -m bundle.endpoints.sites"


@pytest.mark.parametrize("name", TEMPLATES)
def test_schema_is_strict(name):
    schema = get_template(name).schema
    assert schema["additionalProperties"] is False
    for option, prop in schema["properties"].items():
        if prop.get("type") == "string":
            if option in FREE_TEXT:
                assert "maxLength" in prop, option
            else:
                assert "pattern" in prop, f"{name}.{option}: a string option needs a pattern"
                assert prop["pattern"].startswith("^") and prop["pattern"].endswith("$(?!\\n)"), option
        elif prop.get("type") == "integer":
            assert "minimum" in prop and "maximum" in prop, f"{name}.{option}: integers need bounds"
        elif prop.get("type") == "array":
            items = prop["items"]
            pattern = items.get("pattern", "") if items.get("type") == "string" else ""
            anchored = pattern.startswith("^") and pattern.endswith("$(?!\\n)")
            assert ("enum" in items or anchored) and "maxItems" in prop, (
                f"{name}.{option}: lists need enum items (or anchored string patterns) and a bound"
            )
        else:
            assert "enum" in prop or prop.get("type") == "boolean", f"{name}.{option}: {prop}"
        values = [prop["default"]] if "default" in prop else []
        for value in values + prop.get("examples", []):
            opts = {**_required(name), option: value}
            if option in ("max_workers_per_node", "pin_workers_to_gpus"):
                opts["engine_type"] = "GlobusComputeEngine"
            get_template(name).validate(opts)


def _required(name):
    return {key: "abc123" for key in get_template(name).schema.get("required", [])}


@pytest.mark.parametrize(("name", "example"), EXAMPLES)
def test_every_example_renders_and_loads(name, example):
    tmpl = get_template(name)
    options = json.loads((tmpl.path / "examples" / example).read_text())
    doc = yaml.safe_load(tmpl.render(options))
    config, stood_in = tmpl.load_offline(options)
    engine_type = options.get("engine_type", "GlobusMPIEngine")
    assert type(config.engine).__name__ == engine_type
    assert doc["engine"]["type"] == engine_type
    provider = config.engine.executor.provider
    assert type(provider).__name__ == PROVIDERS[name]
    assert config.engine.encrypted
    interface = options.get("network_interface", tmpl.schema["properties"].get("network_interface", {}).get("default"))
    assert set(stood_in) <= {interface}, stood_in
    if engine_type == "GlobusMPIEngine":
        assert config.engine.executor.enable_mpi_mode
        assert type(provider.launcher).__name__ == "SimpleLauncher"
        assert "cores_per_node" not in doc["engine"]["provider"]
    if "nodes_per_block" in options:
        assert provider.nodes_per_block == options["nodes_per_block"]


def test_presets_carry_the_site_values():
    def provider(name, **opts):
        config, stood_in = get_template(name).load_offline({**_required(name), **opts})
        return config, stood_in, config.engine.executor.provider

    config, stood_in, prov = provider("perlmutter")
    assert (prov.qos, prov.constraint, prov.exclusive) == ("debug", "cpu", True)
    assert "#SBATCH --licenses=scratch" in prov.scheduler_options
    assert config.engine.executor.mpi_launcher == "srun"
    assert stood_in in ([], ["hsn0"])
    _, stood_in, prov = provider("frontier")
    assert prov.partition == "batch" and prov.account == "abc123"
    assert stood_in in ([], ["hsn0"])
    _, stood_in, prov = provider("polaris")
    assert (prov.queue, prov.cpus_per_node, prov.select_options) == ("debug", 64, "ngpus=4")
    assert "#PBS -l filesystems=home:eagle" in prov.scheduler_options
    assert stood_in in ([], ["bond0"])
    _, _, prov = provider("polaris", engine_type="GlobusComputeEngine")
    assert (prov.launcher.bind_cmd, prov.launcher.overrides) == ("--cpu-bind", "--depth=64 --ppn 1")
    _, stood_in, prov = provider("aurora")
    assert (prov.queue, prov.cpus_per_node) == ("debug", 208)
    assert "#PBS -l filesystems=home:flare" in prov.scheduler_options
    assert stood_in in ([], ["bond0"])
    # a site default stays an option the user may change
    _, _, prov = provider("perlmutter", qos="regular", licenses="")
    assert prov.qos == "regular" and "--licenses" not in prov.scheduler_options


@pytest.mark.parametrize("name", ["frontier", "polaris", "aurora"])
def test_preset_requires_a_project_and_says_so(name):
    with pytest.raises(TemplateOptionError, match="needs option 'account'") as ei:
        get_template(name).validate({})
    assert ei.value.option == "account"


def _string_options(name):
    props = get_template(name).schema["properties"]
    return [k for k, p in props.items() if p.get("type") == "string"]


def _shape(value):
    """The structure of a loaded YAML document, with worker_init's text left out."""
    if isinstance(value, dict):
        return {k: ("<worker_init>" if k == "worker_init" else _shape(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return value


@pytest.mark.parametrize("name", TEMPLATES)
def test_injection_in_every_string_option_is_refused_or_inert(name):
    tmpl = get_template(name)
    base = _required(name)
    for option in _string_options(name):
        benign = yaml.safe_load(tmpl.render({**base, option: "abc"})) if option in FREE_TEXT else None
        for payload in HOSTILE:
            opts = {**base, option: payload}
            if option not in FREE_TEXT:
                with pytest.raises(TemplateOptionError) as ei:
                    tmpl.validate(opts)
                assert ei.value.option == option
                # the renderer (what a real endpoint runs) refuses it too, before rendering
                with pytest.raises(Exception, match="does not match|is not allowed"):
                    tmpl.render(opts)
                continue
            doc = yaml.safe_load(tmpl.render(opts))
            assert _shape(doc) == _shape(benign), f"{name}.{option}={payload!r} changed the configuration"
            worker_init = doc["engine"]["provider"]["worker_init"]
            assert payload in worker_init
            assert worker_init.count(payload) == 1


def test_free_text_is_placed_on_its_own_lines_between_bundle_sections():
    for name in TEMPLATES:
        tmpl = get_template(name)
        text = "echo one\necho two"
        worker_init = yaml.safe_load(tmpl.render({**_required(name), "worker_init": text}))["engine"]["provider"][
            "worker_init"
        ]
        assert re.search(r"(^|\n)echo one\necho two\n", worker_init), (name, worker_init)


@pytest.mark.parametrize("name", [n for n in TEMPLATES if "slots_per_node" in get_template(n).schema["properties"]])
@pytest.mark.parametrize("slots", [2, 4])
def test_slots_per_node_alone_runs_that_many_tasks_per_node(name, slots):
    """``slots_per_node: k`` alone: every node of a block is listed k times and k tasks per node run at once."""
    tmpl = get_template(name)
    nodes = int(tmpl.schema["properties"].get("nodes_per_block", {}).get("default", 1))
    doc = yaml.safe_load(tmpl.render({**_required(name), "slots_per_node": slots}))
    assert doc["engine"]["max_workers_per_block"] == nodes * slots
    assert f"seq 1 {slots}" in doc["engine"]["provider"]["worker_init"]
    # the same engine as with both options set (what the benchmarks and tests used to write)
    both = yaml.safe_load(
        tmpl.render({**_required(name), "slots_per_node": slots, "max_workers_per_block": nodes * slots})
    )
    assert both == doc
