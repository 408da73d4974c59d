"""Commit once at the edge: a view's unit of work is committed when it answered successfully."""

from __future__ import annotations

from functools import wraps

from ..extensions import db


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
