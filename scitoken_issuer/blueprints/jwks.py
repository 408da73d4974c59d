"""The published key set: current, next and still-valid retired keys (RFC 7517)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from ..extensions import runtime
from .edge import commit_on_success

bp = Blueprint("jwks", __name__)

#: Verifiers may cache the key set this long; the next key is published far longer before use.
MAX_AGE = 600


@bp.get("/certs")
@commit_on_success
def certs():
    keys = runtime().keys
    keys.signing_key()  # the first key is created on first use; rotation is published early
    response = jsonify(keys.jwks())
    response.headers["Cache-Control"] = f"public, max-age={MAX_AGE}"
    return response
