"""docs/configuration.md, "Database": a pooled PostgreSQL connection the server closed is found
at checkout by looking at its socket, without a round trip."""

from __future__ import annotations

import os
import resource
import socket

import pytest

from scitoken_issuer.database import server_closed


class Connection:
    """What ``server_closed`` reads of a psycopg connection: ``closed``, ``broken``, ``fileno()``."""

    closed = broken = False

    def __init__(self, fd: int):
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


@pytest.mark.parametrize("high", [False, True])
def test_a_closed_peer_is_seen_and_a_live_idle_one_is_not(high):
    """Also for a descriptor numbered above 1024 (select() cannot watch those; a busy worker may
    hold that many)."""
    ours, theirs = socket.socketpair()
    fd = ours.fileno()
    if high:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard <= 2000:
            pytest.skip("the descriptor limit is too low for a descriptor above 1024")
        if soft <= 2000:
            resource.setrlimit(resource.RLIMIT_NOFILE, (2048 if hard == resource.RLIM_INFINITY else min(2048, hard), hard))
        fd = os.dup2(ours.fileno(), 2000)
    try:
        assert server_closed(Connection(fd)) is False
        theirs.close()
        assert server_closed(Connection(fd)) is True
    finally:
        if high:
            os.close(fd)
        ours.close()
        theirs.close()


def test_a_connection_the_driver_knows_broken_is_closed():
    connection = Connection(-1)
    connection.broken = True
    assert server_closed(connection) is True
