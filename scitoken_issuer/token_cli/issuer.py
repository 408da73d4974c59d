"""Talking to an OAuth 2.0 issuer: discovery (OpenID Connect Discovery, then RFC 8414), dynamic
registration (RFC 7591), and form posts to its endpoints with RFC 6749 §5.2 errors as exceptions.

Nothing here is specific to scitoken-issuer: any issuer with a device authorization endpoint
(RFC 8628) and, for self-registration, a registration endpoint will do.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import requests

from .errors import EXIT_CLIENT, EXIT_UNREACHABLE, CliError, OAuthError

TIMEOUT = 30
USER_AGENT = "scitoken-token (scitoken-issuer)"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass(frozen=True)
class Client:
    """The OAuth client the CLI acts as: given by the user, or registered by the CLI."""

    client_id: str
    client_secret: str | None = None
    scope: str | None = None  #: what the registration asked for, when the CLI registered it
    registered: bool = False

    def auth(self) -> tuple[tuple[str, str] | None, dict]:
        """(HTTP basic credentials, extra form fields): RFC 6749 §2.3.1 for a confidential
        client, ``client_id`` in the form for a public one (RFC 6749 §3.2.1)."""
        if self.client_secret:
            return (self.client_id, self.client_secret), {}
        return None, {"client_id": self.client_id}


def _well_known(issuer: str, name: str, insert: bool) -> str:
    """RFC 8414 §3.1 inserts the well-known segment before the issuer's path; OpenID Connect
    Discovery §4 appends it."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    if insert:
        return urlunsplit((parts.scheme, parts.netloc, f"/.well-known/{name}{path}", "", ""))
    return urlunsplit((parts.scheme, parts.netloc, f"{path}/.well-known/{name}", "", ""))


class Issuer:
    """One issuer: its metadata, read once, and a ``requests`` session for everything else."""

    def __init__(self, url: str, session: requests.Session | None = None):
        self.url = url.rstrip("/")
        self.http = session or requests.Session()
        self.http.headers["User-Agent"] = USER_AGENT
        self._metadata: dict | None = None

    # -- HTTP ---------------------------------------------------------------------------------
    def request(self, method: str, url: str, what: str, **kwargs) -> requests.Response:
        """One HTTP request; network failures and 5xx answers are EXIT_UNREACHABLE."""
        try:
            response = self.http.request(method, url, timeout=TIMEOUT, **kwargs)
        except requests.exceptions.RequestException as exc:
            raise CliError(EXIT_UNREACHABLE, f"cannot reach the issuer at {self.url} ({what}): {_why(exc)}") from None
        if response.status_code >= 500:
            retry = response.headers.get("Retry-After")
            raise CliError(EXIT_UNREACHABLE, f"the issuer at {self.url} answered {response.status_code} "
                           f"{response.reason or ''} to the {what}".rstrip()
                           + (f"; it asks to retry after {retry} s" if retry else ""))
        return response

    def post_form(self, url: str, data: dict, client: Client | None, what: str) -> dict:
        """POST ``data`` (with the client's credentials); the JSON body, or :class:`OAuthError`."""
        auth, extra = client.auth() if client else (None, {})
        response = self.request("POST", url, what, data={**data, **extra}, auth=auth,
                                headers={"Accept": "application/json"})
        return self.json_body(response, what)

    def json_body(self, response: requests.Response, what: str) -> dict:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise CliError(EXIT_UNREACHABLE, f"the issuer at {self.url} answered the {what} with "
                           f"{response.status_code} and no JSON object")
        if response.status_code >= 400 or "error" in body:
            raise OAuthError(str(body.get("error") or f"HTTP {response.status_code}"),
                             str(body.get("error_description") or "")[:500], response.status_code, f"the {what}")
        return body

    # -- discovery ----------------------------------------------------------------------------
    def metadata(self) -> dict:
        """The issuer's metadata: ``openid-configuration``, else RFC 8414's document; its
        ``issuer`` must be the one asked for (RFC 8414 §3.3)."""
        if self._metadata is not None:
            return self._metadata
        tried = []
        for url in (_well_known(self.url, "openid-configuration", False),
                    _well_known(self.url, "oauth-authorization-server", True),
                    _well_known(self.url, "oauth-authorization-server", False)):
            if url in tried:
                continue
            tried.append(url)
            response = self.request("GET", url, "metadata request", headers={"Accept": "application/json"})
            if response.status_code != 200:
                continue
            try:
                body = response.json()
            except ValueError:
                continue
            if isinstance(body, dict):
                if str(body.get("issuer", "")).rstrip("/") != self.url:
                    raise CliError(EXIT_UNREACHABLE, f"{url} names the issuer {body.get('issuer')!r}, "
                                   f"not {self.url} (RFC 8414 §3.3): check --issuer")
                self._metadata = body
                return body
        raise CliError(EXIT_UNREACHABLE, f"{self.url} publishes no OAuth metadata "
                       "(/.well-known/openid-configuration or /.well-known/oauth-authorization-server)")

    def endpoint(self, name: str, purpose: str) -> str:
        url = self.metadata().get(name)
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise CliError(EXIT_UNREACHABLE, f"the issuer at {self.url} has no {name} in its metadata, "
                           f"so it cannot {purpose}")
        return url

    # -- RFC 7591 -----------------------------------------------------------------------------
    def register(self, scope: str, public: bool, name: str) -> Client:
        """Register a device-flow client (as oidc-agent does): confidential with
        ``client_secret_basic`` unless ``public``."""
        url = self.endpoint("registration_endpoint", "register a client (give --client-id)")
        metadata = {"client_name": name, "grant_types": [DEVICE_GRANT, "refresh_token"], "response_types": [],
                    "token_endpoint_auth_method": "none" if public else "client_secret_basic", "scope": scope,
                    "software_id": "scitoken-token"}
        response = self.request("POST", url, "client registration", json=metadata,
                                headers={"Accept": "application/json"})
        try:
            body = self.json_body(response, "client registration")
        except OAuthError as exc:
            raise CliError(EXIT_CLIENT, exc.message) from None
        if not isinstance(body.get("client_id"), str) or (not public and not body.get("client_secret")):
            raise CliError(EXIT_CLIENT, f"the issuer at {self.url} answered the client registration "
                           "without a client_id or client_secret")
        return Client(body["client_id"], body.get("client_secret") if not public else None,
                      scope=str(body.get("scope") or scope), registered=True)


def _why(exc: requests.exceptions.RequestException) -> str:
    """A short reason for a failed request, without a traceback's worth of nesting."""
    text = str(exc)
    if isinstance(exc, requests.exceptions.ConnectTimeout) or isinstance(exc, socket.timeout):
        return "timed out"
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host name"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS certificate check failed"
    return type(exc).__name__
