"""Keyword options of the Globus Compute SDK ``Executor``, passed through for endpoint UUIDs.

``globus_compute_sdk.Executor`` takes options the bundle has no reason to choose for
you: ``amqp_port`` (443 where a site blocks 5671), ``client`` (e.g. one built on your own
``GlobusApp``), ``batch_size``, ``api_burst_limit``, ``api_burst_window_s``,
``result_serializers``, ``label``, ``task_group_id``, ``serializer``.  They are checked
against the installed SDK's own signature, so a misspelt or unknown option is refused
before any executor is made, with the list of the ones this SDK knows.  The bundle sets
``endpoint_id``, ``user_endpoint_config`` and ``resource_specification`` itself.
"""

from __future__ import annotations

import functools
import inspect
import json
import typing as t

SET_BY_BUNDLE = frozenset({"self", "endpoint_id", "user_endpoint_config", "resource_specification"})


@functools.cache
def known_sdk_options() -> tuple[str, ...]:
    """Return the keyword options of the installed ``globus_compute_sdk.Executor`` that users may set.

    Returns
    -------
    tuple of str
        Sorted names (the SDK's named parameters, without those the bundle sets).
    """
    # From its defining module: the class itself, even where ``globus_compute_sdk.Executor`` is replaced.
    from globus_compute_sdk.sdk.executor import Executor

    params = inspect.signature(Executor.__init__).parameters.values()
    named = (p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return tuple(sorted(set(named) - SET_BY_BUNDLE))


def check_sdk_options(options: t.Mapping[str, t.Any] | None, *, local: bool) -> dict[str, t.Any]:
    """Return ``options`` checked against the installed SDK ``Executor``.

    Parameters
    ----------
    options : Mapping or None
        SDK ``Executor`` keyword options.
    local : bool
        Whether the endpoint is the bundled local endpoint (which takes none of them).

    Returns
    -------
    dict

    Raises
    ------
    TypeError
        For an option the SDK does not know (the message lists the known ones), one the bundle
        sets itself, or any option for a local endpoint.
    """
    if options is not None and not isinstance(options, t.Mapping):
        raise TypeError(f"sdk_options must be a dict of SDK Executor options, not {type(options).__name__}")
    opts = dict(options or {})
    if not opts:
        return opts
    if local:
        raise TypeError(
            f"sdk_options {sorted(opts)} configure the Globus Compute SDK Executor of an endpoint UUID; "
            "the local endpoint takes none"
        )
    managed = sorted(set(opts) & SET_BY_BUNDLE)
    if managed:
        raise TypeError(
            f"sdk_options {managed} are set by the bundle: pass the endpoint, user_endpoint_config and "
            "resource_specification through their own arguments"
        )
    unknown = sorted(set(opts) - set(known_sdk_options()))
    if unknown:
        raise TypeError(
            f"unknown Globus Compute Executor option(s) {unknown}; "
            f"this SDK's Executor takes {list(known_sdk_options())}"
        )
    return opts


def options_key(options: t.Mapping[str, t.Any] | None) -> str:
    """Return a cache key for ``options`` (objects such as a ``Client`` count by identity)."""
    return json.dumps(dict(options or {}), sort_keys=True, default=lambda o: f"<{type(o).__name__} {id(o)}>")
