"""The browser session (a signed cookie) only where a browser is served.

Machines call the token, introspection, revocation, registration, userinfo and device
authorization endpoints, and fetch the documents (discovery, JWKS, OpenAPI), health and metrics.
None of them reads the session: a client authenticates with its own credentials on every request,
and CSRF protection is for the browser forms. So on their paths no session cookie is parsed,
verified or written, which also keeps each request of a token burst from building the cookie's
signer (docs/architecture.md, "One request's life").
"""

from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSessionInterface

#: endpoints answered without the browser session
MACHINE_ENDPOINTS = frozenset({
    "well_known.metadata", "oauth.jwks.certs", "openapi.openapi", "health.healthz", "health.readyz",
    "metrics.scrape", "oauth.token.issue_token", "oauth.introspection.introspect", "oauth.introspection.revoke",
    "oauth.registration.register", "oauth.registration.configure", "oauth.userinfo.userinfo",
    "oauth.device_authorization.device_authorization",
})


class BrowserSessions(SecureCookieSessionInterface):
    """Flask's cookie sessions, except on machine paths: there a null session (nothing saved)."""

    def __init__(self, paths: frozenset[str], prefixes: tuple[str, ...]):
        self.paths = paths
        self.prefixes = prefixes

    def open_session(self, app: Flask, request: Request):
        path = request.path
        if path in self.paths or (self.prefixes and path.startswith(self.prefixes)):
            return None  # Flask then uses a null session and saves nothing
        return super().open_session(app, request)


def init_sessions(app: Flask) -> None:
    """After the blueprints are registered. The session opens before the URL is matched, so machine
    endpoints are known by path: a fixed rule by its path, a rule with a variable by the part
    before it (``/auth/client/registration/<client_id>``)."""
    paths, prefixes = set(), set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint not in MACHINE_ENDPOINTS:
            continue
        if "<" in rule.rule:
            prefixes.add(rule.rule.split("<", 1)[0])
        else:
            paths.add(rule.rule)
    app.session_interface = BrowserSessions(frozenset(paths), tuple(sorted(prefixes)))
