"""One clear line instead of a traceback for what goes wrong between ``libe-gc`` and Globus.

:func:`preflight` runs before a command talks to a cloud endpoint: it refuses at once (rather
than after the SDK's retries, or at a login prompt nobody can answer) when no credentials are
usable and there is no terminal to log in from, or when the Globus Compute service cannot be
reached within a few seconds.  :func:`describe` turns network, credential, service and login
errors into one line saying what to do; :class:`CleanErrorsGroup` applies it to every
subcommand (``LIBE_GC_DEBUG=1`` shows the traceback instead).
"""

from __future__ import annotations

import os
import socket
import sys
import typing as t
import urllib.parse

import click

from bundle.endpoints.credentials import LOGIN_HINT, credential_state

SERVICE_URLS = {
    "production": "https://compute.api.globus.org",
    "preview": "https://compute.api.preview.globus.org",
    "local": "http://localhost:5000",
}
NETWORK_HINT = "check the network (or HTTPS_PROXY) and try again"
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
PROXY_DEFAULT_PORTS = {"http": 80, "https": 443, "socks4": 1080, "socks5": 1080, "socks5h": 1080}
"""The port a proxy URL without one is reached on (urllib3's default for its scheme)."""
PREFLIGHT_TIMEOUT = 5.0
"""Seconds allowed to open a connection to the Globus Compute service before a command gives up."""


def service_host(environ: t.Mapping[str, str] | None = None) -> str:
    """Return the Globus Compute service's host name for ``GLOBUS_SDK_ENVIRONMENT`` (default production)."""
    return service_address(environ)[0]


def service_address(environ: t.Mapping[str, str] | None = None) -> tuple[str, int]:
    """Return the Globus Compute service's host and port for ``GLOBUS_SDK_ENVIRONMENT`` (default production)."""
    env = os.environ if environ is None else environ
    url = env.get("GLOBUS_COMPUTE_SERVICE_ADDRESS") or SERVICE_URLS.get(
        env.get("GLOBUS_SDK_ENVIRONMENT") or "production", f"https://compute.api.{env.get('GLOBUS_SDK_ENVIRONMENT')}"
    )
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "compute.api.globus.org", parts.port or PROXY_DEFAULT_PORTS.get(parts.scheme, 443)


def reach_service(*, timeout: float = PREFLIGHT_TIMEOUT, environ: t.Mapping[str, str] | None = None) -> None:
    """Open (and close) a connection to the Globus Compute service, or to the HTTPS proxy in front of it.

    Parameters
    ----------
    timeout : float
        Seconds allowed.
    environ : mapping, optional
        Environment variables (default ``os.environ``): the proxy and ``GLOBUS_SDK_ENVIRONMENT``.

    Raises
    ------
    click.ClickException
        One line naming what could not be reached and why.
    """
    env = os.environ if environ is None else environ
    proxy = next((env[v] for v in PROXY_VARS if env.get(v)), "")
    if proxy:  # the first hop is the proxy
        parts = urllib.parse.urlsplit(proxy if "//" in proxy else f"http://{proxy}")
        # No port in the URL: the scheme's own, as requests (urllib3) then connects to.
        port = parts.port or PROXY_DEFAULT_PORTS.get(parts.scheme.lower(), 80)
        host, what = parts.hostname or "", "the HTTPS proxy"
    else:
        (host, port), what = service_address(env), "the Globus Compute service"
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        raise click.ClickException(
            f"cannot reach {what} ({host}:{port}: {type(err).__name__}: {err}); {NETWORK_HINT}"
        ) from None


def preflight(endpoint: str, *, timeout: float = PREFLIGHT_TIMEOUT, interactive: bool | None = None) -> None:
    """Refuse early what would fail late (or prompt with no one to answer) for a cloud endpoint.

    Parameters
    ----------
    endpoint : str
        ``"local"``, ``"local:<template>"`` (nothing checked) or an endpoint UUID.
    timeout : float
        Seconds to reach the service.
    interactive : bool, optional
        Whether a login prompt could be answered (default: stdin and stdout are terminals).

    Raises
    ------
    click.ClickException
        One line: no usable credentials without a terminal, or the service unreachable.
    """
    if not endpoint or endpoint.split(":", 1)[0] == "local":
        return
    state = credential_state()
    if state.kind == "invalid":
        raise click.ClickException(f"Globus credentials: {state.detail}; {state.fix}")
    tty = (sys.stdin.isatty() and sys.stdout.isatty()) if interactive is None else interactive
    if not state.usable and not tty:
        raise click.ClickException(
            f"endpoint {endpoint} needs Globus credentials and there is no terminal to log in from "
            f"({state.detail}): {LOGIN_HINT}"
        )
    reach_service(timeout=timeout)


def describe(err: BaseException) -> str | None:
    """Return one line saying what went wrong and what to do, for errors users cause or meet.

    Network, credential, login and service errors (from ``globus_sdk``, ``requests`` and the
    Globus Compute SDK) anywhere in the exception chain.  None for anything else (a bug).
    """
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        line = _describe_one(cur)
        if line:
            return line
        cur = cur.__cause__ or cur.__context__
    return None


def _describe_one(err: BaseException) -> str | None:
    import globus_sdk

    if isinstance(err, (globus_sdk.GlobusConnectionError, globus_sdk.GlobusTimeoutError)):
        return f"cannot reach the Globus service ({type(err).__name__}); {NETWORK_HINT}"
    if isinstance(err, globus_sdk.GlobusAPIError):
        status = err.http_status
        if status in (401, 403):
            return (
                f"the Globus service refused the credentials (HTTP {status}: {err.code}); log in again with "
                "`globus-compute-endpoint login`, or check GLOBUS_COMPUTE_CLIENT_ID / GLOBUS_COMPUTE_CLIENT_SECRET"
            )
        if status == 404:
            return f"the Globus Compute service does not know this resource (HTTP 404: {err.message}); check the UUID"
        if status == 429:
            return "the Globus Compute service is limiting requests (HTTP 429); wait a minute and try again"
        return f"the Globus Compute service answered HTTP {status} ({err.code}: {err.message}); try again later"
    if isinstance(err, globus_sdk.GlobusSDKUsageError) or type(err).__name__ in ("MissingTokenError", "LoginFlowError"):
        return f"Globus login: {err}; {LOGIN_HINT}"
    if isinstance(err, (click.exceptions.Abort, EOFError)):
        return f"the Globus login was not completed; {LOGIN_HINT}"
    try:
        import requests
    except ImportError:  # pragma: no cover - globus_sdk depends on requests
        return None
    if isinstance(err, (requests.ConnectionError, requests.Timeout)):
        return f"cannot reach the Globus service ({type(err).__name__}); {NETWORK_HINT}"
    return None


class CleanErrorsGroup(click.Group):
    """A click group whose subcommands end with one line, never a traceback, on Globus errors.

    Errors :func:`describe` knows become a :class:`click.ClickException` (exit status 1); others
    become one line naming the error and how to see its traceback (``LIBE_GC_DEBUG=1``).
    """

    def invoke(self, ctx: click.Context) -> t.Any:
        """Run the subcommand, translating errors."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, SystemExit, KeyboardInterrupt):
            raise
        except click.exceptions.Abort as err:
            line = describe(err)
            if line is None:
                raise
            raise click.ClickException(line) from None
        except Exception as err:
            if os.environ.get("LIBE_GC_DEBUG"):
                raise
            line = describe(err)
            if line is None:
                line = f"{type(err).__name__}: {err} (set LIBE_GC_DEBUG=1 to see the traceback)"
            raise click.ClickException(line) from None
