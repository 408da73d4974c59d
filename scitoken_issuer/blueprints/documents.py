"""Documents every caller gets the same (discovery metadata, the JWKS), served from precomputed bytes.

Verifiers and clients fetch these far more often than anything else, so each is encoded once
(per app, and for the JWKS once per published key set), carries an ``ETag`` (a revalidation costs
a 304, RFC 9110 §13.1.2) and ``Cache-Control``, and is answered without the browser session:
no cookie is read or written for these paths. CSRF protection does nothing for a GET.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Callable, Hashable

from flask import Flask, Request, Response, current_app, request
from flask.sessions import SecureCookieSessionInterface

#: endpoints answered from a :class:`Document`, without a session
DOCUMENT_ENDPOINTS = ("well_known.metadata", "oauth.jwks.certs")


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


class DocumentSessions(SecureCookieSessionInterface):
    """Flask's cookie sessions, except on the document paths: there a null session, so the
    cookie is neither parsed and verified nor written."""

    def __init__(self, paths: frozenset[str]):
        self.paths = paths

    def open_session(self, app: Flask, request: Request):
        if request.path in self.paths:
            return None  # Flask then uses a null session and saves nothing
        return super().open_session(app, request)


def init_documents(app: Flask) -> None:
    """After the blueprints are registered: serve the document paths without a session."""
    paths = frozenset(rule.rule for rule in app.url_map.iter_rules() if rule.endpoint in DOCUMENT_ENDPOINTS)
    app.session_interface = DocumentSessions(paths)
