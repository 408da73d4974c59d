"""RFC 8414 and OpenID Connect discovery documents."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort

from ..extensions import runtime
from ..oauth2.metadata import server_metadata
from .documents import cached_document, respond

bp = Blueprint("well_known", __name__, url_prefix="/.well-known")

#: What is advertised changes only when the issuer is redeployed.
MAX_AGE = 300


@bp.get("/openid-configuration")
@bp.get("/oauth-authorization-server")
def metadata():
    return respond(cached_document("discovery", None, server_metadata), MAX_AGE)


@bp.get("/oauth-authorization-server/<path:issuer_path>")
def metadata_for_issuer_path(issuer_path: str):
    """RFC 8414 §3.1: for an issuer with a path (``https://host/tokens``) the metadata is at
    ``https://host/.well-known/oauth-authorization-server/tokens``, the well-known part inserted
    before the path. Served for this issuer's own path only (docs/configuration.md)."""
    if "/" + issuer_path.strip("/") != urlsplit(runtime().settings.issuer_address).path.rstrip("/"):
        abort(404)
    return metadata()
