"""Liveness and readiness."""

from __future__ import annotations

from flask import Blueprint, jsonify

from ..extensions import runtime

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Ready when every dependency answers: database and signing keys (Redis, the IdP and the
    storage tree when configured)."""
    readiness = runtime().readiness
    checks = readiness.report()
    ready = readiness.ready(checks)
    response = jsonify(status="ready" if ready else "unavailable", checks=checks)
    response.status_code = 200 if ready else 503
    if not ready:
        response.headers["Retry-After"] = "5"
    return response
