"""RFC 7662 introspection and RFC 7009 revocation."""

from __future__ import annotations

from flask import Blueprint

from ..extensions import authorization_server, csrf
from .edge import commit_on_success

bp = Blueprint("introspection", __name__)


@bp.post("/introspect")
@csrf.exempt
def introspect():
    return authorization_server().create_endpoint_response("introspection")


@bp.post("/revoke")
@csrf.exempt
@commit_on_success
def revoke():
    return authorization_server().create_endpoint_response("revocation")
