"""Our own URLs, built from the route table (``url_for``'s map), never typed by hand.

Absolute URLs start with ``ISSUER_ADDRESS`` (what clients and verifiers know the issuer by),
not with the request's host. Building needs the app, not a request, so the CLI and the workers
can use it too.
"""

from __future__ import annotations

from flask import current_app


def path_for(endpoint: str, **values: object) -> str:
    """The path of ``endpoint`` (``oauth.token.issue_token`` → ``/auth/token``)."""
    return current_app.url_map.bind("issuer").build(endpoint, values)


def issuer_url(endpoint: str, **values: object) -> str:
    """``ISSUER_ADDRESS`` followed by the path of ``endpoint``."""
    return current_app.extensions["scitoken_issuer"].settings.issuer_address + path_for(endpoint, **values)


def serves(endpoint: str) -> bool:
    """Whether this app has the endpoint (a blueprint may be left out by configuration)."""
    return endpoint in current_app.view_functions
