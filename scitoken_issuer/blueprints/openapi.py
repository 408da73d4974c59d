"""``GET /openapi.yaml``: the OpenAPI 3.1 description of every endpoint (docs/openapi.md)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from flask import Blueprint, Response

bp = Blueprint("openapi", __name__)

#: RFC 9512 registers application/yaml.
MEDIA_TYPE = "application/yaml"


@lru_cache(maxsize=1)
def document() -> bytes:
    """The description shipped as package data (``scitoken_issuer/openapi.yaml``)."""
    return (resources.files("scitoken_issuer") / "openapi.yaml").read_bytes()


@bp.get("/openapi.yaml")
def openapi():
    return Response(document(), content_type=MEDIA_TYPE, headers={"Cache-Control": "public, max-age=3600"})
