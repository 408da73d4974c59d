"""RFC 7591 registration and RFC 7592 client configuration."""

from __future__ import annotations

from flask import Blueprint, request

from ..extensions import csrf
from ..oauth2.server import authorization
from .edge import commit_on_success
from .errors import error_response

bp = Blueprint("registration", __name__, url_prefix="/client/registration")


def _json_object_or_error():
    """RFC 7591 §3.2.2: the body must be a JSON object."""
    if request.method in ("POST", "PUT"):
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return error_response(400, "invalid_client_metadata", "the request body must be a JSON object")
    return None


@bp.post("")
@csrf.exempt
@commit_on_success
def register():
    return _json_object_or_error() or authorization.create_endpoint_response("client_registration")


@bp.route("/<client_id>", methods=["GET", "PUT", "DELETE"])
@csrf.exempt
@commit_on_success
def configure(client_id: str):
    return _json_object_or_error() or authorization.create_endpoint_response("client_configuration")
