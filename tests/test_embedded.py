"""The embedded default ``python -m scitoken_issuer`` (docs/flows.md) and the production entry
``gunicorn scitoken_issuer.wsgi:app``, as real processes: what they print, what they serve
(RFC 8414 discovery, RFC 7517 JWKS), a clean Ctrl-C, kept keys, and one-line config errors (docs/configuration.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from .support.processes import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parents[1]


def environment(tmp_path: Path, **extra: str) -> dict:
    """A clean environment: no issuer settings inherited from the caller, HOME in tmp_path
    (gunicorn keeps a control socket under HOME)."""
    env = {k: v for k, v in os.environ.items()
           if not k.isupper() or k in ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "PYENV_VERSION",
                                       "PYENV_ROOT", "TMPDIR", "SSL_CERT_FILE")}
    env.update({"HOME": str(tmp_path), "INSTANCE_PATH": str(tmp_path / "instance"), "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


class Embedded:
    """One ``python -m scitoken_issuer`` run on a free port; output in ``log_dir``."""

    def __init__(self, tmp_path: Path, name: str, **settings: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = ManagedProcess(name, [sys.executable, "-m", "scitoken_issuer"], tmp_path,
                                      env=environment(tmp_path, PORT=str(self.port), **settings), cwd=ROOT)

    def start(self) -> "Embedded":
        self.process.start().wait_for_port(self.port, timeout=60)
        return self

    def interrupt(self, timeout: float = 30) -> int:
        """Ctrl-C as a terminal sends it: SIGINT to the whole foreground process group."""
        os.killpg(self.process.proc.pid, signal.SIGINT)
        return self.process.proc.wait(timeout)

    def output(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def kid(self) -> str:
        keys = requests.get(f"{self.url}/auth/certs", timeout=10).json()["keys"]
        return keys[0]["kid"]


@pytest.fixture
def embedded(tmp_path):
    """Factory for embedded issuers; every one still running at the end is stopped."""
    started: list[Embedded] = []

    def factory(name: str = "embedded", **settings: str) -> Embedded:
        server = Embedded(tmp_path, name, **settings)
        started.append(server)
        return server.start()

    yield factory
    for server in started:
        server.process.stop()


def test_serves_discovery_and_jwks_and_says_what_it_uses(embedded, tmp_path):
    """docs/flows.md: it serves on HOST:PORT with SQLite in the instance folder and prints what it uses."""
    server = embedded()
    meta = requests.get(f"{server.url}/.well-known/openid-configuration", timeout=10)
    assert meta.status_code == 200
    assert meta.json()["issuer"] == server.url
    assert meta.json()["jwks_uri"] == f"{server.url}/auth/certs"
    certs = requests.get(f"{server.url}/auth/certs", timeout=10)
    assert certs.status_code == 200
    key = certs.json()["keys"][0]
    assert key["alg"] == "RS256" and key["use"] == "sig" and key["kid"]
    out = server.output()
    assert server.url in out
    assert str(tmp_path / "instance") in out and "sqlite" in out
    assert f"kid={key['kid']}" in out
    assert "DEVELOPMENT LOGIN" in out  # clearly labelled (docs/flows.md)
    assert "groups        development users file " in out and "dev-users.json" in out
    assert (tmp_path / "instance" / "scitoken-issuer.db").exists()


def test_sigint_stops_cleanly(embedded):
    """docs/flows.md "Ctrl-C stops it cleanly": exit status 0 and no traceback."""
    server = embedded()
    assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
    assert server.interrupt() == 0
    out = server.output()
    assert "Traceback" not in out and "KeyboardInterrupt" not in out


def test_restart_keeps_signing_key_and_secret(embedded, tmp_path):
    """docs/flows.md: the signing key is kept, and the development SECRET_KEY with it (docs/configuration.md)."""
    first = embedded("first")
    kid = first.kid()
    assert first.interrupt() == 0
    secret = (tmp_path / "instance" / "secret_key").read_text()
    assert oct((tmp_path / "instance" / "secret_key").stat().st_mode & 0o777) == "0o600"

    second = embedded("second")
    assert second.kid() == kid
    assert (tmp_path / "instance" / "secret_key").read_text() == secret
    assert second.interrupt() == 0


@pytest.mark.parametrize("settings", [{"KEY_TYPE": "ES256"}])
def test_es256_setting(embedded, settings):
    """docs/configuration.md KEY_TYPE: ES256 keys (P-256) are generated and published."""
    key = requests.get(f"{embedded(**settings).url}/auth/certs", timeout=10).json()["keys"][0]
    assert key["alg"] == "ES256" and key["crv"] == "P-256"


def _single_error_line(output: str, name: str) -> None:
    lines = [line for line in output.splitlines() if line.strip()]
    assert "Traceback" not in output
    naming = [line for line in lines if name in line]
    assert len(naming) == 1, output
    assert naming[0].startswith("scitoken-issuer: configuration error: " + name), output


@pytest.mark.parametrize("settings,name", [
    ({"KEY_TYPE": "HS256"}, "KEY_TYPE"),
    ({"PORT": "not-a-port"}, "PORT"),
    ({"ACCESS_TOKEN_LIFETIME": "-1"}, "ACCESS_TOKEN_LIFETIME"),
    ({"STATIC_CLIENTS": "[{"}, "STATIC_CLIENTS"),
    ({"ISSUER_ENV": "production"}, "SECRET_KEY"),
    ({"DATABASE_URL": "foo://bar"}, "DATABASE_URL"),
    ({"POSIX_PATH": "/nonexistent/storage"}, "POSIX_PATH"),
])
def test_bad_setting_is_one_line(tmp_path, settings, name):
    """docs/configuration.md: a bad value stops the process with one clear line naming it, never a traceback."""
    done = subprocess.run([sys.executable, "-m", "scitoken_issuer"], capture_output=True, text=True, timeout=60,
                          env=environment(tmp_path, **{"PORT": str(free_port()), **settings}), cwd=ROOT)
    assert done.returncode != 0
    assert done.stdout.strip() == ""
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    _single_error_line(done.stderr, name)


@pytest.mark.parametrize("settings,name", [({"KEY_TYPE": "HS256"}, "KEY_TYPE"),
                                           ({"POSIX_PATH": "/nonexistent/storage"}, "POSIX_PATH")])
def test_gunicorn_entry_with_bad_setting_is_one_line(tmp_path, settings, name):
    """docs/configuration.md for the production entry: gunicorn stops (no respawn loop) with the one line."""
    gunicorn = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{free_port()}", "--workers", "1",
                "scitoken_issuer.wsgi:app"]
    done = subprocess.run(gunicorn, capture_output=True, text=True, timeout=120,
                          env=environment(tmp_path, **settings), cwd=ROOT)
    assert done.returncode != 0
    _single_error_line(done.stdout + done.stderr, name)


@pytest.mark.parametrize("url", ["postgresql+psycopg://scitoken:hunter2-secret@127.0.0.1:{port}/issuer",
                                 "sqlite:////nonexistent/folder/issuer.db"])
def test_database_down_at_start_is_one_line(tmp_path, url):
    """docs/configuration.md: a database that refuses at start stops the embedded issuer with one line
    saying so (exit status 1), never a traceback, never the URL's password."""
    env = environment(tmp_path, PORT=str(free_port()), DATABASE_URL=url.format(port=free_port()))
    done = subprocess.run([sys.executable, "-m", "scitoken_issuer"], capture_output=True, text=True, timeout=60,
                          env=env, cwd=ROOT)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip() and "alembic" not in line]
    assert len(lines) == 1 and lines[0].startswith("scitoken-issuer: database unavailable: "), done.stderr
    assert "Traceback" not in done.stderr and "hunter2" not in done.stdout + done.stderr


def test_gunicorn_entry_serves(tmp_path):
    """Issue 2: ``gunicorn scitoken_issuer.wsgi:app`` serves discovery once the database is migrated."""
    env = environment(tmp_path)
    upgrade = subprocess.run(["scitoken-issuer", "db", "upgrade"], capture_output=True, text=True, timeout=120,
                             env=env, cwd=ROOT)
    assert upgrade.returncode == 0, upgrade.stderr
    port = free_port()
    process = ManagedProcess("gunicorn", [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
                                          "--workers", "2", "scitoken_issuer.wsgi:app"], tmp_path, env=env, cwd=ROOT)
    try:
        process.start().wait_for_port(port, timeout=60)
        meta = requests.get(f"http://127.0.0.1:{port}/.well-known/oauth-authorization-server", timeout=10)
        assert meta.status_code == 200 and meta.json()["issuer"] == "http://127.0.0.1:8080"
        kids = {requests.get(f"http://127.0.0.1:{port}/auth/certs", timeout=10).json()["keys"][0]["kid"]
                for _ in range(6)}
        assert len(kids) == 1  # two workers, one key set
        assert "Traceback" not in process.log()
    finally:
        process.stop()
