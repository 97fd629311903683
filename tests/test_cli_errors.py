"""``libe-gc`` ends with one clear line, never a traceback or an unanswerable prompt; messages point the right way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import typing as t

import click
import globus_sdk
import pytest
import requests
from click.testing import CliRunner

from bundle.cli import main
from bundle.cli.errors import CleanErrorsGroup, describe, preflight
from bundle.cli.smoke import smoke_options, with_accepted_defaults
from bundle.endpoints.templates import get_template

UUID0 = "00000000-0000-0000-0000-000000000000"


def _libe_gc(args: list[str], tmp_path, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GLOBUS_COMPUTE_CLIENT")}
    environ.update(GLOBUS_COMPUTE_USER_DIR=str(tmp_path / "gc-user-dir"), COLUMNS="200", **env)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "bundle.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    return proc, time.monotonic() - t0


def test_smoke_on_a_cloud_endpoint_with_no_network_is_one_line(tmp_path):
    """Client credentials set, the network gone (an HTTPS proxy that refuses): one line, within seconds."""
    proc, seconds = _libe_gc(
        ["smoke", "--endpoint", UUID0],
        tmp_path,
        GLOBUS_COMPUTE_CLIENT_ID="11111111-2222-3333-4444-555555555555",
        GLOBUS_COMPUTE_CLIENT_SECRET="not-a-real-secret",
        HTTPS_PROXY="http://127.0.0.1:9",
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "not-a-real-secret" not in proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("Error: cannot reach the HTTPS proxy (127.0.0.1:9") and "check the network" in line
    assert seconds < 60


def test_no_credentials_and_no_terminal_says_so_instead_of_prompting(tmp_path):
    for command in (["smoke", "--endpoint", UUID0], ["demo", "--endpoint", UUID0, "--out", "o"]):
        proc, _ = _libe_gc(command, tmp_path)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        out = proc.stdout + proc.stderr
        assert "Traceback" not in out and "auth.globus.org" not in out and "Authorization Code" not in out
        (line,) = proc.stderr.strip().splitlines()
        assert "needs Globus credentials and there is no terminal" in line
        assert "globus-compute-endpoint login" in line and "GLOBUS_COMPUTE_CLIENT_SECRET" in line


def test_preflight_checks_nothing_for_local_endpoints(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    preflight("local")
    preflight("local:slurm")
    monkeypatch.setenv("GLOBUS_COMPUTE_CLIENT_SECRET", "x")
    monkeypatch.delenv("GLOBUS_COMPUTE_CLIENT_ID", raising=False)
    with pytest.raises(click.ClickException, match="without GLOBUS_COMPUTE_CLIENT_ID"):
        preflight(UUID0, interactive=True)


@pytest.mark.parametrize(
    ("proxy", "address"),
    [
        ("http://proxy.example:3128", ("proxy.example", 3128)),
        ("http://proxy.example", ("proxy.example", 80)),
        ("proxy.example", ("proxy.example", 80)),
        ("https://proxy.example", ("proxy.example", 443)),
        ("socks5h://proxy.example", ("proxy.example", 1080)),
    ],
)
def test_preflight_reaches_a_proxy_on_the_port_requests_would_use(monkeypatch, proxy, address):
    """A proxy URL without a port is reached on its scheme's port, not refused for one nobody listens on."""
    monkeypatch.setenv("GLOBUS_COMPUTE_CLIENT_ID", "11111111-2222-3333-4444-555555555555")
    monkeypatch.setenv("GLOBUS_COMPUTE_CLIENT_SECRET", "not-a-real-secret")
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    tried: list[tuple[str, int]] = []

    def connect(addr: tuple[str, int], timeout: float) -> t.Any:
        tried.append(addr)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr("bundle.cli.errors.socket.create_connection", connect)
    with pytest.raises(click.ClickException, match=f"cannot reach the HTTPS proxy \\({address[0]}:{address[1]}:"):
        preflight(UUID0, interactive=False)
    assert tried == [address]


