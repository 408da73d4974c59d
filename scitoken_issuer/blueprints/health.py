"""Liveness and readiness."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from sqlalchemy import text

from ..extensions import db, runtime

logger = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Ready when every dependency answers: database and signing keys (Redis, IdP when configured)."""
    checks: dict[str, str] = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
        checks["keys"] = "ok" if runtime().keys.view().current else "no signing key yet"
    except Exception as exc:  # readiness reports, it never raises
        logger.warning("readiness: database check failed: %s", type(exc).__name__)
        checks["database"] = "unavailable"
    for name, check in runtime().readiness_checks().items():
        checks[name] = check()
    ready = all(v == "ok" or v == "no signing key yet" for v in checks.values())
    response = jsonify(status="ready" if ready else "unavailable", checks=checks)
    response.status_code = 200 if ready else 503
    if not ready:
        response.headers["Retry-After"] = "5"
    return response
