"""The token endpoint (RFC 6749 §3.2): every grant is an authlib grant class."""

from __future__ import annotations

from flask import Blueprint, g, request
from werkzeug.exceptions import HTTPException

from .. import metrics
from ..extensions import authorization_server, csrf
from .edge import commit_on_success

bp = Blueprint("token", __name__)


@bp.post("/token")
@csrf.exempt
@commit_on_success
def issue_token():
    return authorization_server().create_token_response()


@bp.after_request
def count_answer(response):
    """Every answer of the endpoint, also those of the 503 and 500 handlers (docs/metrics.md)."""
    error = g.pop("oauth_error", None)  # authlib's error answers name it (oauth2/server.py)
    if response.status_code != 200 and error is None:  # the 503 and 500 handlers' answers
        body = response.get_json(silent=True)
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, str) else "other"
    try:
        grant_type = request.form.get("grant_type")
    except HTTPException:  # a body too large to read: the 413 itself is being answered
        grant_type = None
    metrics.token_answered(grant_type, authorization_server().grant_types, error)
    return response
