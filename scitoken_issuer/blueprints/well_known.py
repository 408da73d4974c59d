"""RFC 8414 and OpenID Connect discovery documents."""

from __future__ import annotations

from flask import Blueprint, jsonify

from ..oauth2.metadata import server_metadata

bp = Blueprint("well_known", __name__, url_prefix="/.well-known")


@bp.get("/openid-configuration")
@bp.get("/oauth-authorization-server")
def metadata():
    response = jsonify(server_metadata())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
