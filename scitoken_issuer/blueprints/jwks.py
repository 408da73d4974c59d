"""The published key set: current, next and still-valid retired keys of every chain (RFC 7517)."""

from __future__ import annotations

from flask import Blueprint

from ..extensions import runtime
from .documents import cached_document, respond
from .edge import commit_on_success

bp = Blueprint("jwks", __name__)

#: Verifiers may cache the key set this long (WLCG JWT profile §4.3.1 asks for at least an hour).
#: The next key is published KEY_PUBLISH_HOURS (at least 1 h, default 24 h) before it signs, so
#: a cached copy always holds it in time; a key rotated ``--immediately`` is found by its new kid.
MAX_AGE = 3600


@bp.get("/certs")
@commit_on_success
def certs():
    """Served from bytes encoded once per published key set, with an ETag (RFC 9110 §8.8.3:
    revalidation costs a 304, not the key set)."""
    keys = runtime().keys
    keys.signing_keys()  # the first keys are created on first use; rotation is published early
    published = keys.published()
    document = cached_document("jwks", tuple(key.kid for key in published),
                               lambda: {"keys": [key.public_jwk for key in published]})
    return respond(document, MAX_AGE)
