"""RFC 8414 and OpenID Connect discovery documents."""

from __future__ import annotations

from flask import Blueprint

from ..oauth2.metadata import server_metadata
from .documents import cached_document, respond

bp = Blueprint("well_known", __name__, url_prefix="/.well-known")

#: What is advertised changes only when the issuer is redeployed.
MAX_AGE = 300


@bp.get("/openid-configuration")
@bp.get("/oauth-authorization-server")
def metadata():
    return respond(cached_document("discovery", None, server_metadata), MAX_AGE)