def _api_error(status: int) -> globus_sdk.GlobusAPIError:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps({"code": "AUTHENTICATION_ERROR", "message": "no"}).encode()
    response.headers["Content-Type"] = "application/json"
    response.request = requests.Request("GET", "https://compute.api.globus.org/v2/endpoints/x").prepare()
    return globus_sdk.GlobusAPIError(response)


def test_describe_turns_globus_errors_into_what_to_do():
    down = globus_sdk.GlobusConnectionError("ConnectionError on request", requests.ConnectionError("refused"))
    assert "cannot reach the Globus service" in (describe(down) or "")
    try:
        try:
            raise down
        except Exception as err:
            raise RuntimeError("while registering the function") from err
    except RuntimeError as chained:
        assert "check the network" in (describe(chained) or "")
    assert "globus-compute-endpoint login" in (describe(_api_error(401)) or "")
    assert "HTTP 429" in (describe(_api_error(429)) or "")
    assert "login was not completed" in (describe(EOFError()) or "")
    assert describe(ZeroDivisionError("a bug")) is None


def test_unexpected_errors_are_one_line_with_how_to_see_the_traceback(monkeypatch):
    @click.group(cls=CleanErrorsGroup)
    def cli() -> None:
        pass

    @cli.command()
    def boom() -> None:
        raise globus_sdk.GlobusConnectionError("ConnectionError on request", requests.ConnectionError("x"))

    @cli.command()
    def bug() -> None:
        raise KeyError("k")

    result = CliRunner().invoke(cli, ["boom"])
    assert result.exit_code == 1 and result.output.strip().startswith("Error: cannot reach the Globus service")
    result = CliRunner().invoke(cli, ["bug"])
    assert result.exit_code == 1 and "KeyError: 'k' (set LIBE_GC_DEBUG=1" in result.output
    monkeypatch.setenv("LIBE_GC_DEBUG", "1")
    assert isinstance(CliRunner().invoke(cli, ["bug"]).exception, KeyError)


def test_doctor_refuses_options_it_cannot_check():
    result = CliRunner().invoke(main, ["doctor", "--option", "acount=m1"])
    assert result.exit_code == 1 and "template options" in result.output
    result = CliRunner().invoke(main, ["doctor", "--template", "slurm", "--option", "acount=m1"])
    assert result.exit_code == 1 and "failed: template slurm" in result.output


def test_smoke_adds_only_defaults_the_template_accepts_with_the_users_options():
    assert smoke_options("local", None, {}) == {"max_workers_per_block": 2}
    assert smoke_options("local", None, {"engine_type": "GlobusComputeEngine"}) == {
        "engine_type": "GlobusComputeEngine"
    }
    assert smoke_options(UUID0, None, {"account": "a"}) == {"account": "a"}
    demo_defaults = {"slots_per_node": 2, "max_workers_per_block": 2}
    assert with_accepted_defaults("local", {"engine_type": "GlobusComputeEngine"}, demo_defaults) == {
        "engine_type": "GlobusComputeEngine"
    }
    assert with_accepted_defaults("local", {"slots_per_node": 3}, demo_defaults) == {
        "slots_per_node": 3,
        "max_workers_per_block": 2,
    }


def test_option_messages_suggest_the_option_and_the_boolean_spelling():
    with pytest.raises(ValueError, match=r"no option 'acount'; did you mean 'account'\?") as info:
        get_template("slurm").validate({"acount": "m1"})
    assert "allowed options:" in str(info.value)
    with pytest.raises(ValueError, match="'no' is not a boolean; write true or false"):
        get_template("slurm").validate({"exclusive": "no"})


