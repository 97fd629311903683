"""The wheel carries endpoint_configs/ and jobscripts/, found with importlib.resources."""

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (whl,) = out.glob("libe_gc_bundle-*.whl")
    return whl


def test_wheel_contains_templates_and_jobscripts(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for tmpl in ("local", "slurm", "pbs", "perlmutter", "frontier", "polaris", "aurora"):
        for f in ("config.yaml", "user_config_template.yaml.j2", "user_config_schema.json", "README.md"):
            assert f"bundle/endpoint_configs/{tmpl}/{f}" in names
    assert any(n.startswith("bundle/jobscripts/") for n in names)
    assert "bundle/endpoints/local/endpoint.py" in names
    assert any(n.endswith("entry_points.txt") for n in names)


def test_non_editable_install_finds_data_with_importlib_resources(wheel, tmp_path):
    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True, capture_output=True
    )
    code = (
        "import bundle.endpoints.templates as t, pathlib;"
        "print(t.endpoint_configs_dir()); print(t.jobscripts_dir()); print(','.join(t.list_templates()))"
    )
    out = subprocess.run([str(py), "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    configs, jobscripts, names = out.splitlines()
    assert configs.startswith(str(env_dir)) and configs.endswith("site-packages/bundle/endpoint_configs")
    assert jobscripts.endswith("site-packages/bundle/jobscripts")
    assert set(names.split(",")) >= {"local", "slurm", "pbs", "perlmutter", "frontier", "polaris", "aurora"}


def test_the_readmes_docs_build_command_works_after_the_install_it_names(wheel):
    """The README names an install for building the docs; that extra brings Sphinx and what docs/conf.py loads."""
    import re

    readme = (ROOT / "README.md").read_text()
    found = re.search(r'Build it with `python3 -m pip install "\.\[(\w+)\]"`, then `python3 -m sphinx -b html', readme)
    assert found, "the README's docs build line names the install that brings Sphinx"
    extra = found.group(1)
    metadata = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("METADATA")))
        .decode()
    )
    brought = {
        re.split(r"[<>=!~; \[]", line.split(":", 1)[1].strip())[0].lower()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and f"extra == '{extra}'" in line.replace('"', "'")
    }
    conf = (ROOT / "docs" / "conf.py").read_text()
    needed = {"sphinx"}
    needed |= {"myst-parser"} if "myst_parser" in conf else set()
    needed |= {name} if (name := re.search(r'html_theme = "(\w+)"', conf).group(1)) != "alabaster" else set()
    assert needed <= brought, f"extra [{extra}] brings {sorted(brought)}; docs/conf.py needs {sorted(needed)}"
