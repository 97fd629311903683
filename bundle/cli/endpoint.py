"""``libe-gc templates show`` and ``libe-gc endpoint render|configure|start``: bundled templates on the command line."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import typing as t

import click

from bundle.cli.errors import PREFLIGHT_TIMEOUT, reach_service
from bundle.endpoints.credentials import LOGIN_HINT, compute_dir, credential_state
from bundle.endpoints.templates import CONFIG_FILE, SCHEMA_FILE, TEMPLATE_FILE, EndpointTemplate, get_template
from bundle.errors import BundleError


def parse_options(pairs: tuple[str, ...]) -> dict[str, t.Any]:
    """Turn ``key=value`` pairs into options; values are parsed as JSON when they can be.

    Parameters
    ----------
    pairs : tuple of str
        ``--option`` values.

    Returns
    -------
    dict
        The options.
    """
    options: dict[str, t.Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not of the form key=value", param_hint="--option")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


def _template(name: str) -> EndpointTemplate:
    try:
        return get_template(name)
    except BundleError as err:
        raise click.ClickException(str(err)) from err


def _options(options_file: t.IO[str] | None, pairs: tuple[str, ...]) -> dict[str, t.Any]:
    """Options from a JSON file (or ``-`` for stdin), overridden by ``--option`` pairs."""
    options: dict[str, t.Any] = {}
    if options_file is not None:
        try:
            loaded = json.load(options_file)
        except json.JSONDecodeError as err:
            raise click.BadParameter(f"not JSON: {err}", param_hint="-o/--options-file") from err
        if not isinstance(loaded, dict):
            raise click.BadParameter("must hold a JSON object", param_hint="-o/--options-file")
        options.update(loaded)
    options.update(parse_options(pairs))
    return options


@click.command("show")
@click.argument("name")
def templates_show(name: str) -> None:
    """Show a template: where it is, every option with its default and what it allows, and its examples."""
    from bundle.endpoints.templates import describe_option

    tmpl = _template(name)
    schema = tmpl.schema
    required = set(schema.get("required", []))
    click.echo(f"{tmpl.name}: {schema.get('description', '')}")
    click.echo(f"folder: {tmpl.path}")
    click.echo("options:")
    for key, prop in schema.get("properties", {}).items():
        if key in required:
            default = "required"
        elif "default" in prop:
            default = f"default {json.dumps(prop['default'])}"
        else:
            default = "not set by default"
        click.echo(f"  {key} ({default}; {describe_option(prop)})")
        click.echo(f"      {prop.get('description', '')}")
    examples = sorted(p.name for p in (tmpl.path / "examples").glob("*.json"))
    click.echo("examples: " + ", ".join(str(tmpl.path / "examples" / e) for e in examples))


@click.group()
def endpoint() -> None:
    """Render a template offline, or configure a Globus Compute endpoint from it."""


@endpoint.command("render")
@click.argument("name")
@click.option(
    "-o",
    "--options-file",
    "--user-options",
    "options_file",
    type=click.File("r"),
    default=None,
    help="Read user_endpoint_config options from this JSON file ('-' for stdin); an input, as -o of "
    "globus-compute-endpoint render-user-config. The rendered YAML goes to stdout (redirect it: > config.yaml).",
)
@click.option("--option", "pairs", multiple=True, metavar="KEY=VALUE", help="An option; repeatable; wins over -o.")
def endpoint_render(name: str, options_file: t.IO[str] | None, pairs: tuple[str, ...]) -> None:
    """Render template NAME with the given options, print the YAML to stdout, and load it into a real engine config.

    Rendering uses globus-compute-endpoint's own renderer (options checked against the schema
    first); loading uses its config loader, so a configuration that prints here loads on the site.
    """
    tmpl = _template(name)
    options = _options(options_file, pairs)
    try:
        text = tmpl.render(options)
        config, stood_in = tmpl.load_offline(options)
    except (BundleError, ValueError) as err:
        raise click.ClickException(str(err)) from err
    click.echo(text)
    engine = config.engine
    provider = engine.executor.provider
    click.echo(f"# loaded: {type(engine).__name__} with {type(provider).__name__}", err=True)
    for ifname in stood_in:
        click.echo(
            f"# network interface {ifname!r} is not on this machine; 127.0.0.1 stood in for it while loading",
            err=True,
        )


def _globus_compute_endpoint() -> str:
    """Return the ``globus-compute-endpoint`` command beside this interpreter, else the one on PATH."""
    beside = pathlib.Path(sys.executable).parent / "globus-compute-endpoint"
    if beside.is_file():
        return str(beside)
    found = shutil.which("globus-compute-endpoint")
    if found is None:
        raise click.ClickException("globus-compute-endpoint is not installed (pip install globus-compute-endpoint)")
    return found


def configure_files(
    tmpl: EndpointTemplate, defaults: dict[str, t.Any], folder: pathlib.Path
) -> dict[str, pathlib.Path]:
    """Write the three endpoint files of ``tmpl``, with ``defaults`` as the option defaults, into ``folder``.

    Parameters
    ----------
    tmpl : EndpointTemplate
        The bundled template.
    defaults : dict
        Options (already validated) that become the endpoint's defaults.
    folder : pathlib.Path
        Where to write ``config.yaml``, the template and the schema.

    Returns
    -------
    dict
        ``core``, ``template``, ``schema`` -> path.
    """
    from bundle.endpoints.sites import schema_with_defaults, template_with_defaults

    files = {"core": folder / CONFIG_FILE, "template": folder / TEMPLATE_FILE, "schema": folder / SCHEMA_FILE}
    files["core"].write_text(tmpl.config_path.read_text())
    text = tmpl.template_path.read_text()
    schema = tmpl.schema
    if defaults:
        header = f"{{#- libe-gc {tmpl.name!r} template; endpoint defaults set by libe-gc endpoint configure. -#}}\n"
        text = template_with_defaults(text, defaults, header=header)
        schema = schema_with_defaults(schema, defaults)
    files["template"].write_text(text)
    files["schema"].write_text(json.dumps(schema, indent=2) + "\n")
    return files


def privileged() -> bool:
    """Whether ``globus-compute-endpoint`` counts this process as privileged (root, or able to change user).

    A privileged endpoint registers as multi-user, and ``globus-compute-endpoint start`` then refuses
    one whose ``config.yaml`` has no ``email`` ("Multi-user endpoints require a contact email address").
    """
    try:
        from globus_compute_endpoint.endpoint.utils import is_privileged

        return bool(is_privileged())
    except Exception:  # no pyprctl (not Linux): the endpoint cannot run multi-user here; root still counts
        return os.getuid() == 0


EMAIL_NEEDED = (
    "as root, globus-compute-endpoint starts an endpoint as a multi-user endpoint, which needs a contact email "
    "address (the endpoint refuses to start without one)"
)


@endpoint.command("configure")
@click.argument("ep_name")
@click.option("--template", "name", required=True, help="Bundled template (libe-gc templates list).")
@click.option(
    "--option", "pairs", multiple=True, metavar="KEY=VALUE", help="Endpoint default for an option; repeatable."
)
@click.option("--display-name", default=None, help="Display name of the endpoint.")
@click.option(
    "--contact-email",
    default=None,
    help="Email of the endpoint's administrators (config.yaml `email`); required when run as root.",
)
def endpoint_configure(
    ep_name: str, name: str, pairs: tuple[str, ...], display_name: str | None, contact_email: str | None
) -> None:
    """Create Globus Compute endpoint EP_NAME from a bundled template.

    Runs ``globus-compute-endpoint configure EP_NAME --core-config ... --template-config ...
    --schema-config ...`` with the template's files.  ``--option`` values are checked against the
    template's schema and become the endpoint's defaults; users may still set every option in
    their ``user_endpoint_config``.  As root, the endpoint starts as a multi-user endpoint, which
    globus-compute-endpoint starts only with a contact email: give ``--contact-email``.
    """
    tmpl = _template(name)
    defaults = parse_options(pairs)
    try:
        tmpl.validate(defaults, partial=True)
    except BundleError as err:
        raise click.ClickException(str(err)) from err
    if privileged() and not contact_email:
        raise click.ClickException(f"{EMAIL_NEEDED}: add --contact-email ADDRESS (nothing was configured)")
    with tempfile.TemporaryDirectory(prefix="libe-gc-configure-") as tmp:
        files = configure_files(tmpl, defaults, pathlib.Path(tmp))
        cmd = [
            _globus_compute_endpoint(),
            "configure",
            ep_name,
            # A single-user endpoint whose configuration is templated per user_endpoint_config.
            "--multi-user",
            "false",
            "--core-config",
            str(files["core"]),
            "--template-config",
            str(files["template"]),
            "--schema-config",
            str(files["schema"]),
        ]
        if display_name:
            cmd += ["--display-name", display_name]
        if contact_email:
            cmd += ["--contact-email", contact_email]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    click.echo(proc.stdout, nl=False)
    if proc.returncode != 0:
        raise click.ClickException(f"globus-compute-endpoint configure failed (exit {proc.returncode}):\n{proc.stderr}")
    click.echo(f"endpoint {ep_name!r} uses the libe-gc {tmpl.name!r} template.")
    state = credential_state()
    if not state.usable:
        click.echo(f"Log in first ({state.detail}): {LOGIN_HINT}.")
    click.echo("Start it with (checks credentials and the network first, then runs globus-compute-endpoint start):")
    click.echo(f"  libe-gc endpoint start {ep_name}")


def start_check(ep_name: str, *, interactive: bool | None = None, timeout: float = PREFLIGHT_TIMEOUT) -> pathlib.Path:
    """Check, each in one line, what ``globus-compute-endpoint start EP_NAME`` needs; return the endpoint's folder.

    Parameters
    ----------
    ep_name : str
        The endpoint's name.
    interactive : bool, optional
        Whether a login prompt could be answered (default: stdin and stdout are terminals).
    timeout : float
        Seconds to reach the Globus Compute service.

    Raises
    ------
    click.ClickException
        The endpoint is not configured; as root, its ``config.yaml`` has no ``email``; no usable
        credentials and no terminal to log in from (or invalid ones); the service (or the HTTPS
        proxy) cannot be reached within ``timeout`` seconds.
    """
    import yaml

    folder = compute_dir(os.environ) / ep_name
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise click.ClickException(
            f"no endpoint {ep_name!r} in {folder.parent}: create it with "
            f"`libe-gc endpoint configure {ep_name} --template NAME`"
        )
    try:
        config = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as err:
        raise click.ClickException(f"{config_path} is not YAML: {err}") from None
    if not isinstance(config, dict):
        raise click.ClickException(f"{config_path} must hold a YAML mapping")
    if privileged() and not config.get("email"):
        raise click.ClickException(
            f"{EMAIL_NEEDED}: add `email: ADDRESS` to {config_path}, or configure it again with --contact-email"
        )
    state = credential_state()
    if state.kind == "invalid":
        raise click.ClickException(f"Globus credentials: {state.detail}; {state.fix}")
    tty = (sys.stdin.isatty() and sys.stdout.isatty()) if interactive is None else interactive
    if not state.usable and not tty:
        raise click.ClickException(
            f"endpoint {ep_name!r} needs Globus credentials to start and there is no terminal to log in from "
            f"({state.detail}): {LOGIN_HINT}"
        )
    env = dict(os.environ)
    if config.get("local_compute_services"):
        env["GLOBUS_SDK_ENVIRONMENT"] = "local"
    elif config.get("environment"):
        env["GLOBUS_SDK_ENVIRONMENT"] = str(config["environment"])
    reach_service(timeout=timeout, environ=env)
    return folder


@endpoint.command("start", context_settings={"ignore_unknown_options": True})
@click.argument("ep_name")
@click.argument("start_args", nargs=-1, type=click.UNPROCESSED)
@click.option("--check-only", is_flag=True, help="Run the checks and stop.")
@click.pass_context
def endpoint_start(ctx: click.Context, ep_name: str, start_args: tuple[str, ...], check_only: bool) -> None:
    """Check what starting endpoint EP_NAME needs, then run ``globus-compute-endpoint start EP_NAME``.

    Checked first, each failure one line and nothing started: the endpoint exists; as root, its
    ``config.yaml`` has the contact ``email`` a multi-user endpoint needs; Globus credentials (a
    stored login, ``GLOBUS_COMPUTE_CLIENT_ID`` and ``GLOBUS_COMPUTE_CLIENT_SECRET``, or a terminal to
    log in from); the Globus Compute service (or the HTTPS proxy) answers within 5 seconds.
    Further arguments go to ``globus-compute-endpoint start``.
    """
    start_check(ep_name)
    if check_only:
        click.echo(f"endpoint {ep_name!r}: ready to start")
        return
    proc = subprocess.run([_globus_compute_endpoint(), "start", ep_name, *start_args], env=dict(os.environ))
    ctx.exit(proc.returncode)
