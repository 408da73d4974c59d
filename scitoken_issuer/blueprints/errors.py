"""Errors as RFC 6749 §5.2 JSON, or readable pages for the blueprints that serve pages
(:func:`serves_pages`); never a traceback."""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, current_app, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from ..background import TaskQueueUnavailable
from ..extensions import db
from ..services.groups import GroupsUnavailable
from ..services.tree_index import TreeScanError
from ..services.tree_store import TreeIndexMissing
from ..services.upstream_idp import UpstreamUnavailable

logger = logging.getLogger(__name__)

RETRY_AFTER = "5"
#: A browser form whose CSRF token no longer matches: opened more than an hour ago, or before a
#: sign-out or a new sign-in (in this tab or another).
STALE_FORM = ("This page has expired or you signed in or out since it was opened, so nothing was done. "
              "Go back, reload the page and try again.")


class ServiceUnavailable(Exception):
    """A dependency (database, Redis, LDAP, IdP) is down; answered 503 with Retry-After."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


_DEPENDENCIES: dict[type, str] = {
    GroupsUnavailable: "the group directory (LDAP)", TreeIndexMissing: "the storage permission index",
    RedisConnectionError: "the cache (Redis)", RedisTimeoutError: "the cache (Redis)",
    TreeScanError: "the storage (POSIX_PATH)", UpstreamUnavailable: "the identity provider",
    TaskQueueUnavailable: "the task queue (Redis)"}


def serves_pages(bp: Blueprint) -> Blueprint:
    """Declare that ``bp``'s endpoints are pages people open in a browser: their errors are HTML
    pages and their forms are CSRF-protected. Every other blueprint answers RFC 6749 §5.2 JSON."""
    bp.serves_pages = True  # type: ignore[attr-defined]
    return bp


def _request_blueprint() -> str | None:
    """The blueprint of the endpoint asked for; for a path that matched no route (a 404, a 405),
    the blueprint of the longest route the path lies under (``/auth/device/x`` → the device page)."""
    if request.blueprint is not None:
        return request.blueprint
    path, best, owner = request.path.rstrip("/"), "", None
    for rule in current_app.url_map.iter_rules():
        prefix = rule.rule.rstrip("/")
        if "<" not in prefix and len(prefix) > len(best) and (path == prefix or path.startswith(prefix + "/")):
            best, owner = prefix, rule.endpoint.rpartition(".")[0] or None
    return owner


def is_browser_request() -> bool:
    """Is this one of the pages people open in a browser (HTML answers, CSRF-protected forms)?"""
    name = _request_blueprint()
    return name is not None and getattr(current_app.blueprints.get(name), "serves_pages", False)


def error_response(status: int, error: str, description: str, headers: dict | None = None):
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache", **(headers or {})}
    if is_browser_request():
        body = render_template("error.html", status=status, error=error, description=description)
        return body, status, headers
    response = jsonify(error=error, error_description=description)
    response.status_code = status
    response.headers.update(headers)
    return response


def prepared_response(exc: HTTPException):
    """The response an HTTPException already carries, answered as it is: protocol errors (e.g.
    RFC 6750 §3.1 ``invalid_token`` with ``WWW-Authenticate``, :mod:`..oauth2.resource`) keep
    their own status, headers and body; only bare HTTP errors become RFC 6749 §5.2 JSON here."""
    return exc.response


def init_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        prepared = prepared_response(exc)
        if prepared is not None:
            return prepared
        code = exc.code or 500
        error = {400: "invalid_request", 401: "invalid_client", 403: "access_denied", 404: "not_found",
                 405: "invalid_request", 413: "invalid_request", 429: "slow_down"}.get(
            code, "invalid_request" if code < 500 else "server_error")
        description = exc.description if code != 413 else "request body too large"
        if isinstance(exc, CSRFError):  # flask-wtf's "The CSRF session token is missing." says nothing to do
            description = STALE_FORM
        methods = getattr(exc, "valid_methods", None)  # RFC 9110 §15.5.6: a 405 carries Allow
        headers = {"Allow": ", ".join(methods)} if code == 405 and methods else {}
        return error_response(code, error, description, headers)

    @app.errorhandler(ServiceUnavailable)
    def unavailable(exc: ServiceUnavailable):
        db.session.rollback()
        logger.warning("answering 503: %s is unavailable", exc.what)
        return error_response(503, "temporarily_unavailable", f"{exc.what} is unavailable; try again shortly",
                              {"Retry-After": RETRY_AFTER})

    @app.errorhandler(GroupsUnavailable)
    @app.errorhandler(TreeIndexMissing)
    @app.errorhandler(TreeScanError)
    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    @app.errorhandler(UpstreamUnavailable)
    @app.errorhandler(TaskQueueUnavailable)
    def dependency_down(exc: Exception):
        """docs/errors.md: a dependency the decision needs is down — 503, never a guess or a grant."""
        return unavailable(ServiceUnavailable(_DEPENDENCIES[next(
            t for t in type(exc).__mro__ if t in _DEPENDENCIES)]))

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
