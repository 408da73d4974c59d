"""Extension singletons, bound to an app with ``init_app`` in :func:`scitoken_issuer.app.create_app`."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable, Iterator

from flask import current_app
from sqlalchemy import event
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import Connection, MetaData
from sqlalchemy.orm import DeclarativeBase, Session, SessionTransaction
from sqlalchemy.sql import Executable

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
#: ``Session.info`` key of the writes waiting for the current transaction to commit.
_AT_COMMIT = "scitoken_issuer.write_at_commit"
#: ``app.extensions`` key of the PostgreSQL database's autocommit twin (``database.autocommit_twin``)
AUTOCOMMIT_ENGINE = "scitoken_issuer.autocommit_engine"


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


@contextlib.contextmanager
def each_statement_commits() -> Iterator[Connection]:
    """A connection on which each statement commits on its own (PostgreSQL autocommit mode): no
    ``BEGIN`` and ``COMMIT`` round trips around it. For statements that need no transaction
    around them: a read, or a write that is one atomic statement (the refresh grant's lookup and
    claim, docs/tokens.md "Cost of a refresh").

    The connection comes from the database's autocommit twin (``database.autocommit_twin``), a
    pool of connections that stay in that mode, and goes back to it on leaving the block; the
    request's session is not touched, so whatever it does next runs in a transaction as
    everywhere else. On SQLite, or when the session has already begun a transaction, it is the
    session's connection: the statements simply join the session's transaction (committed at
    the edge)."""
    session = db.session()
    twin = current_app.extensions.get(AUTOCOMMIT_ENGINE)
    if twin is None or session.in_transaction():
        yield session.connection()
        return
    with twin.connect() as connection:
        yield connection


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
    if transaction.parent is None:  # the outermost transaction ended (after a commit, both are empty)
        session.info.pop(_AFTER_COMMIT, None)
        session.info.pop(_AT_COMMIT, None)


def write_at_commit(statement: Executable, values: dict[str, Any]) -> None:
    """Run ``statement`` with ``values`` on ``db.session``'s connection when its transaction
    commits, in the order queued and after the ORM's own pending rows; never if it rolls back.

    For an INSERT nothing in the transaction reads back (a new refresh family and its first
    token): it waits for the commit, so on SQLite the write lock is taken after the request's
    signatures, not before them (docs/tokens.md, "Cost of a refresh")."""
    session = db.session()
    if not session.in_transaction():
        session.begin()  # so the write belongs to a transaction that ends one way or the other
    queued_in = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(_AT_COMMIT, []).append((queued_in, statement, values))


@event.listens_for(Session, "before_commit")
def _write_queued(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint released: its writes wait for the outer commit
        return
    queued = session.info.pop(_AT_COMMIT, [])
    if queued:
        session.flush()  # rows the queued writes may refer to (a client, an identity) go first
        connection = session.connection()
        for _queued_in, statement, values in queued:
            connection.execute(statement, values)


@event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back(session: Session, rolled_back: SessionTransaction) -> None:
    """Writes queued in the transaction (or savepoint) that rolled back, or inside it, are dropped."""
    queued = session.info.get(_AT_COMMIT)
    if queued:
        session.info[_AT_COMMIT] = [entry for entry in queued if not _inside(entry[0], rolled_back)]


def _inside(transaction: SessionTransaction | None, outer: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False


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
