"""Extension singletons, bound to an app with ``init_app`` in :func:`scitoken_issuer.app.create_app`."""

from __future__ import annotations

from flask import current_app
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Stable constraint names, so migrations can refer to them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
csrf = CSRFProtect()


def runtime():
    """The per-app :class:`scitoken_issuer.runtime.Runtime` (settings and shared services)."""
    return current_app.extensions["scitoken_issuer"]


def failure_limits():
    """The per-app :class:`scitoken_issuer.services.failure_limits.FailureLimits`."""
    return current_app.extensions["failure_limits"]
