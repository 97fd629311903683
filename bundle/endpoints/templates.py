"""Bundled endpoint templates: find, validate, render and load them.

Each template is a folder under ``endpoint_configs/`` holding ``config.yaml``
(the template-capable endpoint's own configuration),
``user_config_template.yaml.j2`` and ``user_config_schema.json``.  Rendering
goes through globus-compute-endpoint's own renderer (a Jinja sandbox with
strict undefined, options JSON-escaped and schema-checked first), and loading
through its own config loader, so what the bundle runs locally is exactly what
a site endpoint runs from the same files.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import pathlib
import pwd
import reprlib
import threading
import typing as t
import uuid
import warnings
from dataclasses import asdict, dataclass
from importlib import resources

from bundle.endpoints.schema_words import plain_pattern_words
from bundle.errors import TemplateNotFoundError, TemplateOptionError, TemplateRenderError

if t.TYPE_CHECKING:
    from globus_compute_endpoint.endpoint.config import UserEndpointConfig

_OFFLINE_LOCK = threading.Lock()

CONFIG_FILE = "config.yaml"
TEMPLATE_FILE = "user_config_template.yaml.j2"
SCHEMA_FILE = "user_config_schema.json"


def config_key(config: t.Mapping[str, t.Any] | None) -> str:
    """Return the text that identifies a ``user_endpoint_config`` (same options, same text).

    Parameters
    ----------
    config : Mapping or None
        Template options.

    Returns
    -------
    str
        Canonical JSON (keys sorted).

    Raises
    ------
    TypeError, ValueError
        When the options are not JSON-serializable.
    """
    return json.dumps(config or {}, sort_keys=True)


def _data_dir(name: str) -> pathlib.Path:
    """Return a data folder shipped with the package.

    In a wheel the folder sits inside the ``bundle`` package; in a source
    checkout (editable install) it sits beside it at the repository root.
    """
    packaged = resources.files("bundle") / name
    if packaged.is_dir():
        return pathlib.Path(str(packaged))
    checkout = pathlib.Path(__file__).resolve().parents[2] / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"bundle data folder {name!r} is missing from the installation")


def endpoint_configs_dir() -> pathlib.Path:
    """Folder holding one sub-folder per endpoint template."""
    return _data_dir("endpoint_configs")


def jobscripts_dir() -> pathlib.Path:
    """Folder holding the sbatch and qsub scripts."""
    return _data_dir("jobscripts")


def list_templates() -> list[str]:
    """Names of the bundled endpoint templates, sorted."""
    root = endpoint_configs_dir()
    return sorted(p.name for p in root.iterdir() if (p / TEMPLATE_FILE).is_file())


@dataclass(frozen=True)
class EndpointTemplate:
    """One bundled endpoint template.

    Parameters
    ----------
    name : str
        Template name (its folder under ``endpoint_configs/``).
    path : pathlib.Path
        The template folder.
    """

    name: str
    path: pathlib.Path

    @property
    def config_path(self) -> pathlib.Path:
        """``config.yaml``: the template-capable endpoint's configuration."""
        return self.path / CONFIG_FILE

    @property
    def template_path(self) -> pathlib.Path:
        """``user_config_template.yaml.j2``: the Jinja template of the engine configuration."""
        return self.path / TEMPLATE_FILE

    @property
    def schema_path(self) -> pathlib.Path:
        """``user_config_schema.json``: the JSON schema of the user options."""
        return self.path / SCHEMA_FILE

    @functools.cached_property
    def schema(self) -> dict[str, t.Any]:
        """The JSON schema of this template's user options."""
        data = json.loads(self.schema_path.read_text())
        if not isinstance(data, dict):
            raise TemplateRenderError(f"{self.schema_path} is not a JSON object")
        return data

    def validate(self, options: t.Mapping[str, t.Any] | None, *, partial: bool = False) -> dict[str, t.Any]:
        """Check user options against the template's schema.

        Parameters
        ----------
        options : Mapping or None
            The ``user_endpoint_config`` to check.
        partial : bool
            Check only the options given, not that the required ones are there (for endpoint defaults).

        Returns
        -------
        dict
            A plain-dict copy of the options.

        Raises
        ------
        TemplateOptionError
            Naming the first offending option and what it allows.
        """
        import jsonschema

        opts = dict(options or {})
        try:
            json.dumps(opts)
        except (TypeError, ValueError) as err:
            raise TemplateOptionError(
                f"user_endpoint_config for template {self.name!r} must be JSON-serializable: {err}",
                template=self.name,
                option="",
            ) from err
        schema = {k: v for k, v in self.schema.items() if not (partial and k == "required")}
        validator = jsonschema.Draft202012Validator(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(opts))
        if error is None:
            return opts
        raise _option_error(self, error, opts)

    def render(self, options: t.Mapping[str, t.Any] | None = None) -> str:
        """Render the engine configuration (YAML text) for the given user options.

        Parameters
        ----------
        options : Mapping or None
            The ``user_endpoint_config``; checked against the schema first.

        Returns
        -------
        str
            The rendered YAML, as globus-compute-endpoint would render it.
        """
        from globus_compute_endpoint.endpoint.config import CoreEndpointConfig
        from globus_compute_endpoint.endpoint.config.utils import (
            load_config_yaml,
            render_config_user_template,
        )
        from globus_compute_endpoint.endpoint.identity_mapper import MappedPosixIdentity
        from globus_compute_sdk.sdk.batch import create_user_runtime

        opts = self.validate(options)
        parent = load_config_yaml(self.config_path.read_text())
        if not isinstance(parent, CoreEndpointConfig):
            raise TemplateRenderError(f"{self.config_path} must not define an engine (it is the parent config)")
        identity = MappedPosixIdentity(
            local_user_record=pwd.getpwuid(os.getuid()),
            matched_identity=uuid.UUID(int=0),
            globus_identity_candidates=[],
        )
        runtime = json.loads(json.dumps(asdict(create_user_runtime())))
        try:
            text: str = render_config_user_template(
                parent_config=parent,
                user_config_template=self.template_path.read_text(),
                user_config_template_path=self.template_path,
                mapped_identity=identity,
                user_config_schema=self.schema,
                user_opts=opts,
                user_runtime=runtime,
            )
        except Exception as err:
            raise TemplateRenderError(f"template {self.name!r} failed to render: {err}") from err
        return text

    def load(self, options: t.Mapping[str, t.Any] | None = None) -> UserEndpointConfig:
        """Render and load the configuration into a (not yet started) engine.

        Parameters
        ----------
        options : Mapping or None
            The ``user_endpoint_config``.

        Returns
        -------
        globus_compute_endpoint.endpoint.config.UserEndpointConfig
            The loaded configuration; its ``engine`` is built but not started.
        """
        return self._load(options)

    def load_offline(self, options: t.Mapping[str, t.Any] | None = None) -> tuple[UserEndpointConfig, list[str]]:
        """Render and load as :meth:`load`, away from the site the template is meant for.

        A site's network interface (``hsn0``, ``bond0``) is missing elsewhere, and Parsl's
        ``address_by_interface`` then fails the load.  Here a missing interface resolves to
        127.0.0.1 instead, and its name is returned, so everything else about the configuration
        is still checked by the real loader.

        Parameters
        ----------
        options : Mapping or None
            The ``user_endpoint_config``.

        Returns
        -------
        tuple
            The loaded configuration, and the names of the interfaces that were stood in for.
        """
        import types

        import parsl.addresses
        from globus_compute_endpoint.endpoint.config.dispatch import AddressDispatcher

        missing: list[str] = []
        real = parsl.addresses.address_by_interface

        def address_by_interface(ifname: str) -> str:
            try:
                return str(real(ifname))
            except OSError:
                missing.append(ifname)
                return "127.0.0.1"

        # Only the configuration's own "address:" goes through the dispatcher; Parsl's probing of
        # every interface (no address configured) keeps the real function.
        stand_in = types.SimpleNamespace(**vars(parsl.addresses))
        stand_in.address_by_interface = address_by_interface
        with _OFFLINE_LOCK:
            source = AddressDispatcher._source_module
            AddressDispatcher._source_module = stand_in
            try:
                config = self._load(options)
            finally:
                AddressDispatcher._source_module = source
        return config, missing

    def _load(self, options: t.Mapping[str, t.Any] | None) -> UserEndpointConfig:
        from globus_compute_endpoint.endpoint.config import UserEndpointConfig
        from globus_compute_endpoint.endpoint.config.utils import load_config_yaml

        text = self.render(options)
        try:
            with warnings.catch_warnings():
                # parsl.addresses.address_by_interface leaves its probe socket to the garbage collector.
                warnings.filterwarnings("ignore", message="unclosed <socket.socket", category=ResourceWarning)
                config = load_config_yaml(text)
        except Exception as err:
            raise TemplateRenderError(
                f"template {self.name!r} rendered a configuration Globus Compute cannot load: {err}\n{text}"
            ) from err
        if not isinstance(config, UserEndpointConfig):
            raise TemplateRenderError(f"template {self.name!r} rendered no engine:\n{text}")
        return config


