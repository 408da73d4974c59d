"""The token endpoint (RFC 6749 §3.2): every grant is an authlib grant class."""

from __future__ import annotations

from flask import Blueprint

from ..extensions import csrf
from ..oauth2.server import authorization
from .edge import commit_on_success

bp = Blueprint("token", __name__)


@bp.post("/token")
@csrf.exempt
@commit_on_success
def issue_token():
    return authorization.create_token_response()
