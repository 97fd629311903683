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
