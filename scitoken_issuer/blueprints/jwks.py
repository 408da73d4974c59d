"""The published key set: current, next and still-valid retired keys of every chain (RFC 7517)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from ..extensions import runtime
from .edge import commit_on_success

bp = Blueprint("jwks", __name__)

#: Verifiers may cache the key set this long (WLCG JWT profile §4.3.1 asks for at least an hour).
#: The next key is published KEY_PUBLISH_HOURS (at least 1 h, default 24 h) before it signs, so
#: a cached copy always holds it in time; a key rotated ``--immediately`` is found by its new kid.
MAX_AGE = 3600


@bp.get("/certs")
@commit_on_success
def certs():
    keys = runtime().keys
    keys.signing_keys()  # the first keys are created on first use; rotation is published early
    response = jsonify(keys.jwks())
    response.headers["Cache-Control"] = f"public, max-age={MAX_AGE}"
    response.add_etag()  # RFC 9110 §8.8.3: revalidation costs a 304, not the key set
    return response.make_conditional(request)