def get_template(name: str) -> EndpointTemplate:
    """Return the bundled template called ``name``.

    Raises
    ------
    TemplateNotFoundError
        Listing the templates that exist.
    """
    available = list_templates()
    if name not in available:
        raise TemplateNotFoundError(f"no endpoint template {name!r}; the bundle ships: {', '.join(available)}")
    return EndpointTemplate(name=name, path=endpoint_configs_dir() / name)


def _option_error(template: EndpointTemplate, error: t.Any, opts: dict[str, t.Any]) -> TemplateOptionError:
    """Turn a jsonschema ValidationError into a message naming option and allowed values."""
    path = ".".join(str(p) for p in error.absolute_path)
    props: dict[str, t.Any] = template.schema.get("properties", {})
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(props))
        option = extra[0] if extra else path
        close = difflib.get_close_matches(option, list(props), n=2, cutoff=0.6)
        guess = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return TemplateOptionError(
            f"template {template.name!r} has no option {option!r}{guess} (allowed options: {', '.join(sorted(props))})",
            template=template.name,
            option=option,
        )
    if error.validator == "required":
        missing = sorted(set(error.validator_value) - set(error.instance))
        option = ".".join(filter(None, [path, missing[0] if missing else ""]))
        allowed = describe_option(props.get(option, {}))
        return TemplateOptionError(
            f"template {template.name!r} needs option {option!r}"
            + (f" ({props.get(option, {}).get('description', '')})" if option in props else "")
            + (f"; allowed: {allowed}" if allowed else ""),
            template=template.name,
            option=option,
        )
    option = path or "(options)"
    if error.validator == "not" and error.validator_value == {}:
        return TemplateOptionError(
            f"template {template.name!r}: option {option!r} does not apply with "
            f"engine_type {opts.get('engine_type', 'GlobusMPIEngine')!r}; remove it or change engine_type",
            template=template.name,
            option=option,
        )
    allowed = describe_option(props.get(path.split(".")[0], {})) if path else ""
    # A pattern error would repeat the raw regular expression; "allowed" says it more plainly.
    if error.validator == "pattern":
        problem = f"{reprlib.repr(error.instance)} is not allowed"
    elif error.validator == "contains" and isinstance(error.validator_value, dict) and "enum" in error.validator_value:
        problem = f"{reprlib.repr(error.instance)} needs at least one of " + ", ".join(
            repr(v) for v in error.validator_value["enum"]
        )
        return TemplateOptionError(
            f"template {template.name!r}: option {option!r} is invalid: {problem}",
            template=template.name,
            option=option,
        )
    elif error.validator == "type" and error.validator_value == "boolean":
        problem = f"{reprlib.repr(error.instance)} is not a boolean; write true or false (JSON, lower case)"
    elif error.validator == "maxLength":
        problem = f"{len(error.instance)} characters is longer than {error.validator_value}"
    else:
        problem = error.message if len(error.message) <= 200 else error.message[:200] + "..."
    return TemplateOptionError(
        f"template {template.name!r}: option {option!r} is invalid: {problem}"
        + (f"; allowed: {allowed}" if allowed and error.validator_value != "boolean" else ""),
        template=template.name,
        option=option,
    )


_NO_TRAILING_NEWLINE = "(?!\\n)"


def describe_option(prop: t.Mapping[str, t.Any]) -> str:
    """Return a short human description of what a schema property allows."""
    if "enum" in prop:
        return "one of " + ", ".join(repr(v) for v in prop["enum"])
    if prop.get("type") == "array" and isinstance(prop.get("items"), dict):
        size = f"{prop.get('minItems', 0)} to {prop.get('maxItems', 'any number of')} items"
        return f"a list of {size}, each {describe_option(prop['items'])}"
    parts = [str(prop.get("type", "value"))]
    if "minimum" in prop or "maximum" in prop:
        parts.append(f"from {prop.get('minimum', '-inf')} to {prop.get('maximum', 'inf')}")
    if "pattern" in prop:
        # In words where the pattern has them; "(?!\\n)" only stops a trailing newline slipping past "$".
        words = plain_pattern_words(prop["pattern"])
        parts.append(f"matching {words or prop['pattern'].removesuffix(_NO_TRAILING_NEWLINE)}")
    if "maxLength" in prop:
        parts.append(f"at most {prop['maxLength']} characters")
    return " ".join(parts)
