"""How the issuer talks to its database (docs/configuration.md, "Database").

SQLite (the embedded default) runs in write-ahead-log mode with ``synchronous=NORMAL``.
PostgreSQL connections are checked when taken from the pool without a round trip: a server that
restarted or dropped the connection has closed its end, so the socket is readable (end of file
or a final error message) where a live, idle connection has nothing to read. Such a connection
is discarded and a fresh one taken, so the first request after a restart is served normally.

On PostgreSQL a second engine on the same database, its *autocommit twin*, keeps a pool of its
own whose connections stay in autocommit mode, for the statements that commit on their own
(``extensions.each_statement_commits``): switching a pooled connection of the session into
autocommit mode and back cost 70–110 µs of CPU per statement (docs/tokens.md, "Cost of a refresh").
"""

from __future__ import annotations

import logging
import select

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError

logger = logging.getLogger(__name__)


#: a server connection is replaced after this many seconds, so one a firewall dropped without a
#: word (nothing to read on the socket) is not kept for ever
POOL_RECYCLE = 1800


def engine_options(uri: str) -> dict:
    """``SQLALCHEMY_ENGINE_OPTIONS`` for the database at ``uri``. No ping on checkout (that is a
    round trip per request): closed PostgreSQL connections are caught by :func:`_discard_closed`."""
    return {} if uri.startswith("sqlite") else {"pool_recycle": POOL_RECYCLE}


def init_engine(engine: Engine) -> None:
    """Listeners for the engine's dialect: SQLite's pragmas or PostgreSQL's checkout check."""
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_write_ahead_log)
    else:
        event.listen(engine, "checkout", _discard_closed)


def autocommit_twin(engine: Engine) -> Engine:
    """A second engine on ``engine``'s PostgreSQL database, with a pool of its own, whose
    connections stay in autocommit mode (each statement commits on its own). It holds no
    connection until one is used, and is disposed with ``engine``."""
    twin = create_engine(engine.url, isolation_level="AUTOCOMMIT",
                         **engine_options(engine.url.render_as_string(hide_password=False)))
    init_engine(twin)
    event.listen(engine, "engine_disposed", lambda _engine: twin.dispose())
    return twin


def _sqlite_write_ahead_log(connection, _record) -> None:
    """SQLite in write-ahead-log mode with ``synchronous=NORMAL``: readers never wait for the
    writer, and a commit appends to the log without an fsync (the log is synced at checkpoints).
    A crash of the issuer loses nothing; a power loss may lose the last commits. The database
    must be on a local filesystem."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def server_closed(dbapi_connection) -> bool:
    """Whether the server has closed this idle connection (or the driver knows it broke)."""
    if getattr(dbapi_connection, "closed", False) or getattr(dbapi_connection, "broken", False):
        return True
    fileno = getattr(dbapi_connection, "fileno", None)
    if fileno is None:
        return False
    try:
        watch = select.poll()  # poll, not select: no limit on the descriptor's number
        watch.register(fileno(), select.POLLIN)
        return bool(watch.poll(0))
    except (OSError, ValueError):
        return True


def _discard_closed(dbapi_connection, _record, _proxy) -> None:
    """Pool checkout: a connection the server closed is replaced by a fresh one (SQLAlchemy
    retries the checkout on :class:`DisconnectionError`)."""
    if server_closed(dbapi_connection):
        logger.info("database connection closed by the server; reconnecting")
        raise DisconnectionError("the server closed the connection")


def unavailable_reason(exc: DBAPIError) -> str:
    """The driver's first line for a database that refused or is down (no URL, no traceback)."""
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
