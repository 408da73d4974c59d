"""RFC 7591 registration and RFC 7592 client configuration (docs/registration.md)."""

from __future__ import annotations

from flask import Blueprint

from ..extensions import authorization_server, csrf
from .edge import commit_on_success

bp = Blueprint("registration", __name__, url_prefix="/client/registration")


@bp.post("")
@csrf.exempt
@commit_on_success
def register():
    return authorization_server().create_endpoint_response("client_registration")


@bp.route("/<client_id>", methods=["GET", "PUT", "DELETE"])
@csrf.exempt
@commit_on_success
def configure(client_id: str):
    return authorization_server().create_endpoint_response("client_configuration")
