"""``libe-gc endpoint configure --contact-email``: the address the endpoint daemon asks for when run as root."""

from __future__ import annotations

import os
import pathlib

import pytest
import yaml
from click.testing import CliRunner

from bundle.cli import main


def test_contact_email_reaches_the_endpoint_config(tmp_path: pathlib.Path) -> None:
    env = dict(os.environ, GLOBUS_COMPUTE_USER_DIR=str(tmp_path / "gc"))
    args = ["endpoint", "configure", "ep", "--template", "local", "--contact-email", "admin@example.org"]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((tmp_path / "gc" / "ep" / "config.yaml").read_text())
    assert config["email"] == "admin@example.org"
    assert config["amqp_port"] == 443  # the template's own settings are kept
    assert "--contact-email" not in result.output


@pytest.mark.skipif(os.geteuid() != 0, reason="the refusal is for root only")
def test_root_without_contact_email_is_refused_before_anything_is_configured(tmp_path: pathlib.Path) -> None:
    env = dict(os.environ, GLOBUS_COMPUTE_USER_DIR=str(tmp_path / "gc"))
    result = CliRunner().invoke(main, ["endpoint", "configure", "ep", "--template", "local"], env=env)
    assert result.exit_code != 0, result.output
    assert "--contact-email" in result.output
    assert not (tmp_path / "gc" / "ep").exists()
