"""A real ``redis-server`` on a free loopback port, restartable for outage tests."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import redis

from tests.support.processes import ManagedProcess, free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """One redis-server without persistence in its own directory; ``stop``/``start`` keep the port."""

    def __init__(self, root: Path | None = None, port: int | None = None):
        self.root = Path(root or tempfile.mkdtemp(prefix="redis-"))
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: ManagedProcess | None = None

    def start(self) -> "RedisServer":
        if self.process is not None and self.process.alive():
            return self
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.root), "--daemonize", "no"]
        self.process = ManagedProcess("redis", argv, self.root).start()
        self.process.wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


#: What every connection says on its own: greetings and pings (the state subscriptions' heartbeat).
CONNECTION_UPKEEP = ("PING", "HELLO", "CLIENT SETINFO", "SELECT")


@contextlib.contextmanager
def monitored(url: str) -> Iterator[list[str]]:
    """Every command clients send Redis inside the block (Redis MONITOR), but the connection
    upkeep and the commands a script runs inside (its EVALSHA is there)."""
    seen: list[str] = []
    marker = f"end-of-block-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(url)
    try:
        with client.monitor() as monitor:
            yield seen
            client.echo(marker)
            for line in monitor.listen():
                if marker in line["command"]:
                    break
                if line["client_type"] != "lua" and not line["command"].startswith(CONNECTION_UPKEEP):
                    seen.append(line["command"])
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server for the session: ``.url``, ``.port``, ``.stop()``, ``.start()``."""
    server = RedisServer()
    try:
        yield server.start()
    finally:
        server.destroy()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The session redis URL, server running and database 0 empty at the start of the test."""
    redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushdb()
        yield redis_server.url
    finally:
        redis_server.start()  # a test may have stopped it
        client.close()
