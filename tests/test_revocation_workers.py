"""Revocation across web processes (docs/revocation.md): gunicorn with two workers and Redis, the
workers holding copies of the revocation list and the clients that would never expire by age
(``SHARED_STATE_MAX_AGE=3600``). A revocation made through one worker (RFC 7009) or by the operator
CLI in another process makes every covered token inactive at RFC 7662 introspection on both
workers at once; nothing else changes."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from scitoken_issuer.extensions import db, runtime

from .conftest import TEST_SECRET, make_app
from .support.processes import ManagedProcess, free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
USER_SCOPE = "openid offline_access"
ASKS = 48  # introspections per token: each a new connection, so both workers answer some


class Workers:
    """gunicorn -w 2 serving the issuer; its access log names the worker (pid) of each answer."""

    def __init__(self, tmp_path: Path, redis_url: str, max_age: int = 3600):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_log = tmp_path / "access.log"
        self.settings = {"ISSUER_ADDRESS": self.url, "SECRET_KEY": TEST_SECRET, "REDIS_URL": redis_url,
                         "INSTANCE_PATH": str(tmp_path / "instance"), "SHARED_STATE_MAX_AGE": str(max_age)}
        argv = [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{self.port}", "-w", "2", "--threads", "4",
                "--no-control-socket", "--access-logfile", str(self.access_log),
                "--access-logformat", "%(p)s %(m)s %(U)s %(s)s", "scitoken_issuer.wsgi:app"]
        self.process = ManagedProcess("workers", argv, tmp_path, env={**self.settings, "HOME": str(tmp_path)}, cwd=ROOT)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in self.process.env.items()}
        return subprocess.run([sys.executable, "-m", "scitoken_issuer.cli", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    def answered_since(self, offset: int, path: str = "/auth/introspect") -> set[str]:
        """The workers (pids) that answered ``path`` after ``offset`` bytes of the log."""
        lines = self.access_log.read_text()[offset:].splitlines()
        return {line.split()[0] for line in lines if f" {path} " in line}

    def log_size(self) -> int:
        return self.access_log.stat().st_size if self.access_log.exists() else 0


@pytest.fixture
def workers(tmp_path, redis_url):
    server = Workers(tmp_path, redis_url)
    app = make_app(tmp_path, **{k: v for k, v in server.settings.items() if k != "SHARED_STATE_MAX_AGE"})
    with app.app_context():  # the schema, as `db upgrade` makes it before the web processes start
        db.engine.dispose()
    server.process.start().wait_for_port(server.port, timeout=60)
    server.app = app
    yield server
    server.process.stop()


def register(app, **metadata) -> tuple[str, str]:
    with app.app_context():
        registration = runtime().clients.register(metadata, admin=True, source="admin")
        db.session.commit()
        return registration.client.client_id, registration.client_secret


def refresh_family(app, client_id: str, subject: str) -> str:
    with app.app_context():
        rt = runtime()
        token = rt.refresh.issue(rt.refresh.new_family(client_id, subject, USER_SCOPE, None))
        db.session.commit()
        return token


def token_request(url: str, auth: tuple[str, str], **form) -> dict:
    response = requests.post(f"{url}/auth/token", data=form, auth=auth, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def answers(url: str, auth: tuple[str, str], token: str) -> set[bool]:
    """``active`` of ASKS concurrent introspections of ``token``, each on a new connection."""
    def ask(_):
        response = requests.post(f"{url}/auth/introspect", data={"token": token}, auth=auth, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["active"]
    with ThreadPoolExecutor(8) as pool:
        return set(pool.map(ask, range(ASKS)))


def on_both(workers: Workers, batch, path: str = "/auth/introspect") -> list:
    """Run ``batch`` until both workers have answered ``path`` since the start (the kernel
    decides which worker accepts a connection); return every batch's result."""
    mark, results = workers.log_size(), []
    for _ in range(20):
        results.append(batch())
        try:
            wait_until(lambda: len(workers.answered_since(mark, path)) == 2, 2, "both workers")
            return results
        except TimeoutError:
            continue
    raise AssertionError(f"one worker answered every request: {workers.answered_since(mark, path)}")


def test_revocations_reach_both_workers_at_once(workers):
    """RFC 7009 §2.1 and docs/revocation.md, across two gunicorn workers with Redis:
    a refresh family revoked through one worker, and every token of a client revoked by the CLI,
    read inactive on both workers at the next request, while other tokens stay active."""
    url = workers.url
    service = register(workers.app, grant_types=["client_credentials"], scope="compute.read")
    other = register(workers.app, grant_types=["client_credentials"], scope="compute.read")
    user = register(workers.app, grant_types=["refresh_token"], scope=USER_SCOPE)
    service_tokens = [token_request(url, service, grant_type="client_credentials")["access_token"] for _ in range(3)]
    other_token = token_request(url, other, grant_type="client_credentials")["access_token"]
    family = token_request(url, user, grant_type="refresh_token",
                           refresh_token=refresh_family(workers.app, user[0], "alice"))
    second = token_request(url, user, grant_type="refresh_token",
                           refresh_token=refresh_family(workers.app, user[0], "alice"))

    everything = [(service, t) for t in service_tokens] + [(other, other_token), (user, family["access_token"]),
                                                           (user, second["access_token"])]
    for batch in on_both(workers, lambda: [answers(url, auth, token) for auth, token in everything]):
        assert batch == [{True}] * len(everything)  # both workers now hold copies that never age out

    revoked = requests.post(f"{url}/auth/revoke", data={"token": family["refresh_token"]}, auth=user, timeout=30)
    assert revoked.status_code == 200
    for batch in on_both(workers, lambda: (answers(url, user, family["access_token"]),
                                           answers(url, user, second["access_token"]))):
        assert batch == ({False}, {True})

    done = workers.cli("tokens", "revoke", "--client", service[0])
    assert done.returncode == 0, done.stdout + done.stderr
    for batch in on_both(workers, lambda: ([answers(url, service, token) for token in service_tokens],
                                           answers(url, other, other_token))):
        assert batch == ([{False}] * len(service_tokens), {True})


def test_deleted_client_is_refused_by_both_workers_at_once(workers):
    """RFC 7592 §2.3 / ``client delete``: once deleted (by the CLI, another process), a client's
    credentials are refused by both workers at the next request, though both held its copy
    (none of the requests after the deletion gets a token)."""
    url = workers.url
    service = register(workers.app, grant_types=["client_credentials"], scope="compute.read")

    def statuses() -> set[int]:
        def ask(_):
            return requests.post(f"{url}/auth/token", data={"grant_type": "client_credentials"}, auth=service,
                                 timeout=30).status_code
        with ThreadPoolExecutor(8) as pool:
            return set(pool.map(ask, range(ASKS)))

    assert all(batch == {200} for batch in on_both(workers, statuses, "/auth/token"))
    done = workers.cli("client", "delete", "--", service[0])
    assert done.returncode == 0, done.stdout + done.stderr
    refused = set().union(*on_both(workers, statuses, "/auth/token"))
    assert 401 in refused and refused <= {401, 429}  # invalid_client, then 429 once failures pile up
