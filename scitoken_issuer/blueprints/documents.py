"""Documents every caller gets the same (discovery metadata, the JWKS), served from precomputed bytes.

Verifiers and clients fetch these far more often than anything else, so each is encoded once
(per app, and for the JWKS once per published key set), carries an ``ETag`` (a revalidation costs
a 304, RFC 9110 §13.1.2) and ``Cache-Control``, and is answered without the browser session
(:mod:`scitoken_issuer.blueprints.sessions`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Callable, Hashable

from flask import Response, current_app, request


@dataclass(frozen=True)
class Document:
    body: bytes
    etag: str

    @classmethod
    def of(cls, data: dict) -> "Document":
        body = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
        return cls(body, hashlib.sha256(body).hexdigest()[:32])


def cached_document(name: str, version: Hashable, build: Callable[[], dict]) -> Document:
    """The app's document ``name`` for ``version``; rebuilt (once) when the version changes."""
    cache = current_app.extensions.setdefault("documents", {})
    entry = cache.get(name)
    if entry is None or entry[0] != version:
        entry = cache[name] = (version, Document.of(build()))
    return entry[1]


def respond(document: Document, max_age: int) -> Response:
    response = current_app.response_class(document.body, mimetype="application/json")
    response.set_etag(document.etag)
    response.headers["Cache-Control"] = f"public, max-age={max_age}"
    return response.make_conditional(request)
