"""What an engine's PostgreSQL connections send, counted on the wire: a libpq trace of every
connection taken from the pool, read back as one label per round trip.

A ``before_cursor_execute`` listener sees the statements SQLAlchemy runs, but not the BEGIN
psycopg sends before a transaction's first statement nor its COMMIT; the trace sees both.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from typing import Iterator

from sqlalchemy import event
from sqlalchemy.engine import Engine


@dataclass
class Wire:
    """One label per round trip (``BEGIN`` and ``COMMIT`` for those commands, the first word of
    any other statement, ``(prepared)`` for a statement psycopg prepared earlier), and the server
    process id of each connection taken from the pool."""

    trips: list[str] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)


def round_trip_labels(trace: str) -> list[str]:
    """One label per round trip of a libpq trace: the client's messages up to the server's
    ``ReadyForQuery``."""
    trips: list[str] = []
    current: str | None = None
    for line in trace.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0] not in ("F", "B"):
            continue  # a continuation line of a multi-line statement
        direction, message, rest = parts[0], parts[2], parts[3] if len(parts) > 3 else ""
        if direction == "F" and message == "Query":  # the simple protocol: BEGIN, COMMIT
            current = rest.split('"')[1].split()[0].upper()
        elif direction == "F" and message == "Parse":  # ' "name" "statement text" ...'
            current = rest.split('"')[3].split()[0].upper()
        elif direction == "F" and message == "Bind" and current is None:
            current = "(prepared)"
        elif direction == "B" and message == "ReadyForQuery":
            trips.append(current or "?")
            current = None
    return trips


@contextlib.contextmanager
def round_trips(*engines: Engine) -> Iterator[Wire]:
    """The :class:`Wire` of ``engines`` (psycopg 3) inside the block; every connection taken from
    their pools inside it must be back in its pool at its end."""
    import psycopg

    wire = Wire()
    traced: dict[int, tuple[int, str]] = {}
    with tempfile.TemporaryDirectory() as directory:
        def checkout(dbapi_connection, _record, _proxy) -> None:
            path = os.path.join(directory, f"{len(wire.connections)}.trace")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT)
            traced[id(dbapi_connection)] = (fd, path)
            wire.connections.append(dbapi_connection.info.backend_pid)
            dbapi_connection.pgconn.trace(fd)
            dbapi_connection.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)

        def checkin(dbapi_connection, _record) -> None:  # after the pool's reset of the connection
            if dbapi_connection is None or id(dbapi_connection) not in traced:
                return
            fd, path = traced.pop(id(dbapi_connection))
            dbapi_connection.pgconn.untrace()  # flushes the trace; libpq does not close the file
            os.close(fd)
            with open(path) as trace:
                wire.trips.extend(round_trip_labels(trace.read()))

        for engine in engines:
            event.listen(engine, "checkout", checkout)
            event.listen(engine, "checkin", checkin)
        try:
            yield wire
        finally:
            for engine in engines:
                event.remove(engine, "checkout", checkout)
                event.remove(engine, "checkin", checkin)
        assert not traced, "a connection was still taken from the pool at the end of the block"
