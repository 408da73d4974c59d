"""A refresh storm must not fork a refresh family (docs/tokens.md, "Refresh families"; RFC 9700
§4.14.2): 50 threads refresh one token at the same moment against real gunicorn worker
processes, on SQLite and on PostgreSQL. None gets a 5xx; afterwards one branch of the family
lives, and reuse of the rotated token after the grace window still revokes the family."""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest
import requests
from sqlalchemy import create_engine, text

from .support.e2e import E2E_SECRET, _database, csrf_token
from .support.processes import ManagedProcess, free_port
from .support.user_flows import DEVICE_GRANT

pytestmark = pytest.mark.e2e

THREADS = 50
GRACE = 10  # REFRESH_REUSE_GRACE (the default): far longer than a storm takes (1-3 s measured)
SCOPE = "openid offline_access"


class Issuer:
    """gunicorn (2 worker processes x 8 threads) serving the issuer, development login."""

    def __init__(self, url: str, env: dict):
        self.url = url
        self.env = env

    def end_grace_window(self) -> None:
        """Move every rotation past the grace window, in the server's database (instead of
        sleeping ``GRACE`` seconds; reuse after a real wait is in test_e2e_flows.py)."""
        engine = create_engine(self.env["DATABASE_URL"])
        try:
            with engine.begin() as connection:
                connection.execute(text("UPDATE refresh_tokens SET rotated_at = rotated_at - :age "
                                        "WHERE rotated_at IS NOT NULL"), {"age": GRACE + 1})
        finally:
            engine.dispose()

    def refresh(self, client_id: str, token: str) -> requests.Response:
        return requests.post(f"{self.url}/auth/token", timeout=60, data={
            "grant_type": "refresh_token", "refresh_token": token, "client_id": client_id})


@pytest.fixture(params=["sqlite", "postgresql"])
def issuer(request, tmp_path) -> Iterator[Issuer]:
    database = f"sqlite:///{tmp_path / 'issuer.db'}" if request.param == "sqlite" else \
        _database(request.getfixturevalue("postgres_url"))
    port = free_port()
    env = {**os.environ, "ISSUER_ADDRESS": f"http://127.0.0.1:{port}", "SECRET_KEY": E2E_SECRET,
           "INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": database,
           "REFRESH_REUSE_GRACE": str(GRACE), "DEVICE_POLL_INTERVAL": "1", "PYTHONUNBUFFERED": "1"}
    for name in ("REDIS_URL", "IDP_ADDRESS", "AUDIENCE", "STATIC_CLIENTS"):
        env.pop(name, None)
    import subprocess
    done = subprocess.run([sys.executable, "-m", "scitoken_issuer.cli", "db", "upgrade"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    web = ManagedProcess(f"web-{uuid.uuid4().hex[:6]}", [
        sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", "2", "--threads", "8",
        "--graceful-timeout", "3", "scitoken_issuer.wsgi:app"], Path(tmp_path), env=env).start()
    try:
        web.wait_for_port(port, timeout=60)
        yield Issuer(f"http://127.0.0.1:{port}", env)
    finally:
        web.stop()
        assert "Traceback" not in web.log(), web.log()


def first_refresh_token(issuer: Issuer) -> tuple[str, str]:
    """Register a public client (RFC 7591), run the device flow as alice: (client_id, refresh token)."""
    registered = requests.post(f"{issuer.url}/auth/client/registration", timeout=30, json={
        "client_name": "storm", "token_endpoint_auth_method": "none", "scope": SCOPE,
        "grant_types": [DEVICE_GRANT, "refresh_token"]})
    assert registered.status_code == 201, registered.text
    client_id = registered.json()["client_id"]
    start = requests.post(f"{issuer.url}/auth/device/code", data={"client_id": client_id, "scope": SCOPE},
                          timeout=30).json()
    browser = requests.Session()
    page = browser.get(f"{issuer.url}/auth/device", params={"user_code": start["user_code"]}, timeout=30)
    page = browser.post(f"{issuer.url}/auth/login", timeout=30, data={
        "username": "alice", "password": "alice-dev-password", "csrf_token": csrf_token(page.text),
        "next": f"/auth/device?user_code={start['user_code']}"})
    done = browser.post(f"{issuer.url}/auth/device", timeout=30, data={
        "user_code": start["user_code"], "decision": "approve", "csrf_token": csrf_token(page.text)})
    assert done.status_code == 200 and "You approved" in done.text, done.text[:1000]
    token = requests.post(f"{issuer.url}/auth/token", timeout=30, data={
        "grant_type": DEVICE_GRANT, "device_code": start["device_code"], "client_id": client_id})
    assert token.status_code == 200, token.text
    return client_id, token.json()["refresh_token"]


def storm(issuer: Issuer, client_id: str, token: str) -> list[requests.Response]:
    """``THREADS`` threads released at once, each refreshing ``token``."""
    barrier = threading.Barrier(THREADS)
    answers: list[requests.Response | BaseException] = [None] * THREADS  # type: ignore[list-item]

    def one(index: int) -> None:
        barrier.wait()
        try:
            answers[index] = issuer.refresh(client_id, token)
        except BaseException as exc:  # reported below, with the others
            answers[index] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    failures = [a for a in answers if not isinstance(a, requests.Response)]
    assert not failures, failures
    return answers


def test_refresh_storm_leaves_one_live_branch(issuer):
    """50 concurrent refreshes of one token: no 5xx, every answer is 200 or ``invalid_grant``;
    after the grace window exactly one of the returned refresh tokens still refreshes; the
    rotated token replayed then revokes the family, the live branch included."""
    client_id, first = first_refresh_token(issuer)
    started = time.monotonic()
    answers = storm(issuer, client_id, first)
    elapsed = time.monotonic() - started
    statuses = sorted(a.status_code for a in answers)
    assert all(status < 500 for status in statuses), statuses
    for answer in answers:
        assert answer.status_code == 200 or answer.json()["error"] == "invalid_grant", answer.text
        assert answer.headers["Cache-Control"] == "no-store"
    errors = sorted({a.json()["error_description"] for a in answers if a.status_code != 200})
    successors = {a.json()["refresh_token"] for a in answers if a.status_code == 200}
    assert successors, statuses
    print(f"\n{THREADS} concurrent refreshes in {elapsed:.2f}s: statuses {dict(Counter(statuses))}, "
          f"{len(successors)} distinct refresh token(s); refusals: {errors}")

    issuer.end_grace_window()
    live = []
    for successor in sorted(successors):
        answer = issuer.refresh(client_id, successor)
        assert answer.status_code < 500, answer.text
        if answer.status_code == 200:
            live.append(answer.json()["refresh_token"])
        else:
            assert answer.json()["error"] == "invalid_grant", answer.text
    assert len(live) == 1, f"{len(live)} live branches of one family"

    replay = issuer.refresh(client_id, first)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert "reuse" in replay.json()["error_description"]
    after = issuer.refresh(client_id, live[0])
    assert after.status_code == 400 and after.json()["error"] == "invalid_grant", after.text
