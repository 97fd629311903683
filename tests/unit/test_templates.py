import json

import pytest
import yaml

from bundle.endpoints.templates import endpoint_configs_dir, get_template, list_templates
from bundle.errors import TemplateNotFoundError, TemplateOptionError

HOSTILE = "a\"b'c\nd: e\n$(touch /tmp/pwned) `id`; rm -rf ~ # {{ 7*7 }}"


def test_local_template_ships_all_files():
    assert "local" in list_templates()
    tmpl = get_template("local")
    for path in (tmpl.config_path, tmpl.template_path, tmpl.schema_path):
        assert path.is_file(), path
    assert tmpl.path.parent == endpoint_configs_dir()
    examples = sorted((tmpl.path / "examples").glob("*.json"))
    assert examples, "each template needs examples"
    for example in examples:
        tmpl.validate(json.loads(example.read_text()))


def test_unknown_template_lists_available():
    with pytest.raises(TemplateNotFoundError, match="local"):
        get_template("no-such-template")


def test_unknown_option_names_it_and_lists_allowed():
    with pytest.raises(
        TemplateOptionError, match="no option 'max_workers'.*allowed options:.*max_workers_per_block"
    ) as ei:
        get_template("local").validate({"max_workers": 4})
    assert ei.value.option == "max_workers"


def test_bad_value_names_option_and_allowed_range():
    with pytest.raises(TemplateOptionError, match=r"'max_workers_per_block'.*from 1 to 1024"):
        get_template("local").validate({"max_workers_per_block": 0})
    with pytest.raises(TemplateOptionError, match=r"'mpi_launcher'.*one of 'mpiexec', 'srun', 'aprun'"):
        get_template("local").validate({"mpi_launcher": "mpirun; rm -rf /"})


def test_option_for_the_other_engine_is_refused():
    with pytest.raises(TemplateOptionError, match="max_workers_per_block"):
        get_template("local").validate({"engine_type": "GlobusComputeEngine", "max_workers_per_block": 2})
    with pytest.raises(TemplateOptionError, match="max_workers_per_node"):
        get_template("local").validate({"max_workers_per_node": 2})


def test_mpi_render_puts_keys_where_engine_and_provider_take_them():
    text = get_template("local").render({"max_workers_per_block": 3, "mpi_launcher": "srun"})
    doc = yaml.safe_load(text)
    engine = doc["engine"]
    assert engine["type"] == "GlobusMPIEngine"
    assert engine["max_workers_per_block"] == 3
    assert engine["mpi_launcher"] == "srun"
    assert engine["encrypted"] is True
    assert engine["address"] == "127.0.0.1"
    assert "cores_per_node" not in engine["provider"]
    assert engine["provider"]["launcher"] == {"type": "SimpleLauncher"}
    assert engine["provider"]["type"] == "LocalProvider"
    # three slots on this host unless inside an allocation
    assert "seq 1 3" in engine["provider"]["worker_init"]
    assert "command -v srun" in engine["provider"]["worker_init"]


def test_python_render_loads_a_globus_compute_engine():
    config = get_template("local").load({"engine_type": "GlobusComputeEngine", "max_workers_per_node": 2})
    assert type(config.engine).__name__ == "GlobusComputeEngine"
    assert config.engine.executor.max_workers_per_node == 2
    assert config.engine.encrypted


def test_mpi_render_loads_a_globus_mpi_engine():
    config = get_template("local").load({"max_workers_per_block": 2})
    assert type(config.engine).__name__ == "GlobusMPIEngine"
    assert config.engine.executor.enable_mpi_mode


def test_hostile_worker_init_stays_one_string():
    text = get_template("local").render({"worker_init": HOSTILE})
    doc = yaml.safe_load(text)
    assert set(doc) == {"idle_heartbeats_soft", "idle_heartbeats_hard", "engine"}
    worker_init = doc["engine"]["provider"]["worker_init"]
    # the option arrives verbatim, on its own lines, between the bundle's prelude and launcher check
    assert HOSTILE in worker_init
    assert "{{" in worker_init  # not evaluated by Jinja
    assert set(doc["engine"]["provider"]) == {
        "type",
        "init_blocks",
        "min_blocks",
        "max_blocks",
        "launcher",
        "worker_init",
    }


@pytest.mark.parametrize("name", list_templates())
def test_option_descriptions_say_patterns_in_words(name):
    """What `libe-gc templates show` and option errors print says each bundled pattern in words, not as a regex."""
    from bundle.endpoints.templates import describe_option

    props = get_template(name).schema.get("properties", {})
    described = {option: describe_option(prop) for option, prop in props.items()}
    raw = {option: text for option, text in described.items() if "^" in text or "$" in text or "``" in text}
    assert not raw, raw


def test_an_option_error_says_the_pattern_in_words():
    with pytest.raises(TemplateOptionError) as info:
        get_template("slurm").validate({"walltime": "1 day"})
    assert "'1 day' is not allowed" in str(info.value)
    assert "matching hours, minutes and seconds as HH:MM:SS" in str(info.value), str(info.value)
