"""A real PostgreSQL on a free loopback port in a temporary directory (SQLAlchemy URL)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.processes import ManagedProcess, free_port, wait_until

DATABASE = "scitoken_test"


def postgres_bin() -> Path | None:
    """The directory holding ``initdb`` and ``postgres`` (PATH or Debian's layout), if any."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


class PostgresServer:
    """initdb + postgres in ``root``; run as user ``postgres`` when we are root (initdb refuses root)."""

    def __init__(self, bindir: Path, root: Path | None = None):
        self.bindir = bindir
        self.root = Path(root or tempfile.mkdtemp(prefix="postgres-"))
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        role = self.user or pwd.getpwuid(os.geteuid()).pw_name
        return f"postgresql+psycopg://{role}@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> "PostgresServer":
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        data = self.root / "data"
        self._run([str(self.bindir / "initdb"), "-D", str(data), "--auth=trust", "-E", "UTF8",
                   "--no-sync", *(["-U", self.user] if self.user else [])])
        self._serve()
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        return self

    @property
    def admin_url(self) -> str:
        """The libpq URL of the ``postgres`` maintenance database."""
        return self.url.replace("+psycopg", "").rsplit("/", 1)[0] + "/postgres"

    def _serve(self) -> None:
        argv = [str(self.bindir / "postgres"), "-D", str(self.root / "data"), "-p", str(self.port),
                "-k", str(self.root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        self.process = ManagedProcess("postgres", argv, self.root, user=self.user).start()
        self.process.wait_for_port(self.port)
        import psycopg

        def accepting() -> bool:  # the port opens before the server accepts connections
            try:
                psycopg.connect(self.admin_url, connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                return False
        wait_until(accepting, 60, "postgres to accept connections")

    def restart(self) -> None:
        """Stop the server as an operator's restart does (fast shutdown: every connection is
        closed) and start it again on the same port and data."""
        assert self.process is not None
        self.process.stop(signal.SIGINT)
        self._serve()

    def _run(self, argv: list[str]) -> None:
        kwargs = {"user": self.user} if self.user else {}
        done = subprocess.run(argv, capture_output=True, text=True, cwd=self.root, timeout=120, **kwargs)
        if done.returncode:
            raise RuntimeError(f"{argv[0]} failed: {done.stdout}{done.stderr}")

    def destroy(self) -> None:
        if self.process is not None:
            self.process.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_url) -> Iterator[str]:
    """A database of its own for one test on the session's PostgreSQL server, dropped afterwards."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = postgres_url.replace("+psycopg", "").rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL ``postgresql+psycopg://…@127.0.0.1:PORT/scitoken_test`` to a fresh server."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb, postgres) not installed")
    server = PostgresServer(bindir)
    try:
        yield server.start().url
    finally:
        server.destroy()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, which the test may stop and restart (the
    session's one is shared)."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb, postgres) not installed")
    server = PostgresServer(bindir).start()
    try:
        yield server
    finally:
        server.destroy()
