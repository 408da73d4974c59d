"""Commit once at the edge: a view's unit of work is committed when it answered successfully;
no request is served on a database schema behind the code."""

from __future__ import annotations

from functools import wraps

from flask import request
from sqlalchemy.exc import DBAPIError

from ..extensions import db, runtime
from .errors import RETRY_AFTER, error_response


def commit_on_success(view):
    """Commit the session after a response below 400; roll back otherwise. A view that never
    touched the database (a cached key set) opens no session here either."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        response = view(*args, **kwargs)
        if not db.session.registry.has():
            return response
        if getattr(response, "status_code", 200) < 400:
            db.session.commit()
        else:
            db.session.rollback()
        return response

    return wrapper


#: endpoints that answer without the schema: liveness, readiness (which names the problem),
#: metrics, and the static documents
_SCHEMA_FREE = frozenset({"health.healthz", "health.readyz", "metrics.metrics", "openapi.openapi", "static"})


def refuse_behind_schema():
    """Before each request until the schema is known to be current (one query per process, then
    nothing): a database behind this code's migrations is answered 503, the operator told once in
    the log to run ``scitoken-issuer db upgrade`` (docs/configuration.md, "Upgrades"), rather than
    failing request by request on a missing column."""
    schema = runtime().schema
    if schema.current or request.endpoint in _SCHEMA_FREE:
        return None
    try:
        with db.engine.connect() as connection:
            problem = schema.problem(connection)
    except DBAPIError:
        return None  # the database is down: the request's own use of it answers 503
    if problem is None:
        return None
    return error_response(503, "temporarily_unavailable",
                          "the issuer's database is being upgraded; try again shortly", {"Retry-After": RETRY_AFTER})
