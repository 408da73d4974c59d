"""OAuth 2.0 / OIDC protocol: one authlib server per app, with this issuer's grants and endpoints."""

from __future__ import annotations

from flask import Flask

from .protocol import build_authorization_server
from .resource import build_resource_protector


def init_oauth(app: Flask) -> None:
    """Build this app's authorization server and resource protector (``app.extensions``)."""
    rt = app.extensions["scitoken_issuer"]
    server = build_authorization_server(rt.clients, rt.settings.issuer_address)
    server.init_app(app)
    app.extensions["authorization_server"] = server
    app.extensions["resource_protector"] = build_resource_protector()
