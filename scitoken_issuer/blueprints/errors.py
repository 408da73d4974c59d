"""Errors as RFC 6749 §5.2 JSON for API paths, readable pages for browser paths; never a traceback."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from ..extensions import db

logger = logging.getLogger(__name__)

#: Browser endpoints answer with HTML pages.
BROWSER_PATHS = ("/auth/authorize", "/auth/callback", "/auth/device", "/auth/login")
RETRY_AFTER = "5"


class ServiceUnavailable(Exception):
    """A dependency (database, Redis, LDAP, IdP) is down; answered 503 with Retry-After."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


def _browser() -> bool:
    return request.path.startswith(BROWSER_PATHS) and not request.path.startswith("/auth/device/code")


def error_response(status: int, error: str, description: str, headers: dict | None = None):
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache", **(headers or {})}
    if _browser():
        body = render_template("error.html", status=status, error=error, description=description)
        return body, status, headers
    response = jsonify(error=error, error_description=description)
    response.status_code = status
    response.headers.update(headers)
    return response


def init_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = exc.code or 500
        error = {400: "invalid_request", 401: "invalid_client", 403: "access_denied", 404: "not_found",
                 405: "invalid_request", 413: "invalid_request", 429: "slow_down"}.get(
            code, "invalid_request" if code < 500 else "server_error")
        description = exc.description if code != 413 else "request body too large"
        headers = {"Allow": exc.response.headers["Allow"]} if code == 405 and exc.response else {}
        return error_response(code, error, description, headers)

    @app.errorhandler(ServiceUnavailable)
    def unavailable(exc: ServiceUnavailable):
        db.session.rollback()
        logger.warning("answering 503: %s is unavailable", exc.what)
        return error_response(503, "temporarily_unavailable", f"{exc.what} is unavailable; try again shortly",
                              {"Retry-After": RETRY_AFTER})

    @app.errorhandler(OperationalError)
    @app.errorhandler(DBAPIError)
    def database_down(exc: Exception):
        try:
            db.session.rollback()
        except Exception:  # the connection itself may be gone
            pass
        logger.warning("answering 503: database error %s", type(exc).__name__)
        return error_response(503, "temporarily_unavailable", "the database is unavailable; try again shortly",
                              {"Retry-After": RETRY_AFTER})

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        db.session.rollback()
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "server_error", "the issuer hit an unexpected error")
