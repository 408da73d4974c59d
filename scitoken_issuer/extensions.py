"""Extension singletons, bound to an app with ``init_app`` in :func:`scitoken_issuer.app.create_app`."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Callable, Iterator

from flask import current_app
from sqlalchemy import event
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase, Session

if TYPE_CHECKING:  # the accessors' types; importing them here at run time would be a cycle
    from .oauth2.resource import BearerResource
    from .oauth2.server import AuthorizationServer
    from .runtime import Runtime
    from .services.failure_limits import FailureLimits

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

#: ``Session.info`` key of the callbacks waiting for the current transaction to commit.
_AFTER_COMMIT = "scitoken_issuer.after_commit"


@contextlib.contextmanager
def separate_transaction() -> Iterator[Session]:
    """A short session of its own, committed on leaving the block: for a write that must survive
    the request's error answer (the edge rolls the request's own session back). Keep it small and
    never touch rows the request's session has locked."""
    session = Session(db.engine)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def after_commit(callback: Callable[[], None]) -> None:
    """Run ``callback`` once the current transaction of ``db.session`` commits; drop it if the
    transaction ends otherwise. For side effects that must follow a commit (a Redis announcement)."""
    session = db.session()
    if not session.in_transaction():
        session.begin()  # so the callback belongs to a transaction that ends one way or the other
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for callback in session.info.pop(_AFTER_COMMIT, []):
        callback()


@event.listens_for(Session, "after_transaction_end")
def _drop_after_commit(session: Session, transaction) -> None:
    if transaction.parent is None:  # the outermost transaction ended without a commit
        session.info.pop(_AFTER_COMMIT, None)


def runtime() -> Runtime:
    """The per-app :class:`scitoken_issuer.runtime.Runtime` (settings and shared services), for the
    edges only: views, grants and endpoints, tasks, the CLI (docs/architecture.md)."""
    return current_app.extensions["scitoken_issuer"]


def authorization_server() -> AuthorizationServer:
    """The per-app authorization server built by ``init_oauth``."""
    return current_app.extensions["authorization_server"]


def resource_protector() -> BearerResource:
    """The per-app RFC 6750 resource protector built by ``init_oauth``."""
    return current_app.extensions["resource_protector"]


def failure_limits() -> FailureLimits:
    """The per-app :class:`scitoken_issuer.services.failure_limits.FailureLimits`."""
    return current_app.extensions["failure_limits"]