def test_endpoint_render_says_its_file_is_an_input(tmp_path):
    result = CliRunner().invoke(main, ["endpoint", "render", "--help"])
    assert "Read user_endpoint_config options from this JSON file" in " ".join(result.output.split())
    (tmp_path / "opts.json").write_text(json.dumps({"partition": "debug"}))
    for flag in ("-o", "--options-file", "--user-options"):
        result = CliRunner().invoke(main, ["endpoint", "render", "slurm", flag, str(tmp_path / "opts.json")])
        assert result.exit_code == 0 and "debug" in result.output, result.output


def _endpoint_dir(tmp_path, name: str, **config: object) -> None:
    """An endpoint folder as `globus-compute-endpoint configure` leaves it (config.yaml only matters here)."""
    import yaml

    folder = tmp_path / "gc-user-dir" / name
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"amqp_port": 443, **config}))


def test_endpoint_start_with_no_network_is_one_line_and_starts_nothing(tmp_path):
    """Client credentials set, the service unreachable: one line within seconds, not the endpoint's long traceback."""
    _endpoint_dir(tmp_path, "review2-site", email="admin@example.org")
    creds = {
        "GLOBUS_COMPUTE_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
        "GLOBUS_COMPUTE_CLIENT_SECRET": "not-a-real-secret",
    }
    proc, seconds = _libe_gc(["endpoint", "start", "review2-site"], tmp_path, **creds, HTTPS_PROXY="http://127.0.0.1:9")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "not-a-real-secret" not in proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("Error: cannot reach the HTTPS proxy (127.0.0.1:9") and "check the network" in line, line
    assert seconds < 30
    assert not (tmp_path / "gc-user-dir" / "review2-site" / "endpoint.log").exists(), "the endpoint never ran"
    # no credentials and no terminal: said at once, no login prompt
    proc, _ = _libe_gc(["endpoint", "start", "review2-site"], tmp_path, HTTPS_PROXY="http://127.0.0.1:9")
    (line,) = proc.stderr.strip().splitlines()
    assert (
        "needs Globus credentials to start and there is no terminal" in line and "globus-compute-endpoint login" in line
    )
    proc, _ = _libe_gc(["endpoint", "start", "nosuch-ep"], tmp_path)
    assert "no endpoint 'nosuch-ep'" in proc.stderr and "libe-gc endpoint configure nosuch-ep" in proc.stderr


def test_the_service_checked_is_the_one_the_endpoint_talks_to():
    from bundle.cli.errors import service_address

    assert service_address({}) == ("compute.api.globus.org", 443)
    assert service_address({"GLOBUS_SDK_ENVIRONMENT": "local"}) == ("localhost", 5000)
    assert service_address({"GLOBUS_SDK_ENVIRONMENT": "preview"}) == ("compute.api.preview.globus.org", 443)


@pytest.mark.skipif(os.getuid() != 0, reason="the endpoint's multi-user rule applies to root")
def test_an_endpoint_configured_as_root_starts_as_root(tmp_path):
    """As root, configure asks for the contact email the endpoint needs, and the endpoint then gets past that rule."""
    proc, _ = _libe_gc(["endpoint", "configure", "review2-root", "--template", "local"], tmp_path)
    assert proc.returncode == 1 and "--contact-email" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "gc-user-dir" / "review2-root").exists(), "nothing configured"
    args = ["endpoint", "configure", "review2-root", "--template", "local", "--contact-email", "admin@example.org"]
    proc, _ = _libe_gc(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "libe-gc endpoint start review2-root" in proc.stdout and "globus-compute-endpoint login" in proc.stdout
    config = (tmp_path / "gc-user-dir" / "review2-root" / "config.yaml").read_text()
    assert "email: admin@example.org" in config
    # The endpoint itself, started as root with no credentials: past the email rule, at the login step.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GLOBUS_COMPUTE_CLIENT")}
    started = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "globus-compute-endpoint"), "start", "review2-root"],
        env={**environ, "GLOBUS_COMPUTE_USER_DIR": str(tmp_path / "gc-user-dir")},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = started.stdout + started.stderr
    assert "contact email" not in out and "authenticate with Globus" in out, out[-2000:]
