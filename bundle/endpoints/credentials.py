"""Which Globus credentials the Globus Compute SDK would use, checked offline, values never shown.

The SDK (``globus_compute_sdk.sdk.auth.globus_app.get_globus_app``) takes, in this order:

1. a client identity when both ``GLOBUS_COMPUTE_CLIENT_ID`` and ``GLOBUS_COMPUTE_CLIENT_SECRET``
   are set (only the secret set is an error; only the id set means a user login through that
   client);
2. otherwise a user login: tokens in ``<GLOBUS_COMPUTE_USER_DIR or ~/.globus_compute>/storage.db``
   under the namespace ``user/<GLOBUS_SDK_ENVIRONMENT or production>``.  Without a refresh token
   or an unexpired access token for the Globus Compute service there, the SDK starts an
   interactive login (a URL and a prompt for a code).

:func:`credential_state` reads the same places without creating anything and without the network.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time
import typing as t
import uuid

CLIENT_VARS = ("GLOBUS_COMPUTE_CLIENT_ID", "GLOBUS_COMPUTE_CLIENT_SECRET")
COMPUTE_RESOURCE_SERVER = "funcx_service"
"""The Globus Compute service's resource server name in Globus Auth token data."""

LOGIN_HINT = (
    "run `globus-compute-endpoint login` in a terminal, or set GLOBUS_COMPUTE_CLIENT_ID and "
    "GLOBUS_COMPUTE_CLIENT_SECRET (a Globus client identity)"
)


@dataclasses.dataclass(frozen=True)
class CredentialState:
    """What the SDK would authenticate with.

    Attributes
    ----------
    kind : str
        ``"client"`` (client identity), ``"tokens"`` (a stored user login), ``"none"`` or ``"invalid"``.
    usable : bool
        True when the SDK can authenticate without asking anyone (values may still be refused online).
    detail : str
        What was found (no secret or token value).
    fix : str
        What to do when not usable ("" otherwise).
    """

    kind: str
    usable: bool
    detail: str
    fix: str = ""


def compute_dir(environ: t.Mapping[str, str]) -> pathlib.Path:
    """Return the SDK's user directory (``GLOBUS_COMPUTE_USER_DIR`` or ``~/.globus_compute``)."""
    env_dir = environ.get("GLOBUS_COMPUTE_USER_DIR")
    return (
        pathlib.Path(env_dir)
        if env_dir
        else pathlib.Path(environ.get("HOME") or pathlib.Path.home()) / (".globus_compute")
    )


def _stored_compute_token(path: pathlib.Path, namespace: str, now: float) -> tuple[bool, str]:
    """Return (usable, what was found) for the Globus Compute token in a token storage file, read-only."""
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as err:
        return False, f"{path} cannot be read ({type(err).__name__})"
    try:
        row = conn.execute(
            "SELECT token_data_json FROM token_storage WHERE namespace = ? AND resource_server = ?",
            (namespace, COMPUTE_RESOURCE_SERVER),
        ).fetchone()
    except sqlite3.Error as err:
        return False, f"{path} is not a token storage the SDK can read ({type(err).__name__})"
    finally:
        conn.close()
    if row is None:
        return False, f"no Globus Compute token stored in {path} (namespace {namespace})"
    import json

    try:
        data = json.loads(row[0])
    except (TypeError, ValueError):
        return False, f"the Globus Compute token in {path} is unreadable"
    if data.get("refresh_token"):
        return True, f"stored login with a refresh token in {path} (not shown)"
    expires = data.get("expires_at_seconds")
    if isinstance(expires, (int, float)) and expires > now + 60:
        return True, f"stored access token in {path}, valid for {int((expires - now) / 60)} more minutes (not shown)"
    return False, f"the Globus Compute token in {path} has expired and has no refresh token"


def credential_state(environ: t.Mapping[str, str] | None = None, now: float | None = None) -> CredentialState:
    """Return what the Globus Compute SDK would authenticate with, checked offline.

    Parameters
    ----------
    environ : mapping, optional
        Environment variables (default ``os.environ``).
    now : float, optional
        The time for token expiry (default now).

    Returns
    -------
    CredentialState
    """
    env = os.environ if environ is None else environ
    client_id, secret = (env.get(v) or "" for v in CLIENT_VARS)
    if client_id and secret:
        try:
            uuid.UUID(client_id)
        except ValueError:
            return CredentialState(
                "invalid",
                False,
                "GLOBUS_COMPUTE_CLIENT_ID is set but is not a UUID (value not shown)",
                "set it to the client's UUID from app.globus.org (Settings > Developers)",
            )
        return CredentialState(
            "client",
            True,
            "client identity set (values not shown): GLOBUS_COMPUTE_CLIENT_ID is a UUID and "
            "GLOBUS_COMPUTE_CLIENT_SECRET is set; Globus Auth checks the secret on first use",
        )
    if secret:
        return CredentialState(
            "invalid",
            False,
            "GLOBUS_COMPUTE_CLIENT_SECRET is set without GLOBUS_COMPUTE_CLIENT_ID (the SDK refuses this)",
            "set GLOBUS_COMPUTE_CLIENT_ID too, or unset the secret to use a login",
        )
    path = compute_dir(env) / "storage.db"
    namespace = f"user/{env.get('GLOBUS_SDK_ENVIRONMENT') or 'production'}"
    if not path.is_file():
        return CredentialState("none", False, f"no client identity and no stored login ({path} absent)", LOGIN_HINT)
    usable, detail = _stored_compute_token(path, namespace, time.time() if now is None else now)
    if usable:
        return CredentialState("tokens", True, detail)
    return CredentialState("none", False, f"no client identity, and {detail}", LOGIN_HINT)
