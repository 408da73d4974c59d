"""RFC 7662 introspection and RFC 7009 revocation."""

from __future__ import annotations

from flask import Blueprint

from ..extensions import csrf
from ..oauth2.server import authorization
from .edge import commit_on_success

bp = Blueprint("introspection", __name__)


@bp.post("/introspect")
@csrf.exempt
def introspect():
    return authorization.create_endpoint_response("introspection")


@bp.post("/revoke")
@csrf.exempt
@commit_on_success
def revoke():
    return authorization.create_endpoint_response("revocation")
